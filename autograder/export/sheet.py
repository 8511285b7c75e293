"""The grade sheet: one row per (student, lab), from the gradebook and the results table.

Scores come from nbgrader's gradebook (so a manual regrade in formgrader shows up); the status,
reasons and notes from the autograder's results table. A grader error has no score.

A row is a dict with the columns student, assignment, score, max_score, status, flag (what
the notebook changed in its kernel that an instructor should look at; never a score change),
reason (what stopped a full grading), lost (each test cell that lost points, and why), notes,
and ``cells``: ``{grade_id: (score, points)}``; the CSV has one column per test cell
(``<lab>:<grade_id>``, in notebook order).

Example::

    rows = grade_rows(course)
    write_csv(rows, "exports/grades.csv")
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import nbformat
from nbgrader.api import MissingEntry

from autograder.course import Course
from autograder.grade.job import is_test, nbgrader_id
from autograder.grade.ledger import Ledger

FIXED = ["student", "assignment", "score", "max_score", "status", "flag", "reason", "lost", "notes"]


def test_cells(course: Course, assignment: str) -> list[str]:
    """grade_ids of the lab's test cells, in notebook order."""
    nb = nbformat.read(course.release_notebook(assignment), as_version=4)
    return [nbgrader_id(c) for c in nb.cells if is_test(c)]


def grade_rows(course: Course, assignments: list[str] | None = None) -> list[dict[str, Any]]:
    """Every recorded submission of ``assignments`` (default: all) as a sheet row."""
    rows = []
    with Ledger(course.db_url) as ledger:
        for rec in ledger.rows():
            if assignments and rec["assignment"] not in assignments:
                continue
            row = {
                "student": rec["student"],
                "assignment": rec["assignment"],
                "score": None,
                "max_score": rec["max_score"],
                "status": rec["status"],
                "reason": "; ".join(rec["reasons"]),
                "lost": "; ".join(f"{gid}: {why}" for gid, why in rec["lost"].items()),
                "flag": "; ".join(rec["flags"]),
                "notes": "; ".join(rec["notes"]),
                "cells": {},
            }
            if rec["status"] == "graded":
                try:
                    sub = ledger.gradebook.find_submission(rec["assignment"], rec["student"])
                except MissingEntry:
                    sub = None
                if sub is not None:
                    row["score"], row["max_score"] = sub.score, sub.max_score
                    for nb in sub.notebooks:
                        for grade in nb.grades:
                            row["cells"][grade.name] = (grade.score, grade.max_score)
            rows.append(row)
    return rows


def write_csv(rows: list[dict[str, Any]], path: str | Path, course: Course | None = None) -> Path:
    """Write ``rows`` with the fixed columns first, then the test cells."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for assignment in dict.fromkeys(r["assignment"] for r in rows):
        found = {g for r in rows if r["assignment"] == assignment for g in r["cells"]}
        names = test_cells(course, assignment) if course else []
        ordered = [n for n in names if n in found] + sorted(found - set(names))
        columns += [f"{assignment}:{n}" for n in ordered]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIXED + columns)
        writer.writeheader()
        for row in rows:
            flat = {k: row.get(k) for k in FIXED}
            flat |= {f"{row['assignment']}:{g}": s for g, (s, _) in row["cells"].items()}
            writer.writerow({k: ("" if v is None else v) for k, v in flat.items()})
    return path
