"""Lab 02 notebook: nbgrader source format, graded tests that can fail, and an end-to-end run
against the real class gateway (conftest's ``server`` deployment) plus the student's own server.

The graded tests are taken from the notebook itself and run against the solution (must pass)
and against plausible wrong answers (must fail): a test that cannot fail grades nothing.
"""

from __future__ import annotations

import json
import socket
import statistics

import pytest
from labcheck import (
    LABS_DIR,
    assert_graded,
    assert_ran_cleanly,
    cell,
    full_points,
    output_text,
    points_passed,
    read_lab,
    solution,
)
from servers import CAP

NOTEBOOK = LABS_DIR / "lab02_class_server/lab02_class_server.ipynb"
SOLUTIONS = {
    "chat-request": "chat_request",
    "read-stream": "read_stream",
    "speed-summary": "speed_summary",
    "choose-option": "choose_option",
}


@pytest.fixture(scope="module")
def nb():
    return read_lab(NOTEBOOK)


@pytest.fixture(scope="module")
def setup_namespace(nb) -> dict:
    """What the test cells see when the notebook runs: the set-up cell and part 3's report."""
    namespace: dict = {}
    exec(cell(nb, "imports").source, namespace)
    exec('crash = plan("wizard-vicuna-13b", gpu_mem="40GiB", gpus=1, dtype="fp32")', namespace)
    return namespace


def _points(nb, grade_id: str, setup: dict, answer) -> float:
    """Points of the test cells of ``grade_id`` that pass with ``answer`` as the solution."""
    return points_passed(nb, grade_id, {**setup, "json": json, SOLUTIONS[grade_id]: answer})


def test_notebook_is_graded_source(nb) -> None:
    tests = assert_graded(nb, points=7, parameter="SERVER_URL", solutions=list(SOLUTIONS))
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    for name in ("API_KEY = ", "MODEL = ", "MY_PORT = ", "MAX_TOKENS = "):
        assert name in params.source
    assert all("stream_lines" not in t and "time_replies" not in t for t in tests)


def test_graded_tests_pass_on_the_solution(nb, setup_namespace) -> None:
    for grade_id in SOLUTIONS:
        answer = solution(nb, grade_id, SOLUTIONS[grade_id], setup_namespace)
        assert _points(nb, grade_id, setup_namespace, answer) == full_points(nb, grade_id), grade_id


def _request_always_system(question, *, model, max_tokens, system=None):
    messages = [{"role": "system", "content": system or ""}, {"role": "user", "content": question}]
    return {"model": model, "messages": messages, "max_tokens": max_tokens, "stream": True}


def _request_system_last(question, *, model, max_tokens, system=None):
    messages = [{"role": "user", "content": question}]
    messages += [{"role": "system", "content": system}] if system else []
    return {"model": model, "messages": messages, "max_tokens": max_tokens, "stream": True}


def _request_no_stream(question, *, model, max_tokens, system=None):
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": question})
    return {"model": model, "messages": messages, "max_tokens": max_tokens}


def _request_empty_system_kept(question, *, model, max_tokens, system=None):
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages.append({"role": "user", "content": question})
    return {"model": model, "messages": messages, "max_tokens": max_tokens, "stream": True}


@pytest.mark.parametrize(
    "wrong",
    [_request_always_system, _request_system_last, _request_no_stream, _request_empty_system_kept],
)
def test_graded_tests_reject_wrong_requests(nb, setup_namespace, wrong) -> None:
    assert _points(nb, "chat-request", setup_namespace, wrong) == 0


def _stream_substring_done(lines):
    """Stops at any line containing [DONE], even inside a reply's text."""
    out = []
    for line in lines:
        if "[DONE]" in line:
            break
        if line.startswith("data: "):
            out.append(json.loads(line[6:])["choices"][0]["delta"].get("content") or "")
    return "".join(out)


def _stream_no_comments(lines):
    """Parses every non-blank line as data (a ': keep-alive' comment breaks it)."""
    out = []
    for line in lines:
        if not line:
            continue
        data = line.split(":", 1)[1].strip()
        if data == "[DONE]":
            break
        out.append(json.loads(data)["choices"][0]["delta"].get("content") or "")
    return "".join(out)


def _stream_past_done(lines):
    """Skips [DONE] instead of stopping there."""
    out = []
    for line in lines:
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[6:])["choices"][0]["delta"].get("content") or "")
    return "".join(out)


