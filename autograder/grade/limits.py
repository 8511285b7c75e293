"""Start a grading kernel under resource limits (run as a script, before the kernel: stdlib only).

``python limits.py --memory-mb 4096 --parent 1234 -- python -m ipykernel_launcher -f conn.json``
sets, then ``exec``s the kernel command (the limits are inherited by everything it starts):

- ``RLIMIT_DATA`` = memory-mb: heap and private anonymous memory (Linux >= 4.7 counts mmap'ed
  allocations too). An allocation past it raises ``MemoryError`` in the student's cell and the
  kernel lives on. ``RLIMIT_AS`` would count address space that is only reserved (thread
  stacks, allocator arenas, CUDA's reservations) and break ordinary imports.
- ``RLIMIT_FSIZE`` (1 GiB): no single file the student's code writes can fill the disk.
- ``RLIMIT_CORE`` = 0: a crash leaves no core dump.
- ``PR_SET_PDEATHSIG``: the kernel is killed when the worker that started it dies (a killed
  worker leaves no orphan kernel running a student's infinite loop).
- ``--max-tasks N``: at most N tasks (processes *and* threads: a kernel with torch loaded
  runs ~20-40 threads) for the kernel and everything it starts, so a fork bomb stops at N. A
  cgroup of the ``pids`` controller when this process may make one (root, or a delegated
  cgroup v2 subtree: see ``cap_tasks``), else ``RLIMIT_NPROC`` (per user: counts the grading
  user's other processes too, and is not enforced for root).
- ``--init`` (inside ``unshare --pid --fork``): stay as PID 1 of the namespace and run the
  kernel as PID 2 (see ``run_as_init``).
- ``--forward PORT=SOCKET`` (inside the sandbox): a child process listens on 127.0.0.1:PORT
  and pipes every connection to the unix socket SOCKET, where the grader pipes it on to the
  course server (``forward``): the one way out of a sandbox with no network.

These are per-process limits, not a sandbox: the code can still read what the grading user can
read and open sockets; ``isolation = "sandbox"`` (bubblewrap, ``sandbox.py``) adds that.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import resource
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

FILE_LIMIT_BYTES = 2**30
PR_SET_PDEATHSIG = 1
CGROUP_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))
"""cgroup v1's pids hierarchy, cgroup v2's unified one."""
CGROUP_DIR = "autograder"
"""One cgroup per kernel under <root>/autograder/ (empty ones are removed by ``sweep``)."""
MAX_CONNECTIONS = 16
"""Connections to the course server one kernel may hold open at once."""


def apply_limits(memory_mb: int) -> None:
    """Set the limits of this process (see the module docstring)."""
    if memory_mb > 0:
        cap = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT_BYTES, FILE_LIMIT_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def cap_tasks(n: int) -> str:
    """Put this process in a new cgroup with ``pids.max = n``; -> how the cap is enforced."""
    for root in CGROUP_ROOTS:
        if not (root / "cgroup.procs").exists():
            continue
        try:
            if (root / "cgroup.controllers").exists():  # v2: pids must be on for children
                if "pids" not in (root / "cgroup.controllers").read_text().split():
                    continue
                (root / "cgroup.subtree_control").write_text("+pids")
                (root / CGROUP_DIR).mkdir(exist_ok=True)
                (root / CGROUP_DIR / "cgroup.subtree_control").write_text("+pids")
            group = root / CGROUP_DIR / f"kernel-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            group.mkdir(parents=True)
            (group / "pids.max").write_text(str(n))
            (group / "cgroup.procs").write_text(str(os.getpid()))
            return f"cgroup {group}"
        except OSError:
            continue  # not ours to write (no root, no delegation): try the next, then the rlimit
    if os.geteuid() == 0:
        return "not enforced (root ignores RLIMIT_NPROC and no pids cgroup could be made)"
    cap = _user_tasks() + n  # RLIMIT_NPROC counts all the user's tasks, these included
    resource.setrlimit(resource.RLIMIT_NPROC, (cap, cap))
    return f"RLIMIT_NPROC {cap}"


def _user_tasks() -> int:
    """Tasks (threads) of this user now, as RLIMIT_NPROC counts them."""
    count = 0
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and proc.stat().st_uid == os.getuid():
                count += sum(1 for _ in (proc / "task").iterdir())
        except OSError:
            pass  # ended while we looked
    return count


def sweep() -> None:
    """Remove the empty cgroups of kernels that have ended (the kernel cannot remove its own)."""
    for root in CGROUP_ROOTS:
        parent = root / CGROUP_DIR
        if not parent.is_dir():
            continue
        for group in parent.glob("kernel-*"):
            try:
                if not (group / "cgroup.procs").read_text().strip():
                    group.rmdir()
            except OSError:
                pass  # still running, or gone already


def forward(listener: socket.socket, connect: Callable[[], socket.socket]) -> None:
    """Accept on ``listener`` until it is closed; pipe each connection both ways to a new
    ``connect()`` (threads; at most ``MAX_CONNECTIONS`` at once, the rest wait)."""
    slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return  # closed: the kernel or the grading of this notebook is over
        slots.acquire()
        threading.Thread(target=_connection, args=(client, connect, slots), daemon=True).start()


def _connection(client: socket.socket, connect, slots: threading.BoundedSemaphore) -> None:
    try:
        try:
            upstream = connect()
        except OSError:
            return  # the course server is down: the student's client sees the close
        with upstream:
            other = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            other.start()
            _pipe(client, upstream)
            other.join()
    finally:
        client.close()
        slots.release()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    """Copy until ``src`` ends, then end ``dst``'s sending side (HTTP keeps reading)."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def start_forwarder(port: int, path: str) -> None:
    """Fork a child that listens on 127.0.0.1:``port`` and pipes to the unix socket ``path``."""
    listener = socket.create_server(("127.0.0.1", port))
    if os.fork() != 0:
        listener.close()
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupt is for the kernel

    def connect() -> socket.socket:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(path)
        return upstream

    forward(listener, connect)
    os._exit(0)


def die_with_parent(parent: int) -> None:
    """Get SIGKILL when the parent dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent and os.getppid() != parent:
        os._exit(1)


def run_as_init(command: list[str]) -> None:
    """PID 1 of a new PID namespace: start ``command`` as PID 2, reap, exit with its status.

    The kernel must not be PID 1 itself: the kernel of a namespace ignores signals it has no
    handler for, even SIGKILL sent from inside, so a crash would not crash.
    """
    child = os.fork()
    if child == 0:
        # ipykernel exits when its parent looks like init (PID 1): it is, here, on purpose
        os.environ.pop("JPY_PARENT_PID", None)
        os.execvp(command[0], command)
    # an interrupt goes to the whole process group: it is for the kernel, not for us
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGTERM))
    while True:
        pid, status = os.wait()  # orphans of the namespace are ours to reap too
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            os._exit(128 - code if code < 0 else code)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--max-tasks", type=int, default=0, help="processes + threads (0: none)")
    parser.add_argument("--parent", type=int, default=0, help="pid of the process starting us")
    parser.add_argument(
        "--init", action="store_true", help="be PID 1 of a namespace (see run_as_init)"
    )
    parser.add_argument(
        "--forward", metavar="PORT=SOCKET", help="pipe 127.0.0.1:PORT to a unix socket"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")
    apply_limits(args.memory_mb)
    if args.max_tasks > 0:
        cap_tasks(args.max_tasks)
    if args.forward:
        port, path = args.forward.split("=", 1)
        start_forwarder(int(port), path)
    die_with_parent(args.parent)
    if args.init:
        run_as_init(command)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
