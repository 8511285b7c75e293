"""``up`` / ``down`` / ``status``: the CPU deployment (llama.cpp server + nginx gateway) here.

A course dry-runs the class server on a laptop, and the tests run the real thing: ``up`` plans
and renders exactly what ``render`` would (a deployment that does not fit is refused before
anything starts), then runs, as the current user with no root:

- the engine: llama-cpp-python's server, the rendered command with this Python, on
  ``127.0.0.1:engine_port``, with the engine's key from ``keys/engine.env`` in its
  environment (as systemd gives it): a request without it gets 401;
- the gateway: ``nginx -p <state>/nginx -c <state>/deploy/gateway/nginx.conf`` on
  ``gateway_host:gateway_port``, its pid, logs and temp files in the state dir; it sends the
  engine's key upstream.

Everything lives in the state dir (``state_dir``; default ``$XDG_STATE_HOME/courselab-server``,
else ``~/.local/state/courselab-server``)::

    deploy/        the rendered files (README.txt says what each is)
    keys/          students.json and keys.map: key hashes only; engine.env and
                   engine-auth.conf: the engine's key (all 0600, folder 0700)
    logs/          engine.log, gateway-error.log, access.jsonl (one JSON line per request),
                   usage.png (status)
    run/           engine.pid, nginx.pid
    nginx/         nginx's prefix: its temp folders

Each process starts in its own session, so ``down`` can end it and every child it made (its
process group) and leaves nothing behind.

Example::

    >>> d = load(None, overrides={"model": "course-chat", "max_model_len": 512}, environ={})
    >>> running = up(d)            # plan, render, start, wait for both to answer
    >>> running.url
    'http://127.0.0.1:8000/v1'
    >>> down(d)
    ['gateway', 'engine']
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from courselib.errors import CourseError
from server_setup.engines import llamacpp
from server_setup.gateway.keys import KeyStore
from server_setup.gateway.nginx import GatewayPaths, gateway_url
from server_setup.plan import Plan
from server_setup.render import Rendered, render, write
from server_setup.settings import Deployment

ENGINE = llamacpp.ENGINE
"""The one engine ``up`` runs: its command is a Python module, run here by this Python."""
INSTALL_HINT = (
    "Install Debian's nginx and its njs module: "
    "sudo apt-get install nginx libnginx-mod-http-js (or make sysdeps as root)."
)
# what each process's command line must contain before down signals that pid (a pid file
# left by a crash may name a pid the system has since given to something else)
MARKERS = {"engine": "llama_cpp.server", "gateway": "nginx"}
# variables llama-cpp-python's server reads besides its flags (pydantic settings; uvicorn's
# host and port from HOST and PORT): a shell's own must not rebind it or change its key
ENGINE_ENV_DROPPED = ("HOST", "PORT", "API_KEY", "CONFIG_FILE")


class DoesNotFit(CourseError):
    """``up`` refused: the plan says the model does not fit this host."""

    def __init__(self, plan: Plan) -> None:
        super().__init__(
            "The deployment does not fit this host: nothing started.", hint="See plan."
        )
        self.plan = plan


@dataclass(frozen=True)
class Local:
    """The state dir's layout for one deployment."""

    state_dir: Path

    @classmethod
    def of(cls, d: Deployment) -> Local:
        return cls(d.resolved_state_dir())

    @property
    def deploy_dir(self) -> Path:
        return self.state_dir / "deploy"

    @property
    def gateway(self) -> GatewayPaths:
        return GatewayPaths(install_dir=self.deploy_dir, state_dir=self.state_dir)

    @property
    def keys(self) -> KeyStore:
        return KeyStore(self.gateway.keys_map.parent)

    def pid_file(self, name: str) -> Path:
        return self.gateway.pid if name == "gateway" else self.state_dir / "run" / "engine.pid"

    @property
    def engine_log(self) -> Path:
        return self.state_dir / "logs" / "engine.log"

    @property
    def usage_png(self) -> Path:
        return self.state_dir / "logs" / "usage.png"


@dataclass(frozen=True)
class Running:
    """What ``up`` started: the students' URL and where things are."""

    url: str
    engine_pid: int
    gateway_pid: int
    local: Local
    rendered: Rendered


# --- processes -------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _group(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (a process we started, and its children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid and _alive(int(entry.name)):
                    found.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                continue
    return found


