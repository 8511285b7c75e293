"""measure.run_isolated: the child's own peak memory, and a dying child reported at once."""

from __future__ import annotations

import time

import pytest

from courselib.errors import CourseError
from courselib.measure import run_isolated


def test_peak_is_the_childs_own_not_the_parents():
    ballast = bytearray(300_000_000)  # the parent holds 300 MB; the child must not report it
    ballast[::4096] = b"\1" * len(ballast[::4096])
    result = run_isolated("courselib.measure:_example_alloc", n_bytes=100_000_000)
    assert result.value == 100_000_000
    assert 90e6 < result.added_bytes < 130e6
    assert result.peak_rss_bytes < 250e6
    del ballast


def test_a_dying_child_is_reported_at_once():
    start = time.monotonic()
    with pytest.raises(CourseError, match="process died"):
        run_isolated("os:_exit", timeout_s=120, status=3)
    assert time.monotonic() - start < 30
