"""`python -m courselib chat`: one-shot answers on stdout, the chat loop, Ctrl-C, errors."""

from __future__ import annotations

import _thread
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from courselib.backends.base import GenerationConfig
from courselib.backends.echo import EchoBackend
from courselib.chat.conversation import Conversation
from courselib.widgets.terminal_chat import chat_loop

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "courselib", "chat", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


def test_one_shot_prints_only_the_answer():
    result = run_cli("--model", "echo", "--prompt", "hello big world")
    assert (result.returncode, result.stdout, result.stderr) == (0, "hello big world\n", "")


def test_one_shot_reads_stdin_with_a_dash():
    result = run_cli("--model", "echo", "--prompt", "-", stdin="from stdin\n")
    assert result.stdout == "from stdin\n"


def test_one_shot_answer_from_the_course_model(course_gguf):
    gguf = course_gguf("course-chat", "Q4_K_M")
    result = run_cli(
        "--model", str(gguf), "--prompt", "What is the capital of Japan?",
        "--temperature", "0", "--threads", "2", "--seed", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Tokyo" in result.stdout and result.stdout.count("\n") == 1


def test_chat_commands():
    result = run_cli(
        "--model", "echo", stdin="hi there\n/system Be terse.\n/clear\n/bogus\nagain\n/quit\n"
    )
    assert result.returncode == 0
    assert result.stdout.count("assistant> ") == 2
    assert "assistant> hi there\n" in result.stdout and "assistant> again\n" in result.stdout
    assert "[system prompt: Be terse.]" in result.stderr
    assert "[conversation cleared]" in result.stderr
    assert "unknown command /bogus" in result.stderr


def test_a_too_long_message_is_reported_and_the_chat_goes_on():
    long = " ".join(["word"] * 100)
    result = run_cli(
        "--model", "echo", "--n-ctx", "64", "--max-tokens", "16", stdin=f"{long}\nok\n"
    )
    assert "error: The prompt is" in result.stderr and "64-token context" in result.stderr
    assert "assistant> ok\n" in result.stdout


def test_ctrl_c_stops_the_reply_but_not_the_chat(capsys, request):
    backend = EchoBackend(delay_s=0.05)
    conv = Conversation()
    lines = iter([" ".join(f"w{i}" for i in range(100)), "/quit"])

    # Ctrl-C = SIGINT = KeyboardInterrupt in the main thread, a few words into the reply
    # (waiting for the words, not a fixed time, so a loaded machine cannot fire it too early).
    def ctrl_c_after_three_words() -> None:
        deadline = time.monotonic() + 60
        while backend.pieces_yielded < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        _thread.interrupt_main()

    # An earlier test in the session may have left SIGINT ignored (then interrupt_main does
    # nothing): a terminal has Python's default handler, so give the test that one.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    timer = threading.Thread(target=ctrl_c_after_three_words, daemon=True)
    out = io.StringIO()
    timer.start()
    chat_loop(backend, conv, GenerationConfig(), read=lambda _: next(lines), out=out)
    timer.join()
    assert 1 <= backend.pieces_yielded < 20, "the stream was closed, not run to its end"
    assert conv.turns[-1].role == "assistant"
    assert conv.turns[-1].content == out.getvalue().removeprefix("assistant> ").strip()
    assert "[stopped]" in capsys.readouterr().err


def test_missing_model_is_a_one_line_error(tmp_path):
    result = run_cli("--model", str(tmp_path / "missing.gguf"), "--prompt", "hi")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: Model file") and "Traceback" not in result.stderr


def test_help_explains_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for word in ("/clear", "/system", "--prompt", "--n-ctx", "--api-key", "Ctrl-C"):
        assert word in result.stdout


@pytest.mark.parametrize("flag", ["--temperature", "--max-tokens"])
def test_bad_numbers_are_argparse_errors(flag):
    result = run_cli("--model", "echo", flag, "lots")
    assert result.returncode == 2 and "invalid" in result.stderr
