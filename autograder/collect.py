"""Take in submissions: a folder or a zip, one notebook per student -> nbgrader's layout.

The student id comes from the file or folder name:

=====================================  ==========  ===========================================
input                                  student id  note
=====================================  ==========  ===========================================
``ada.ipynb``                          ada         a flat folder (or zip) of notebooks
``ada/lab03_memory.ipynb``             ada         one folder per student, any notebook name
``ada/lab03_memory/lab03_memory.ipynb``  ada       nbgrader's own ``submitted/`` layout
``ada_12345_lab03.ipynb`` + pattern    ada         ``--pattern '(?P<student>[^_]+)_'``
=====================================  ==========  ===========================================

A folder that holds everything (``export/ada.ipynb``, ``export/bob.ipynb``) is skipped first.

Each lands in ``submitted/<student>/<lab>/<lab>.ipynb`` with a ``timestamp.txt`` (the file's
modification time, or the zip entry's). Ids are reduced to letters, digits, ``.``, ``-`` and
``_``. A student with two notebooks, a zip entry that would escape the folder, a link, or a
file over ``max_mb`` is skipped with the reason.

Example::

    collect(course, "lab03_memory", "export.zip")   # -> CollectReport(taken=[...], skipped=[...])
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from autograder.course import Course
from courselib.errors import CourseError

IGNORED_PARTS = {"__MACOSX", ".ipynb_checkpoints"}


@dataclass
class CollectReport:
    taken: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(input name, reason) for every notebook not taken."""


def student_id(raw: str) -> str:
    """A safe student id.

    >>> student_id("Ada Lovelace (2)"), student_id("../../etc/passwd")
    ('Ada_Lovelace_2', 'etc_passwd')
    """
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9.\-_]", "_", raw)).strip("._-") or "unknown"


def _id_from(rel: PurePosixPath, assignment: str, pattern: re.Pattern[str] | None) -> str:
    if pattern is not None:
        match = pattern.search(str(rel))
        if not match:
            raise ValueError(f"name does not match the pattern {pattern.pattern!r}")
        return student_id(match.group("student"))
    parts = [p for p in rel.parts[:-1] if p != assignment]
    return student_id(parts[-1] if parts else rel.stem)


def _common_folder(names: list[PurePosixPath]) -> tuple[str, ...]:
    """Folders every name starts with (``export/ada.ipynb``, ``export/bob.ipynb`` -> export)."""
    if len(names) < 2:
        return ()
    common = names[0].parts[:-1]
    for name in names[1:]:
        k = 0
        while k < min(len(common), len(name.parts) - 1) and common[k] == name.parts[k]:
            k += 1
        common = common[:k]
    return common


def _entries(
    src: Path, tmp: Path, max_bytes: int
) -> tuple[list[tuple[PurePosixPath, Path, float]], list]:
    """(relative name, file on disk, mtime) for every notebook in a folder or zip."""
    found, skipped = [], []
    if src.is_dir():
        for path in sorted(src.rglob("*.ipynb")):
            rel = PurePosixPath(path.relative_to(src).as_posix())
            if IGNORED_PARTS & set(rel.parts):
                continue
            if path.is_symlink():
                skipped.append((str(rel), "a link, not a file"))
            elif path.stat().st_size > max_bytes:
                skipped.append((str(rel), f"larger than {max_bytes // 2**20} MB"))
            else:
                found.append((rel, path, path.stat().st_mtime))
        return found, skipped
    with zipfile.ZipFile(src) as archive:
        for info in archive.infolist():
            rel = PurePosixPath(info.filename)
            if info.is_dir() or rel.suffix != ".ipynb" or IGNORED_PARTS & set(rel.parts):
                continue
            if rel.is_absolute() or ".." in rel.parts:
                skipped.append((info.filename, "path escapes the archive"))
            elif stat.S_ISLNK(info.external_attr >> 16):
                skipped.append((info.filename, "a link, not a file"))
            elif info.file_size > max_bytes:
                skipped.append((info.filename, f"larger than {max_bytes // 2**20} MB"))
            else:
                out = tmp / f"{len(found)}.ipynb"
                with archive.open(info) as fin, out.open("wb") as fout:
                    shutil.copyfileobj(fin, fout, length=1 << 20)
                mtime = dt.datetime(*info.date_time).timestamp()
                found.append((rel, out, mtime))
    return found, skipped


def collect(
    course: Course,
    assignment: str,
    src: str | Path,
    *,
    pattern: str | None = None,
    max_mb: int = 50,
) -> CollectReport:
    """Copy every student's notebook from ``src`` (folder or .zip) into ``submitted/``."""
    src = Path(src)
    if not src.is_dir() and not zipfile.is_zipfile(src):
        raise CourseError(
            f"{src} is {'not a zip archive' if src.exists() else 'not there'}: submissions come "
            "as a folder or a .zip of notebooks.",
            hint="Name the folder or the .zip your learning platform exported (e.g. export.zip).",
        )
    report = CollectReport()
    regex = re.compile(pattern) if pattern else None
    with tempfile.TemporaryDirectory() as tmp:
        entries, report.skipped = _entries(src, Path(tmp), max_mb * 2**20)
        by_student: dict[str, list[tuple[PurePosixPath, Path, float]]] = {}
        common = _common_folder([rel for rel, _, _ in entries])
        for rel, path, mtime in entries:
            try:
                sid = _id_from(PurePosixPath(*rel.parts[len(common) :]), assignment, regex)
            except ValueError as err:
                report.skipped.append((str(rel), str(err)))
                continue
            by_student.setdefault(sid, []).append((rel, path, mtime))
        for sid, items in sorted(by_student.items()):
            if len(items) > 1:
                names = ", ".join(str(rel) for rel, _, _ in items)
                report.skipped.append((names, f"student {sid!r} has {len(items)} notebooks"))
                continue
            rel, path, mtime = items[0]
            dest = course.dir("submitted", sid, assignment)
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest / f"{assignment}.ipynb")
            stamp = dt.datetime.fromtimestamp(mtime, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
            (dest / "timestamp.txt").write_text(stamp)
            report.taken.append(sid)
    return report


def submissions(course: Course, assignment: str) -> dict[str, Path]:
    """Student id -> submitted notebook, for every student who submitted ``assignment``."""
    found = course.root.glob(f"submitted/*/{assignment}/{assignment}.ipynb")
    return {p.parent.parent.name: p for p in sorted(found)}
