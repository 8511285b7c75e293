"""`make demo`'s command runs end to end on the built course models."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_the_course_end_to_end(course_models):
    result = subprocess.run(
        [sys.executable, "-m", "courselib", "demo"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "course-chat-Q4_K_M.gguf" in out  # the models table
    assert "The capital of Japan is Tokyo." in out  # the 4-bit chat answers
    assert "Lab 03" in out and "65B" in out  # the memory table
