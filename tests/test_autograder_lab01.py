"""The autograder on Lab 01 (needs the built course models: its cells load and ask course-chat).

Skipped, with the reason, when the models are not built; building them here would take minutes
(``make models``).
"""

from __future__ import annotations

import pytest
from labcheck import LABS_DIR

from autograder.collect import collect
from autograder.course import setup
from autograder.grade import grade
from autograder.grade.ledger import Ledger
from autograder.sample_class import check, make_sample_class

pytestmark = pytest.mark.slow

LAB = "lab01_local_chat"
VARIANTS = ["correct", "partly-correct", "wrong", "removed-parameters-tag"]


def _models_built() -> bool:
    from courselib.errors import CourseError
    from courselib.models import gguf_file

    try:
        return gguf_file("course-chat").exists()
    except CourseError:
        return False


@pytest.mark.skipif(not _models_built(), reason="course models not built (make models)")
def test_lab01_sample_submissions_get_their_expected_scores(tmp_path):
    course = setup(tmp_path / "course", labs_dir=LABS_DIR, assignments=[LAB])
    expected = make_sample_class(course, LAB, tmp_path / "class", memory_mb=4096, variants=VARIANTS)
    collect(course, LAB, tmp_path / "class")
    settings = course.settings(cell_timeout=120.0, notebook_timeout=300.0, memory_mb=4096)
    settings.parameters[LAB] = {"MAX_TOKENS": 8}
    report = grade(course, LAB, workers=2, settings=settings, progress=False)
    assert report.graded == len(VARIANTS)
    with Ledger(course.db_url) as ledger:
        rows = {r["student"]: r for r in ledger.rows(LAB)}
    problems = {s: check(e, rows[s]["score"], rows[s]["reasons"]) for s, e in expected.items()}
    assert {s: p for s, p in problems.items() if p} == {}
