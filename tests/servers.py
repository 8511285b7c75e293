"""Real servers on 127.0.0.1 for the tests: a free port, and the class deployment that
``server_setup up`` starts (llama-cpp-python's server on course-chat behind the nginx gateway,
with the limits below), used through the ``server`` fixture in conftest.py."""

from __future__ import annotations

import csv
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from server_setup.settings import Deployment

ROOT = Path(__file__).resolve().parent.parent
CAP = 16  # the gateway's max_tokens cap in these tests
BODY_KIB = 8
RATE, BURST = 120, 20  # per student a minute; bursts
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
MODEL = "course-chat-Q4_K_M"  # the name `up` serves course-chat's Q4_K_M file under (its stem)
STUDENTS = ("s001", "s002", "s003", "s004")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_setup_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m server_setup ARGS`` from the repository; fails the test on a non-zero exit
    unless ``check`` is False."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "server_setup", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"server_setup {args[0]} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def require_nginx() -> None:
    """Fail (not skip) without Debian's nginx and njs: `make test` installs them."""
    d = Deployment()
    missing = [p for p in (d.nginx, d.nginx_js_module) if not Path(p).exists()]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not installed: the gateway tests need Debian's nginx and "
            "njs (make sysdeps as root, or apt-get install nginx libnginx-mod-http-js)"
        )


def our_processes(state: Path) -> list[str]:
    """Live processes of this deployment: its command lines name the state dir, or they are
    in the process group of one that did (nginx workers are just 'nginx: worker process')."""
    procs = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":  # a zombie has exited, only its exit status is left
                procs[int(entry.name)] = (cmd, int(fields[2]))  # (cmdline, process group)
    groups = process_groups(state) | {pgid for cmd, pgid in procs.values() if str(state) in cmd}
    return [cmd for cmd, pgid in procs.values() if pgid in groups or str(state) in cmd]


def process_groups(state: Path) -> set[int]:
    """Process groups up started (each process leads its own: pgid = pid), as recorded."""
    seen = state / "test-groups"
    for name in ("engine.pid", "nginx.pid"):
        pid_file = state / "run" / name
        if pid_file.exists():
            with seen.open("a") as f:
                f.write(pid_file.read_text())
    return {int(x) for x in seen.read_text().split()} if seen.exists() else set()


def up_flags(state: Path, engine_port: int, gateway_port: int, model: str) -> list[str]:
    """`up`'s flags for a test deployment: small context, the tests' limits."""
    return [
        "--model", model,
        "--max-model-len", "512",
        "--state-dir", str(state),
        "--engine-port", str(engine_port),
        "--gateway-port", str(gateway_port),
        "--rate-per-minute", str(RATE),
        "--rate-burst", str(BURST),
        "--max-tokens", str(CAP),
        "--max-body-kib", str(BODY_KIB),
    ]  # fmt: skip


def issue_keys(
    state: Path, flags: list[str], up_stdout: str, engine_port: int, gateway_port: int
) -> dict:
    """Issue the students' keys on a running deployment; what the tests need to reach it."""
    roster = state.parent / "roster.csv"
    roster.write_text(
        "student_id,name,email\n" + "".join(f"{s},Student {s},{s}@example.edu\n" for s in STUDENTS)
    )
    out = state.parent / "keys.csv"
    server_setup_cli("keys", "issue", str(roster), "--state-dir", str(state), "--out", str(out))
    keys = {row["student_id"]: row["api_key"] for row in csv.DictReader(out.open())}
    engine_env = (state / "keys" / "engine.env").read_text()
    return {
        "engine_key": re.search(r"^API_KEY=(\S+)$", engine_env, re.M).group(1),
        "state": state,
        "flags": flags,
        "url": f"http://127.0.0.1:{gateway_port}/v1",
        "engine_url": f"http://127.0.0.1:{engine_port}/v1",
        "keys": keys,
        "up_stdout": up_stdout,
    }
