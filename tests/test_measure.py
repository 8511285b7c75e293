"""run_isolated: the child's own peak, its imports in the baseline, every failure said."""

from __future__ import annotations

import time

import pytest

from courselib.errors import CourseError
from courselib.measure import run_isolated


def test_peak_is_the_childs_own_not_the_parents():
    ballast = bytearray(300_000_000)  # the parent holds 300 MB; the child must not report it
    ballast[::4096] = b"\1" * len(ballast[::4096])
    result = run_isolated("courselib.measure.runner:_example_alloc", n_bytes=100_000_000)
    assert result.value == 100_000_000
    assert 90e6 < result.added_bytes < 130e6
    assert result.peak_rss_bytes < 250e6
    del ballast


def test_a_dying_child_is_reported_at_once():
    start = time.monotonic()
    with pytest.raises(CourseError, match="process died"):
        run_isolated("os:_exit", timeout_s=120, status=3)
    assert time.monotonic() - start < 30


def test_an_unpicklable_result_says_so():
    with pytest.raises(CourseError, match="cannot be sent back"):
        run_isolated("courselib.measure.runner:_unpicklable")


def test_engines_named_in_imports_are_in_the_baseline():
    """The baseline is taken after ``imports``: an engine's own code is not the work's."""
    plain = run_isolated("courselib.measure.runner:_example_alloc", n_bytes=1000)
    loaded = run_isolated(
        "courselib.measure.runner:_example_alloc", imports=["numpy", "json"], n_bytes=1000
    )
    assert loaded.baseline_rss_bytes > plain.baseline_rss_bytes  # numpy's code counted there
    assert loaded.added_bytes < 5e6 and plain.added_bytes < 5e6
