"""Export: grade sheet (CSV), feedback HTML per student, class summary (text and PNG).

Example::

    report = export(course)          # every lab with results
    print(report.summary)            # also in exports/summary.txt; exports/scores.png
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from autograder.course import Course
from autograder.export.feedback import generate_feedback
from autograder.export.sheet import grade_rows, write_csv
from autograder.export.summary import histogram, summary_text


@dataclass
class ExportReport:
    csv: Path
    summary: str
    png: Path | None
    feedback: list[Path] = field(default_factory=list)
    feedback_errors: dict[str, str] = field(default_factory=dict)


def export(
    course: Course,
    assignments: list[str] | None = None,
    *,
    out: str | Path | None = None,
    feedback: bool = True,
    show_hidden: bool = False,
) -> ExportReport:
    """Write ``grades.csv``, ``summary.txt``, ``scores.png`` to ``out`` (default exports/) and,
    with ``feedback``, feedback/<student>/<lab>/<lab>.html."""
    out = Path(out) if out else course.root / "exports"
    rows = grade_rows(course, assignments)
    csv_path = write_csv(rows, out / "grades.csv", course)
    text = summary_text(rows)
    (out / "summary.txt").write_text(text + "\n")
    png = histogram(rows, out / "scores.png") if rows else None
    report = ExportReport(csv_path, text, png)
    if feedback:
        for lab in dict.fromkeys(r["assignment"] for r in rows if r["score"] is not None):
            result = generate_feedback(course, lab, show_hidden=show_hidden)
            if not result["success"]:
                report.feedback_errors[lab] = result.get("error") or result.get("log", "")
            report.feedback += sorted(course.root.glob(f"feedback/*/{lab}/*.html"))
    return report


__all__ = ["ExportReport", "export", "generate_feedback", "grade_rows", "summary_text", "write_csv"]
