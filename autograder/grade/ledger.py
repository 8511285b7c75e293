"""The one writer: results into nbgrader's gradebook, and what was graded from which file.

The table ``autograder_results`` lives in the gradebook's own SQLite file, one row per
(student, lab): the fingerprint of what was graded (submission bytes, the instructor's
notebook, the grading settings), the scores, and the reasons. A result's scores and its row
are committed in **one transaction** (nbgrader commits the student and the empty submission
just before), so a run killed at any point leaves each submission either graded (row and
scores agree) or not (no row, or an old fingerprint): a re-run grades exactly the missing and
changed ones, and writes each once (``update_or_create`` in nbgrader, one primary key here).
nbgrader ignores tables it does not know.

Only the parent process opens the gradebook for writing; workers read a snapshot.

Example::

    with Ledger(course.db_url) as ledger:
        ledger.write(result, notebook="lab03_memory", timestamp=None)
        ledger.done("lab03_memory")          # {"ada": "3f2a..."}: fingerprints graded
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from typing import Any

from nbgrader.api import Gradebook
from sqlalchemy import text
from sqlalchemy.exc import SAWarning

from autograder.grade.job import Result

TABLE = "autograder_results"
COURSE_ID = ""  # nbgrader's apps use the empty course id unless configured

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    student TEXT NOT NULL,
    assignment TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    submission_sha256 TEXT NOT NULL,
    status TEXT NOT NULL,
    score REAL,
    max_score REAL,
    cells TEXT NOT NULL,
    reasons TEXT NOT NULL,
    notes TEXT NOT NULL,
    lost TEXT NOT NULL DEFAULT '{{}}',
    flags TEXT NOT NULL DEFAULT '[]',
    seconds REAL,
    graded_at TEXT NOT NULL,
    PRIMARY KEY (student, assignment)
)
"""


class Ledger:
    """nbgrader's ``Gradebook`` plus the results table (use as a context manager)."""

    def __init__(self, db_url: str):
        self.gradebook = Gradebook(db_url, COURSE_ID)
        self.db = self.gradebook.db
        self.db.execute(text(SCHEMA))
        have = {row[1] for row in self.db.execute(text(f"PRAGMA table_info({TABLE})"))}
        for column, empty in (("lost", "{}"), ("flags", "[]")):  # a gradebook from before them
            if column not in have:
                self.db.execute(
                    text(f"ALTER TABLE {TABLE} ADD COLUMN {column} TEXT NOT NULL DEFAULT '{empty}'")
                )
        self.db.commit()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.gradebook.close()

    def done(self, assignment: str) -> dict[str, str]:
        """student -> fingerprint, for every submission graded without a grader error."""
        rows = self.db.execute(
            text(
                f"SELECT student, fingerprint FROM {TABLE} WHERE assignment = :a AND status = 'graded'"
            ),
            {"a": assignment},
        )
        return dict(rows.all())

    def write(self, result: Result, *, notebook: str, timestamp: str | None) -> None:
        """Scores into the gradebook and the row into the table, in one transaction.

        A grader error ("error") writes only the row: the gradebook keeps what it had.
        """
        row = _row(result)
        columns, values = ", ".join(row), ", ".join(f":{k}" for k in row)
        with warnings.catch_warnings():
            # nbgrader 0.9's add_submission triggers SQLAlchemy 2 autoflush warnings (harmless)
            warnings.simplefilter("ignore", SAWarning)
            try:
                if result.status == "graded":
                    self._scores(result, notebook, timestamp)
                self.db.execute(
                    text(f"INSERT OR REPLACE INTO {TABLE} ({columns}) VALUES ({values})"), row
                )
                self.db.commit()
            except Exception:
                self.db.rollback()
                raise

    def _scores(self, result: Result, notebook: str, timestamp: str | None) -> None:
        gb = self.gradebook
        gb.update_or_create_student(result.student)
        extra = {"timestamp": timestamp} if timestamp else {}
        gb.update_or_create_submission(result.assignment, result.student, **extra)
        submitted = gb.find_submission_notebook(notebook, result.assignment, result.student)
        for grade in submitted.grades:
            # a grade cell the pipeline never scored (a written answer) needs a manual grade
            grade.auto_score = result.scores.get(grade.name)
            grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None

    def rows(self, assignment: str | None = None) -> list[dict[str, Any]]:
        """Every row (of one lab), decoded, ordered by lab and student."""
        sql = f"SELECT * FROM {TABLE}" + (" WHERE assignment = :a" if assignment else "")
        result = self.db.execute(text(sql + " ORDER BY assignment, student"), {"a": assignment})
        out = []
        for row in result.mappings().all():
            row = dict(row)
            for key in ("cells", "reasons", "notes", "lost", "flags"):
                row[key] = json.loads(row[key])
            out.append(row)
        return out


def _row(result: Result) -> dict[str, Any]:
    graded = result.status == "graded"
    return {
        "student": result.student,
        "assignment": result.assignment,
        "fingerprint": result.fingerprint,
        "submission_sha256": result.submission_sha256,
        "status": result.status,
        "score": result.score if graded else None,
        "max_score": result.max_score if graded else None,
        "cells": json.dumps({k: [result.scores.get(k), v] for k, v in result.max_scores.items()}),
        "reasons": json.dumps(result.reasons),
        "notes": json.dumps(result.notes),
        "lost": json.dumps(result.lost),
        "flags": json.dumps(result.flags),
        "seconds": round(result.seconds, 3),
        "graded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
