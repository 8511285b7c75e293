"""What a worker is given (``Job``), what it returns (``Result``), and the state the grading steps
share while they process one notebook (``Context``, in ``resources["autograder"]``).

Jobs and results are plain picklable data: workers never write to the gradebook, the parent
process does (one writer).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from nbformat import NotebookNode


@dataclass(frozen=True)
class Job:
    """One submission to grade."""

    student: str
    assignment: str
    submission: str
    """The submitted notebook (submitted/<student>/<lab>/<lab>.ipynb)."""
    release: str
    """The student version it started from (release/<lab>/<lab>.ipynb)."""
    db_url: str
    """A read-only snapshot of the gradebook: the locked cells and hidden tests to restore."""
    output: str
    """Where the executed notebook goes (autograded/<student>/<lab>/<lab>.ipynb)."""
    scratch: str
    """Folder under which the kernel gets its own empty working directory."""
    fingerprint: str
    settings: dict[str, Any]
    """``GradeSettings`` as a dict, ``parameters`` already narrowed to this lab."""


@dataclass
class Result:
    """Scores of one submission, and why it was not (fully) graded if so."""

    student: str
    assignment: str
    fingerprint: str
    status: Literal["graded", "error"] = "graded"
    """"error": the grader itself failed (nothing is written to the gradebook)."""
    scores: dict[str, float | None] = field(default_factory=dict)
    """grade_id -> points (None: needs a manual grade, e.g. a written answer)."""
    max_scores: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    """What stopped a full grading or was repaired: timeouts, a crash, edited test cells ..."""
    notes: list[str] = field(default_factory=list)
    """Harmless repairs and facts (renumbered cell ids, stderr ignored ...)."""
    lost: dict[str, str] = field(default_factory=dict)
    """grade_id -> why that test cell lost its points (never a hidden test's text)."""
    flags: list[str] = field(default_factory=list)
    """Why an instructor should look at this submission: what its code changed in the kernel
    (input transformers, patched modules, the grader's own-work guard ...). A flag never
    changes a score."""
    seconds: float = 0.0
    submission_sha256: str = ""

    @property
    def score(self) -> float:
        return sum(s for s in self.scores.values() if s is not None)

    @property
    def max_score(self) -> float:
        return sum(self.max_scores.values())


@dataclass
class Context:
    """Per-notebook state shared by the grading steps."""

    job: Job
    release: NotebookNode
    """The student version: which cells are locked, tests, solutions, the parameters cell."""
    workdir: Path | None = None
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    executed: set[int] = field(default_factory=set)
    """Indices of the cells the kernel really executed (a test cell not run scores 0)."""
    not_run: dict[int, str] = field(default_factory=dict)
    """Index -> why that cell was not run (time limit, dead kernel ...)."""
    failed: dict[int, str] = field(default_factory=dict)
    """Index -> why that test cell failed, in the student's words (never a hidden test's text)."""
    lost: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    scores: dict[str, float | None] = field(default_factory=dict)
    max_scores: dict[str, float] = field(default_factory=dict)

    @property
    def settings(self) -> dict[str, Any]:
        return self.job.settings

    def reason(self, text: str) -> None:
        if text not in self.reasons:
            self.reasons.append(text)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def flag(self, text: str) -> None:
        if text not in self.flags:
            self.flags.append(text)


def context(resources: dict) -> Context:
    """The ``Context`` a grading step finds in nbconvert's ``resources``."""
    return resources["autograder"]


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fingerprint(submission_sha: str, source_sha: str, settings: dict[str, Any]) -> str:
    """Changes when the submission, the instructor's notebook or a grading setting changes.

    >>> a = fingerprint("ab", "cd", {"cell_timeout": 60})
    >>> len(a), a == fingerprint("ab", "cd", {"cell_timeout": 60}), a == fingerprint("ab", "cd", {})
    (16, True, False)
    """
    blob = json.dumps([submission_sha, source_sha, settings], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def grade_id(cell: NotebookNode) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def nbgrader_id(cell: NotebookNode) -> str:
    """The grade_id of a solution or graded cell of an instructor's or a release notebook.

    nbgrader's format check refuses such a cell without one before it makes the release, so
    these notebooks always have it (a student's copy may have lost it: use :func:`grade_id`).
    """
    return cast(str, grade_id(cell))


def is_test(cell: NotebookNode) -> bool:
    """A graded code cell (nbgrader ``grade: true``): what nbgrader scores by its outputs."""
    nbg = cell.get("metadata", {}).get("nbgrader", {})
    return bool(nbg.get("grade")) and cell.get("cell_type") == "code"
