"""Write files and directories so that an interrupted build never leaves a half-written model.

Everything is written under a temporary name beside the target and renamed into place only
when complete (rename is atomic on one filesystem). A full disk becomes a :class:`CourseError`.

Example::

    with atomic_path(out / "model.gguf") as tmp:
        write_gguf(tmp)          # if this raises, model.gguf does not appear
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from courselib.errors import CourseError

TMP_MARK = ".partial-"


@contextmanager
def atomic_path(target: Path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it to ``target`` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{TMP_MARK}{os.getpid()}-{target.name}")
    _remove(tmp)
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        _remove(target)
        os.replace(tmp, target)
    except OSError as exc:
        _remove(tmp)
        if exc.errno == errno.ENOSPC:
            free = shutil.disk_usage(target.parent).free
            raise CourseError(
                f"The disk is full while writing {target} ({free / 1e6:.0f} MB free).",
                hint="Free some space, or move the course data with COURSELAB_DATA_DIR=/bigger/disk.",
            ) from None
        raise
    except BaseException:
        _remove(tmp)
        raise


def clean_partials(directory: Path) -> int:
    """Delete leftovers of interrupted writes under ``directory``; returns how many.

    A partial whose writer (the pid in its name) is still running is left alone.
    """
    count = 0
    if directory.is_dir():
        for path in directory.rglob(f"{TMP_MARK}*"):
            pid = path.name[len(TMP_MARK) :].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                continue
            _remove(path)
            count += 1
    return count


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()
