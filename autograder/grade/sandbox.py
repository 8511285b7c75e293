"""The grading kernel in a bubblewrap sandbox (``isolation = "sandbox"``).

``bwrap`` (Debian/Ubuntu: ``apt install bubblewrap``; no daemon, no root needed) starts the
kernel in new user, PID, network, IPC, UTS and mount namespaces. What the kernel can see is
built from nothing, path by path:

- read-only: ``/usr`` (and the merged-/usr links ``/bin``, ``/lib`` ...), a few files of
  ``/etc`` (the dynamic linker's cache, passwd/group, time zone), the Python installation and
  the virtual environment, the ``courselib`` package, the course model folder;
- read-write: the submission's own working folder (its ``HOME`` and ``TMPDIR`` too) and the
  folder of its kernel's sockets; ``/tmp`` is a private empty tmpfs;
- nothing else: not the gradebook, the source notebooks with solutions and hidden tests, the
  other submissions, the instructor's home or the checkout's ``autograder/``.

The network namespace has only loopback. The one way out is the course server (Lab 02), when
one is set: its host name maps to 127.0.0.1 in the sandbox's ``/etc/hosts`` (an IP address is
replaced by 127.0.0.1 in the kernel's ``COURSELAB_SERVER_URL``), a forwarder inside
(``limits.py --forward``) listens on the server's port there and pipes each connection to a
unix socket in the kernel's socket folder, and the grader (:class:`ServerForward`) pipes it on
to the real server. Bytes pass through unchanged, so https and API keys work as outside.

Inside, the kernel runs as ``nobody`` (uid 65534) with every capability dropped and no way to
make a new user namespace (``--disable-userns``), so it cannot remount what it was given
read-only. The kernel talks to the grader over unix sockets (ZMQ ``ipc`` transport) in its
socket folder. bwrap's own
init is PID 1 and the kernel PID 2, which cannot see or signal the grader; ``--die-with-parent``
ends the sandbox with the worker.

Example::

    >>> bwrap_command(["python", "-m", "ipykernel_launcher", "-f", "k/kernel.json"],
    ...               workdir=Path("/scratch/ana-x1"), writable=[Path("/run/ag-1f")])[:4]
    ['bwrap', '--unshare-all', '--unshare-user', '--disable-userns']
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from autograder.grade import limits
from courselib.errors import CourseError

NOBODY = 65534
ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "passwd",
    "group",
    "nsswitch.conf",
    "localtime",
    "hosts",
    "fonts",
    "ssl/certs",
    "ca-certificates",
)
"""What a Python kernel reads from /etc (the rest of /etc stays out of sight)."""
TOP_LEVEL = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
"""Links into /usr on a merged-/usr system, real folders on an old one."""


@dataclass(frozen=True)
class ServerRoute:
    """How the sandbox reaches the course server (see the module docs)."""

    url: str
    """The server URL as the kernel uses it (an IP address replaced by 127.0.0.1)."""
    host: str
    port: int
    socket: Path
    """The unix socket the forwarder inside connects to; the grader listens on it."""
    hosts_file: Path
    """The sandbox's /etc/hosts: localhost, and the server's host name at 127.0.0.1."""


def route_to_server(url: str, folder: Path) -> ServerRoute | None:
    """The route for server ``url`` through ``folder`` (the kernel's socket folder); None when
    there is no server to reach. Raises CourseError for a port the sandbox cannot listen on."""
    if not url:
        return None
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if port < 1024:
        raise CourseError(
            f"The course server {url} listens on port {port}: the sandbox's forwarder runs as "
            "nobody and cannot listen on a port below 1024. Serve it (or its gateway) on a "
            "port >= 1024, e.g. 8000, or grade with isolation = 'none'."
        )
    try:
        ipaddress.ip_address(parts.hostname)
    except ValueError:  # a host name: /etc/hosts sends it to the forwarder
        kernel_url = url
    else:  # an IP address: nothing else listens inside, so the kernel dials loopback
        kernel_url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))
    hosts = folder / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n127.0.0.1 {parts.hostname}\n")
    return ServerRoute(kernel_url, parts.hostname, port, folder / "server.sock", hosts)


class ServerForward:
    """The grader's end of a route: accept on the route's unix socket, connect to the server."""

    def __init__(self, route: ServerRoute) -> None:
        self.route = route
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(route.socket))
        route.socket.chmod(0o777)  # nobody, inside, connects to it
        self._listener.listen(limits.MAX_CONNECTIONS)
        threading.Thread(
            target=limits.forward, args=(self._listener, self._connect), daemon=True
        ).start()

    def _connect(self) -> socket.socket:
        return socket.create_connection((self.route.host, self.route.port), timeout=30)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()


def readable_paths() -> list[Path]:
    """What the kernel must read besides /usr and /etc: this Python, its venv, the course
    library (an editable install points into the checkout: only ``courselib/`` is shown) and
    the built course models."""
    import courselib
    from courselib import settings

    paths = {Path(sys.base_prefix), Path(sys.prefix), Path(courselib.__file__).parent}
    paths.add(settings.data_dir())
    return sorted(p.resolve() for p in paths if p.exists())


def bwrap_command(
    kernel: Sequence[str],
    *,
    workdir: Path,
    writable: Iterable[Path] = (),
    readable: Iterable[Path] | None = None,
    route: ServerRoute | None = None,
) -> list[str]:
    """The ``bwrap`` command line that runs ``kernel`` in the sandbox (see the module docs);
    with ``route``, the course server is reachable through it."""
    cmd = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(NOBODY)]
    cmd += ["--gid", str(NOBODY), "--cap-drop", "ALL", "--die-with-parent", "--new-session"]
    # ipykernel exits when its parent is PID 1 and it was told a parent's pid: here bwrap's init
    # is its parent, on purpose
    cmd += ["--unsetenv", "JPY_PARENT_PID"]
    cmd += ["--ro-bind", "/usr", "/usr"]
    for name in TOP_LEVEL:
        path = Path("/") / name
        if path.is_symlink():
            cmd += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            cmd += ["--ro-bind", str(path), str(path)]
    for name in ETC_FILES:
        if not (route is not None and name == "hosts"):
            cmd += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    # nproc and the cache sizes (torch, numpy and llama.cpp size their thread pools from them)
    cmd += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    for path in readable_paths() if readable is None else readable:
        cmd += ["--ro-bind", str(path), str(path)]
    for path in [workdir, *writable]:
        cmd += ["--bind", str(path), str(path)]
    if route is not None:
        cmd += ["--ro-bind", str(route.hosts_file), "/etc/hosts"]
        cmd += ["--ro-bind", limits.__file__, limits.__file__]
        relay = [sys.executable, limits.__file__, f"--forward={route.port}={route.socket}", "--"]
        kernel = [*relay, *kernel]
    return [*cmd, "--chdir", str(workdir), "--", *kernel]


@functools.cache
def sandbox_problem() -> str | None:
    """Why the sandbox cannot run here (None: it can), with what to do about it."""
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed: apt install bubblewrap (or dnf install bubblewrap)"
    probe = bwrap_command(["/usr/bin/true"], workdir=Path("/tmp"), readable=[])
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap did not run: {exc}"
    if done.returncode != 0:
        return (
            f"bwrap failed: {done.stderr.strip() or done.returncode}. It needs unprivileged user "
            "namespaces (Ubuntu 23.10+: an AppArmor profile for bwrap; older Debian: sysctl "
            "kernel.unprivileged_userns_clone=1) and bubblewrap >= 0.8 (--disable-userns)"
        )
    return None
