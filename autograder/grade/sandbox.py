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

Inside, the kernel runs as ``nobody`` (uid 65534) with every capability dropped and no way to
make a new user namespace (``--disable-userns``), so it cannot remount what it was given
read-only. The network namespace has only loopback, so there is no network at all; the kernel
talks to the grader over unix sockets (ZMQ ``ipc`` transport) in its socket folder. bwrap's own
init is PID 1 and the kernel PID 2, which cannot see or signal the grader; ``--die-with-parent``
ends the sandbox with the worker.

Example::

    >>> bwrap_command(["python", "-m", "ipykernel_launcher", "-f", "k/kernel.json"],
    ...               workdir=Path("/scratch/ana-x1"), writable=[Path("/run/ag-1f")])[:4]
    ['bwrap', '--unshare-all', '--unshare-user', '--disable-userns']
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

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
) -> list[str]:
    """The ``bwrap`` command line that runs ``kernel`` in the sandbox (see the module docs)."""
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
        cmd += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    # nproc and the cache sizes (torch, numpy and llama.cpp size their thread pools from them)
    cmd += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    for path in readable_paths() if readable is None else readable:
        cmd += ["--ro-bind", str(path), str(path)]
    for path in [workdir, *writable]:
        cmd += ["--bind", str(path), str(path)]
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