def running_pid(local: Local, name: str) -> int | None:
    """The pid of ``name`` ('engine' or 'gateway') if its pid file names a live one of ours."""
    try:
        pid = int(local.pid_file(name).read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    return pid if _alive(pid) and MARKERS[name] in _cmdline(pid) else None


def _start(argv: list[str], *, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        # its own session: no terminal signal reaches it, and down ends its whole group
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def _stop(pid: int, *, first: signal.Signals, grace_s: float) -> None:
    """Send ``first``; after ``grace_s`` SIGKILL whatever is left of its process group."""
    try:
        os.kill(pid, first)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and (_alive(pid) or _group(pid)):
        time.sleep(0.05)
    for left in _group(pid):  # children that outlived their parent (nginx workers)
        with contextlib.suppress(ProcessLookupError):
            os.kill(left, signal.SIGKILL)


# --- health ----------------------------------------------------------------------------------


def _get(url: str, *, key: str = "", timeout_s: float = 2.0) -> int:
    """HTTP status of GET ``url`` (with ``Authorization: Bearer key``); 0 when nothing answers.

    An https URL is this host's own gateway: its certificate names the host, not 127.0.0.1,
    so it is not verified (the question is whether nginx answers, not who it is).
    """
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    context = ssl._create_unverified_context() if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return 0


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _check_nginx(d: Deployment) -> None:
    missing = [p for p in (d.nginx, d.nginx_js_module) if not Path(p).exists()]
    if missing:
        raise CourseError(
            f"The gateway needs {' and '.join(missing)}, not found.", hint=INSTALL_HINT
        )


def _engine_health(d: Deployment) -> str:
    return f"http://{d.engine_host}:{d.engine_port}{ENGINE.health_path}"


def _healthz(d: Deployment) -> str:
    return gateway_url(d).removesuffix("/v1") + "/healthz"


# --- up / down / status ----------------------------------------------------------------------


def _local_deployment(d: Deployment) -> tuple[Deployment, Local]:
    """The settings with the rendered files in the state dir, and a course model's GGUF path."""
    from courselib.models.store import COURSE_MODELS, gguf_file

    local = Local.of(d)
    model = str(gguf_file(d.model)) if d.model in COURSE_MODELS else d.model
    d = dataclasses.replace(
        d,
        model=model,
        output_dir=str(local.deploy_dir),
        install_dir="",
        state_dir=str(local.state_dir),
    )
    return d, local


def up(d: Deployment, *, timeout_s: float = 120.0, log=print) -> Running:
    """Plan, render into the state dir, start engine and gateway, wait until both answer.

    Raises :class:`DoesNotFit` (nothing started) when the plan refuses, and a
    :class:`CourseError` when something is already up, a port is taken, nginx is missing, or a
    process dies or stays silent for ``timeout_s`` (then both are stopped again).
    """
    d, local = _local_deployment(d)
    for name in ("engine", "gateway"):
        if running_pid(local, name):
            raise CourseError(
                f"The {name} of {local.state_dir} is already running.",
                hint="python -m server_setup down (same --state-dir) first.",
            )
    _check_nginx(d)
    result = render(d)
    if not result.plan.fits:
        raise DoesNotFit(result.plan)
    assert result.engine is not None
    if result.engine.kind != ENGINE.name:
        raise CourseError(
            f"up runs the CPU deployment ({ENGINE.label}); this one is {result.engine.kind}.",
            hint="Give a .gguf model and no GPU (--ram), or deploy the rendered files instead.",
        )
    for host, port in ((d.engine_host, d.engine_port), (d.gateway_host, d.gateway_port)):
        if not _port_free(host, port):
            raise CourseError(
                f"Port {host}:{port} is taken.", hint="Stop what uses it, or set another port."
            )
    write(result, local.deploy_dir)
    local.keys.ensure()
    local.gateway.make_dirs()
    # the rendered command, run by this Python (the venv with llama-cpp-python[server]), its
    # key in the environment as systemd's EnvironmentFile= gives it
    argv = [sys.executable, *result.engine.argv[1:]]
    inherited = {k: v for k, v in os.environ.items() if k not in ENGINE_ENV_DROPPED}
    env = {**inherited, **result.engine.env, **local.keys.engine_env()}
    engine = _start(argv, log=local.engine_log, env=env)
    local.pid_file("engine").write_text(f"{engine.pid}\n")
    gw = local.gateway
    gateway = _start(gw.argv(d.nginx), log=gw.error_log)
    # nginx writes the same pid (daemon off: the master is this process) once it has started;
    # written here too so that a failed start can still be stopped by down
    gw.pid.write_text(f"{gateway.pid}\n")
    url = gateway_url(d)
    engine_key = local.keys.engine_key()
    checks = {
        "engine": (engine, _engine_health(d), engine_key, local.engine_log),
        "gateway": (gateway, _healthz(d), "", gw.error_log),
    }
    deadline = time.monotonic() + timeout_s
    waiting = set(checks)
    while waiting:
        for name in sorted(waiting):
            proc, health, key, logfile = checks[name]
            if proc.poll() is not None:
                down(d)
                raise CourseError(
                    f"The {name} exited (status {proc.returncode}) while starting. "
                    f"Last lines of {logfile}:\n{_tail(logfile)}",
                    hint="Fix what the log says, then up again.",
                )
            if _get(health, key=key) == 200:
                waiting.discard(name)
        if waiting and time.monotonic() > deadline:
            down(d)
            raise CourseError(
                f"{', '.join(sorted(waiting))} did not answer within {timeout_s:.0f} s.",
                hint=f"See {local.engine_log} and {gw.error_log}.",
            )
        time.sleep(0.2)
    log(f"engine  {result.engine.name} on {d.engine_host}:{d.engine_port} (pid {engine.pid})")
    log(f"gateway {url} (pid {gateway.pid}); students use this URL with their key")
    students = [s for s in local.keys.students() if s.active]
    log(
        f"keys    {len(students)} active, hashed in {local.keys.map_file}; issue with "
        f"python -m server_setup keys issue ROSTER.csv --state-dir {local.state_dir}"
    )
    log(f"logs    {gw.access_log} (one JSON line per request); stop with down")
    return Running(url, engine.pid, gateway.pid, local, result)


def down(d: Deployment) -> list[str]:
    """Stop the gateway (graceful, SIGQUIT) and the engine (SIGTERM); what was running."""
    local = Local.of(d)
    stopped = []
    for name, first in (("gateway", signal.SIGQUIT), ("engine", signal.SIGTERM)):
        pid = running_pid(local, name)
        if pid:
            _stop(pid, first=first, grace_s=10.0)
            stopped.append(name)
        local.pid_file(name).unlink(missing_ok=True)
    return stopped


def reload_gateway(d: Deployment, *, timeout_s: float = 10.0) -> bool:
    """Make a running gateway re-read its key map (SIGHUP); False when it is not running.

    Returns once the old workers have exited (they close idle keep-alive connections at
    once, so no request after this is served with the old keys), or after ``timeout_s``
    while an old worker still finishes a long stream.
    """
    pid = running_pid(Local.of(d), "gateway")
    if not pid:
        return False
    old = set(_group(pid)) - {pid}
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        workers = set(_group(pid)) - {pid}
        if workers and not workers & old:
            return True
        time.sleep(0.05)
    if not set(_group(pid)) - {pid} - old:
        raise CourseError(
            "The gateway did not reload its keys.", hint=f"See {Local.of(d).gateway.error_log}."
        )
    return True


@dataclass(frozen=True)
class Status:
    """Whether each process runs and answers, and the students' usage."""

    engine_pid: int | None
    engine_ok: bool
    gateway_pid: int | None
    gateway_ok: bool
    url: str
    access_log: Path

    def as_dict(self) -> dict[str, object]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in vars(self).items()}


def status(d: Deployment) -> Status:
    local = Local.of(d)
    engine = running_pid(local, "engine")
    gateway = running_pid(local, "gateway")
    key = local.keys.engine_key() if engine and local.keys.engine_env_file.exists() else ""
    return Status(
        engine_pid=engine,
        engine_ok=bool(engine) and _get(_engine_health(d), key=key) == 200,
        gateway_pid=gateway,
        gateway_ok=bool(gateway) and _get(_healthz(d)) == 200,
        url=gateway_url(d),
        access_log=local.gateway.access_log,
    )


def describe(s: Status) -> str:
    """Two lines, one per process."""

    def line(name: str, pid: int | None, ok: bool, where: str) -> str:
        if not pid:
            return f"{name:<8}down"
        return f"{name:<8}{'up' if ok else 'RUNNING BUT NOT ANSWERING'} (pid {pid}) {where}"

    return "\n".join(
        [
            line("engine", s.engine_pid, s.engine_ok, ""),
            line("gateway", s.gateway_pid, s.gateway_ok, s.url),
        ]
    )
