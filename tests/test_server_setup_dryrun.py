"""The server dry run of `make demo` (up, check, load test, status, down) on real processes,
and the load test's counting, without processes.

The dry run starts llama-cpp-python's server and nginx on course-chat (a few seconds on two
cores); nginx missing FAILS with how to install it (make sysdeps), as in test_gateway.py.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from pathlib import Path

import httpx
import pytest
from servers import require_nginx

from server_setup.dryrun import dry_run, temporary_deployment
from server_setup.loadtest import LoadResult, Outcome, load_test, percentile, summary_table


def _left(groups: set[int]) -> list[int]:
    """Live processes in these process groups (up starts each process as a group leader, so an
    nginx worker is in its master's group)."""
    left = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) in groups:  # (state, ppid, pgrp)
                left.append(int(entry.name))
    return left


def _groups(lines: list[str]) -> set[int]:
    """The engine's and the gateway's pids, from the log lines of up and status."""
    return {int(p) for p in re.findall(r"\(pid (\d+)\)", "\n".join(lines))}


def test_dry_run_goes_up_checks_loads_and_leaves_nothing_behind(course_gguf, tmp_path):
    require_nginx()
    course_gguf()  # the model built
    lines: list[str] = []
    plot = tmp_path / "usage.png"
    assert dry_run(students=3, requests_each=2, plot=plot, log=lines.append) == 0
    assert plot.read_bytes()[:4] == b"\x89PNG"  # kept after the temp state dir is gone
    text = "\n".join(lines)
    for step in ("-- up:", "-- check", "-- load test: 3 students x 2", "-- status", "-- down"):
        assert step in text
    assert "PASS: 6/6 steps" in text
    row = next(line.split() for line in text.splitlines() if line.startswith("gateway  "))
    assert row[1:7] == ["3", "6", "6", "0", "0", "0"]  # students sent answered 429 retried lost
    assert f"plot: {plot}" in text and "engine  up" in text
    groups = _groups(lines)
    assert len(groups) == 2 and _left(groups) == []


def test_a_failure_inside_the_deployment_still_stops_it(course_gguf):
    require_nginx()
    course_gguf()
    lines: list[str] = []
    with (
        pytest.raises(RuntimeError, match="a step failed"),
        temporary_deployment(students=2, log=lines.append) as server,
    ):
        assert sorted(server.keys) == ["s001", "s002"]
        # straight to the engine (bench and loadtest's "direct" path): its own key, or 401
        models = server.engine_url + "/models"
        assert httpx.get(models).status_code == 401
        auth = {"Authorization": f"Bearer {server.engine_key}"}
        assert httpx.get(models, headers=auth).status_code == 200
        assert set(server.engine_keys) == set(server.keys)
        assert set(server.engine_keys.values()) == {server.engine_key}
        raise RuntimeError("a step failed")
    groups = _groups(lines)
    assert len(groups) == 2 and _left(groups) == []


def _outcome(**kw) -> Outcome:
    base = dict(
        student="s001", stream=False, status=200, latency_s=0.01, attempt_s=0.01,
        ttft_s=None, rate_limited=0, retry_after_missing=0, tokens=4, lost="",
    )  # fmt: skip
    return Outcome(**{**base, **kw})


def test_the_summary_counts_429s_retries_and_losses():
    result = LoadResult(
        [
            _outcome(),
            _outcome(latency_s=1.02, rate_limited=1),  # answered after one 429
            _outcome(stream=True, ttft_s=0.005, lost="stream cut short", status=200),
            _outcome(status=429, rate_limited=11, lost="429 after 10 retries"),
        ],
        students=2,
        wall_s=2.0,
    )
    s = result.summary()
    assert (s["sent"], s["answered"], s["rate_limited_429"], s["retried_answered"], s["lost"]) == (
        4, 2, 12, 1, 2,
    )  # fmt: skip
    assert s["p50_ms"] == pytest.approx(515.0) and s["tokens_per_s"] == 4.0
    assert result.losses() == {"stream cut short": 1, "429 after 10 retries": 1}
    assert summary_table([("gateway", s)]).splitlines()[1].split()[:7] == [
        "gateway", "2", "4", "2", "12", "1", "2",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "values, q, expected",
    [([1, 2, 3, 4], 50, 2.5), ([1, 2, 3, 4], 95, 3.85), ([7], 95, 7), ([5, 1], 0, 1)],
)
def test_percentile_is_linear_between_ranks(values, q, expected):
    assert percentile(values, q) == pytest.approx(expected)


class _FakeEngine(http.server.BaseHTTPRequestHandler):
    """An OpenAI-ish chat endpoint on HTTP/1.1 keep-alive: JSON, or SSE in chunks ending with
    data: [DONE] and the chunked body's last chunk (as uvicorn and nginx send it); counts the
    connections it was asked on."""

    protocol_version = "HTTP/1.1"
    connections: list[int] = []

    def setup(self) -> None:
        super().setup()
        self.connections.append(1)

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not body["stream"]:
            reply = json.dumps({
                "choices": [{"message": {"content": "Paris"}, "finish_reason": "stop"}],
                "usage": {"completion_tokens": 1},
            }).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for choice in ({"delta": {"content": "Paris"}}, {"delta": {}, "finish_reason": "stop"}):
            event = f"data: {json.dumps({'choices': [choice]})}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(b"data: [DONE]\n\n"), b"data: [DONE]\n\n"))
        self.wfile.write(b"0\r\n\r\n")


def test_each_student_keeps_one_connection_for_all_its_requests():
    _FakeEngine.connections = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeEngine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        keys = {"s001": "k1", "s002": "k2"}
        result = load_test(url, keys, requests_each=4, stream_every=2, model="m")
    finally:
        server.shutdown()
        server.server_close()
    s = result.summary()
    assert (s["sent"], s["answered"]) == (8, 8) and result.losses() == {}
    # a streamed reply read only up to its [DONE] left the connection unfinished: httpx
    # closed it and the student's next request opened a new one (4 connections, not 2)
    assert len(_FakeEngine.connections) == 2
