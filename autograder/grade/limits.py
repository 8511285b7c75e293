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
- ``--init`` (inside ``unshare --pid --fork``): stay as PID 1 of the namespace and run the
  kernel as PID 2 (see ``run_as_init``).

These are per-process limits, not a sandbox: the code can still read what the grading user can
read, open sockets and start processes (``RLIMIT_NPROC`` counts every process of the user and
is not enforced for root). Stronger isolation needs bubblewrap, a container or another user.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import signal
import sys

FILE_LIMIT_BYTES = 2**30
PR_SET_PDEATHSIG = 1


def apply_limits(memory_mb: int) -> None:
    """Set the limits of this process (see the module docstring)."""
    if memory_mb > 0:
        cap = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT_BYTES, FILE_LIMIT_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


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
    parser.add_argument("--parent", type=int, default=0, help="pid of the process starting us")
    parser.add_argument(
        "--init", action="store_true", help="be PID 1 of a namespace (see run_as_init)"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")
    apply_limits(args.memory_mb)
    die_with_parent(args.parent)
    if args.init:
        run_as_init(command)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
