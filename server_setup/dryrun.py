"""A throwaway class server (``make demo``'s dry run, the server bench): up, use, always down.

:func:`temporary_deployment` runs the CPU deployment in a temp state dir on free ports, with
one key per student of a generated roster, and stops both processes on the way out, however
the block ends. :func:`dry_run` is what an instructor does before term: ``up``, ``check``, a
short load test, ``status``, ``down``, each step printed.

Example::

    >>> with temporary_deployment(students=3, rate_per_minute=600) as server:
    ...     server.url, sorted(server.keys), server.engine_key[:10]
    ('http://127.0.0.1:41235/v1', ['s001', 's002', 's003'], 'sk-engine-')
    >>> dry_run(students=10, requests_each=2)
    0
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server_setup.gateway.keys import Student
from server_setup.local import Local, Running, down, up
from server_setup.settings import Deployment, load


@dataclass(frozen=True)
class TemporaryServer:
    """A running deployment: its settings, the students' URL, the engine's, and the keys."""

    deployment: Deployment
    running: Running
    url: str
    engine_url: str
    keys: dict[str, str]
    """Student id -> API key."""
    engine_key: str
    """What a request straight to ``engine_url`` must carry (the gateway sends it itself)."""

    @property
    def engine_keys(self) -> dict[str, str]:
        """Student id -> the engine's key: the same students, straight to the engine."""
        return dict.fromkeys(self.keys, self.engine_key)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def roster(students: int) -> list[Student]:
    """A generated class: s001 ... with example.edu addresses."""
    return [
        Student(f"s{i:03d}", f"Student {i}", f"s{i:03d}@example.edu")
        for i in range(1, students + 1)
    ]


@contextlib.contextmanager
def temporary_deployment(
    *,
    model: str = "course-chat",
    students: int = 30,
    state_dir: Path | None = None,
    log: Callable[[str], Any] = lambda _: None,
    **settings: Any,
) -> Iterator[TemporaryServer]:
    """``up`` in a temp state dir (or ``state_dir``) on free ports; ``down`` on exit, always.

    ``settings``: Deployment fields (``rate_per_minute=600``, ``max_tokens=64`` ...); the
    model's context defaults to 512 tokens, enough for the course's short chats.
    """
    with contextlib.ExitStack() as stack:
        if state_dir is None:
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="courselab-")))
        overrides = {
            "model": model,
            "max_model_len": 512,
            "state_dir": str(state_dir),
            "engine_port": free_port(),
            "gateway_port": free_port(),
            **settings,
        }
        d = load(None, overrides=overrides, environ={})
        # keys before up: nginx reads the map when it starts, no reload needed
        issued = Local.of(d).keys.issue(roster(students))
        stack.callback(down, d)  # registered before up: a failed start is stopped too
        running = up(d, log=log)
        yield TemporaryServer(
            deployment=d,
            running=running,
            url=running.url,
            engine_url=f"http://{d.engine_host}:{d.engine_port}/v1",
            keys={i.student_id: i.key for i in issued},
            engine_key=Local.of(d).keys.engine_key(),
        )


def dry_run(
    *,
    model: str = "course-chat",
    students: int = 10,
    requests_each: int = 2,
    plot: Path | None = None,
    log: Callable[[str], Any] = print,
) -> int:
    """up, check, a load test of ``students`` x ``requests_each``, status, down; 0 when all pass.

    Everything runs in a temp dir and is stopped at the end, also when a step fails; only
    status's usage plot is kept, at ``plot`` (default: courselab-dry-run-usage.png in the
    system's temp folder).
    """
    plot = plot or Path(tempfile.gettempdir()) / "courselab-dry-run-usage.png"
    from server_setup.check import check
    from server_setup.gateway import usage
    from server_setup.loadtest import load_test, summary_table
    from server_setup.local import describe, status

    log(f"-- up: {model} with llama-cpp-python's server + the nginx gateway, {students} keys")
    with temporary_deployment(model=model, students=students, log=log) as server:
        student, key = next(iter(server.keys.items()))
        log(f"\n-- check {server.url} (as {student})")
        report = check(server.url, key=key)
        log(report.table())
        log(f"\n-- load test: {students} students x {requests_each} requests at once")
        result = load_test(server.url, server.keys, requests_each=requests_each)
        log(summary_table([("gateway", result.summary())]))
        for reason, count in result.losses().items():
            log(f"lost: {count} x {reason}")
        log("\n-- status")
        d = server.deployment
        log(describe(status(d)))
        rows = usage.usage(usage.read_log(Local.of(d).gateway.access_log))
        log(usage.table(rows))
        log(f"plot: {usage.plot(rows, plot)}")
        log("\n-- down")
    log("stopped gateway and engine; the temp state dir is removed")
    return 0 if report.ok and not result.losses() else 1