def _stream_stripped(lines):
    """Strips each piece: loses the spaces between words."""
    out = []
    for line in lines:
        if line == "data: [DONE]":
            break
        if line.startswith("data: "):
            out.append((json.loads(line[6:])["choices"][0]["delta"].get("content") or "").strip())
    return "".join(out)


@pytest.mark.parametrize(
    ("wrong", "points"),
    [
        (_stream_substring_done, 1),  # the example passes; the edge cases do not
        (_stream_no_comments, 1),
        (_stream_past_done, 1),
        (_stream_stripped, 0),
    ],
)
def test_graded_tests_reject_wrong_stream_parsers(nb, setup_namespace, wrong, points) -> None:
    assert _points(nb, "read-stream", setup_namespace, wrong) == points


def _mean_not_median(runs):
    ttft = [t[0] - s for s, t in runs if t]
    rates = [(len(t) - 1) / (t[-1] - t[0]) for _, t in runs if len(t) >= 2]
    return statistics.mean(ttft), (statistics.mean(rates) if rates else None)


def _counts_the_first_token(runs):
    ttft = [t[0] - s for s, t in runs if t]
    rates = [len(t) / (t[-1] - s) for s, t in runs if len(t) >= 2]
    return statistics.median(ttft), (statistics.median(rates) if rates else None)


def _single_pieces_as_zero(runs):
    ttft = [t[0] - s for s, t in runs if t]
    rates = [(len(t) - 1) / (t[-1] - t[0]) if len(t) >= 2 else 0.0 for _, t in runs]
    return statistics.median(ttft), statistics.median(rates)


def _middle_element(runs):
    """The middle of the sorted list, also for an even count (no mean of the two)."""
    ttft = sorted(t[0] - s for s, t in runs if t)
    rates = sorted((len(t) - 1) / (t[-1] - t[0]) for _, t in runs if len(t) >= 2)
    return ttft[len(ttft) // 2], (rates[len(rates) // 2] if rates else None)


@pytest.mark.parametrize(
    ("wrong", "points"),
    [
        (_mean_not_median, 0),
        (_counts_the_first_token, 0),
        (_single_pieces_as_zero, 1),  # right on replies of several pieces
        (_middle_element, 0),  # right on odd counts only: each cell has an even one
    ],
)
def test_graded_tests_reject_wrong_medians(nb, setup_namespace, wrong, points) -> None:
    assert _points(nb, "speed-summary", setup_namespace, wrong) == points


def _least_memory_only(options, *, students, gpus):
    good = [o for o in options if o.max_seqs >= students and o.gpus <= gpus]
    return min(good, key=lambda o: o.need_bytes).change if good else None


def _ignores_students(options, *, students, gpus):
    good = [o for o in options if o.gpus <= gpus]
    return min(good, key=lambda o: (o.gpus, o.need_bytes)).change if good else None


def _first_that_fits(options, *, students, gpus):
    good = [o for o in options if o.max_seqs >= students and o.gpus <= gpus]
    return good[0].change if good else None


@pytest.mark.parametrize("wrong", [_least_memory_only, _ignores_students, _first_that_fits])
def test_graded_tests_reject_wrong_choices(nb, setup_namespace, wrong) -> None:
    assert _points(nb, "choose-option", setup_namespace, wrong) < full_points(nb, "choose-option")


def _two_free_ports() -> int:
    """A port p with p + 1 also free (the notebook's own server: gateway p, engine p + 1)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise AssertionError("no two consecutive free ports")


@pytest.mark.slow
def test_solution_notebook_runs_end_to_end(run_notebook, server) -> None:
    params = {
        "SERVER_URL": server["url"],
        "API_KEY": server["keys"]["s001"],
        "MY_PORT": _two_free_ports(),
        "REQUESTS": 3,
        "MAX_TOKENS": CAP,
    }
    executed = run_notebook(NOTEBOOK, params)
    assert_ran_cleanly(executed)
    assert "DOES NOT FIT" in output_text(executed, "crash = plan(")
    assert "DOES NOT FIT" not in output_text(executed, 'fixed = plan("wizard-vicuna-13b"')
    wire = output_text(executed, "lines = stream_lines(")
    assert "data: {" in wire and "Paris" in wire
    assert server["url"] in output_text(executed, "class_url = SERVER_URL or running.url")
    assert "Tokyo" in output_text(executed, "class_url = SERVER_URL or running.url")
    table = output_text(executed, "rows[name] = {")
    assert "class server" in table and "median TTFT ms" in table
    assert "stopped: ['gateway', 'engine']" in output_text(executed, "down(my_server))")
