"""One convention for the three commands (courselib.errors): a mistake is two lines on stderr
(what happened, what to do) and exit status 2; found failures exit 1; no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from courselib.errors import EXIT_INTERRUPTED, EXIT_MISTAKE, CourseError, run_command

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def _two_lines(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == EXIT_MISTAKE, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("error: ") and lines[1].startswith("  What to do: "), lines
    return lines


@pytest.mark.parametrize(
    "command",
    [
        ["courselib", "chat", "--model", "{tmp}/missing.gguf", "--prompt", "hi"],
        ["courselib", "memory", "--model", "{tmp}/missing.gguf"],
        ["server_setup", "plan", "{tmp}/missing-model"],
        ["autograder", "grade", "{tmp}/no-course", "lab01_local_chat"],
        ["autograder", "collect", "{tmp}/no-course", "lab01_local_chat", "{tmp}/export.zip"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_a_missing_file_is_two_lines_and_exit_2_in_every_tool(command, tmp_path) -> None:
    first, _ = _two_lines(_run(*(part.format(tmp=tmp_path) for part in command)))
    assert str(tmp_path) in first  # the message names what is missing


def test_the_autograder_names_a_missing_archive_and_an_unknown_lab(tmp_path) -> None:
    from labcheck import LABS_DIR

    from autograder.course import setup

    setup(tmp_path / "course", labs_dir=LABS_DIR, assignments=["lab01_local_chat"])
    course = str(tmp_path / "course")
    first, _ = _two_lines(_run("autograder", "collect", course, "lab01_local_chat", "x.zip"))
    assert "x.zip is not there" in first
    first, hint = _two_lines(_run("autograder", "grade", course, "lab99"))
    assert "has no lab 'lab99'" in first and "lab01_local_chat" in hint


def test_an_unreachable_server_is_a_mistake_for_chat_and_a_failed_check_for_ops(
    free_port,
) -> None:
    url = f"http://127.0.0.1:{free_port}/v1"
    first, _ = _two_lines(_run("courselib", "chat", "--model", url, "--prompt", "hi"))
    assert "Cannot reach the inference server" in first
    check = _run("server_setup", "check", url, "--key", "k")
    assert check.returncode == 1 and "FAIL: 0/6 steps passed" in check.stdout  # ran, found failures
    assert "Traceback" not in check.stderr


@pytest.mark.parametrize("tool", ["courselib", "server_setup", "autograder"])
def test_a_bad_argument_exits_2_and_help_exits_0(tool) -> None:
    bad = _run(tool, "no-such-command")
    assert bad.returncode == EXIT_MISTAKE and "invalid choice" in bad.stderr
    assert _run(tool, "--help").returncode == 0


def test_run_command_applies_the_convention(capsys) -> None:
    def mistake() -> int:
        raise CourseError("Model file x does not exist.", hint="Check the path.")

    def interrupted() -> int:
        raise KeyboardInterrupt

    assert run_command(lambda: 1) == 1 and run_command(lambda: None) == 0
    assert run_command(mistake) == EXIT_MISTAKE
    assert (
        capsys.readouterr().err
        == "error: Model file x does not exist.\n  What to do: Check the path.\n"
    )
    assert run_command(interrupted) == EXIT_INTERRUPTED
    with pytest.raises(ValueError):  # a bug is not a user's mistake: its traceback stays
        run_command(lambda: int("x"))
