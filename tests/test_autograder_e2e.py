"""The autograder end to end on Lab 03's sample class: real nbgrader, papermill and kernels.

One course is set up once (temp dir) and graded in three runs, like an interrupted class:
``--limit 4`` with one worker, then the CLI with two workers while the test kills a worker
mid-batch, then once more (nothing left). The tests check what those runs left behind.
"""

from __future__ import annotations

import html
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile

import nbformat
import psutil
import pytest
from labcheck import LABS_DIR

from autograder.collect import collect
from autograder.course import setup
from autograder.export import export
from autograder.grade import grade
from autograder.grade.execute import namespaces_work
from autograder.grade.job import grade_id, is_test
from autograder.grade.ledger import Ledger
from autograder.grade.sandbox import sandbox_problem
from autograder.sample_class import VARIANTS, check, make_sample_class

pytestmark = pytest.mark.slow

LAB = "lab03_memory"
GRADING = {"cell_timeout": 20.0, "notebook_timeout": 120.0, "memory_mb": 768}
PARAMETERS = {"N_CTX": 256}


def _grade_cli(course, *args) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "autograder", "grade", str(course.root), LAB, "-q", *args]
    cmd += [
        "--cell-timeout",
        "20",
        "--notebook-timeout",
        "120",
        "--memory-mb",
        "768",
        "-p",
        "N_CTX=256",
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _rows(course) -> int:
    with sqlite3.connect(course.db_path) as db:
        return db.execute("SELECT count(*) FROM autograder_results").fetchone()[0]


def _kill_busy_worker(
    cli: subprocess.Popen, course, *, after_rows: int, timeout: float = 240
) -> bool:
    """Once ``after_rows`` results are in, SIGKILL a worker that is running a kernel."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and cli.poll() is None:
        if _rows(course) >= after_rows:
            for child in psutil.Process(cli.pid).children():
                try:
                    if "spawn_main" in " ".join(child.cmdline()) and child.children():
                        os.kill(child.pid, signal.SIGKILL)
                        return True
                except psutil.NoSuchProcess:
                    continue
        time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The course after three grading runs; timings and the runs' reports."""
    root = tmp_path_factory.mktemp("course")
    course = setup(root, labs_dir=LABS_DIR, assignments=[LAB])
    expected = make_sample_class(course, LAB, root / "class", memory_mb=GRADING["memory_mb"])
    archive = root / "class.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted((root / "class").glob("*.ipynb")):
            z.write(path, f"export/{path.name}")
    taken = collect(course, LAB, archive)
    settings = course.settings(**GRADING)
    settings.parameters[LAB] = PARAMETERS

    first = grade(course, LAB, workers=1, limit=4, settings=settings, progress=False)
    cli = _grade_cli(course, "--workers", "2")
    killed = _kill_busy_worker(cli, course, after_rows=6)
    output, _ = cli.communicate(timeout=600)
    again = grade(course, LAB, workers=2, settings=settings, progress=False)
    report = export(course, [LAB])
    return {
        "course": course,
        "expected": expected,
        "taken": taken,
        "first": first,
        "cli": (cli.returncode, output),
        "killed": killed,
        "again": again,
        "export": report,
    }


def test_every_sample_submission_is_collected(graded):
    assert sorted(graded["taken"].taken) == sorted(VARIANTS)
    assert graded["taken"].skipped == []


def test_every_submission_gets_its_expected_score_and_reason(graded):
    with Ledger(graded["course"].db_url) as ledger:
        rows = {r["student"]: r for r in ledger.rows(LAB)}
    problems = {
        student: check(want, rows[student]["score"], rows[student]["reasons"])
        for student, want in graded["expected"].items()
    }
    assert {s: p for s, p in problems.items() if p} == {}
    assert all(rows[s]["status"] == "graded" for s in rows)


def test_hostile_submissions_are_contained(graded):
    expected = graded["expected"]
    full = expected["correct"].max_score
    assert expected["tampered-test"].score < full  # a test edited to `pass` does not pass
    assert expected["reads-other-files"].score < full  # nbgrader's relative path leads nowhere
    with Ledger(graded["course"].db_url) as ledger:
        rows = {r["student"]: r for r in ledger.rows(LAB)}
    assert rows["tampered-test"]["score"] < full
    assert rows["infinite-loop"]["seconds"] < GRADING["cell_timeout"] + 30
    assert any("killed" in r for r in rows["ignores-interrupt"]["reasons"])


def test_a_run_stopped_after_k_then_a_killed_worker_lose_and_duplicate_nothing(graded):
    course = graded["course"]
    assert graded["first"].graded == 4 and graded["first"].planned == len(VARIANTS)
    code, output = graded["cli"]
    assert graded["killed"], f"no busy worker to kill:\n{output}"
    assert code == 0, output
    assert f"{len(VARIANTS)} submissions, 4 already graded" in output
    with sqlite3.connect(course.db_path) as db:
        subs = db.execute(
            "SELECT count(*), count(DISTINCT student_id) FROM submitted_assignment"
        ).fetchone()
        grades = db.execute("SELECT count(*) FROM grade").fetchone()[0]
        unscored = db.execute("SELECT count(*) FROM grade WHERE auto_score IS NULL").fetchone()[0]
        rows = db.execute(
            "SELECT count(*), count(DISTINCT student) FROM autograder_results"
        ).fetchone()
    tests = sum(is_test(c) for c in nbformat.read(course.release_notebook(LAB), as_version=4).cells)
    assert subs == (len(VARIANTS), len(VARIANTS))
    assert grades == len(VARIANTS) * tests and unscored == 0
    assert rows == (len(VARIANTS), len(VARIANTS))


def test_grading_again_grades_nothing_new(graded):
    again = graded["again"]
    assert (again.submissions, again.planned, again.graded) == (len(VARIANTS), 0, 0)


def test_parameters_are_injected_after_the_parameters_cell_without_its_tag(graded):
    path = graded["course"].dir("autograded", "removed-parameters-tag", LAB, f"{LAB}.ipynb")
    nb = nbformat.read(path, as_version=4)
    names = [grade_id(c) or c.metadata.get("tags", [None])[0] for c in nb.cells]
    at = names.index("parameters")
    assert names[at + 1] == "injected-parameters"
    assert "N_CTX = 256" in nb.cells[at + 1].source
    assert nb.cells[at + 1].execution_count == nb.cells[at].execution_count + 1


def test_graded_outputs_come_from_the_restored_notebook(graded):
    path = graded["course"].dir("autograded", "tampered-test", LAB, f"{LAB}.ipynb")
    nb = nbformat.read(path, as_version=4)
    text = nbformat.writes(nb)
    assert "all tests passed" not in text  # the submitted fake output is gone
    assert "### BEGIN HIDDEN TESTS" in text  # what ran is the gradebook's test cell


def test_export_writes_sheet_summary_histogram_and_feedback_without_hidden_tests(graded):
    course, report = graded["course"], graded["export"]
    lines = report.csv.read_text().splitlines()
    assert lines[0].startswith(
        "student,assignment,score,max_score,status,flag,reason,lost,notes,lab03_memory:test-"
    )
    assert len(lines) == 1 + len(VARIANTS)
    assert report.png.stat().st_size > 1000
    assert "not fully graded" in report.summary and "infinite-loop" in report.summary
    assert report.feedback_errors == {}
    assert len(report.feedback) == len(VARIANTS)
    source = nbformat.read(course.source_notebook(LAB), as_version=4)
    hidden = [
        line.strip()
        for c in source.cells
        if "### BEGIN HIDDEN TESTS" in c.source
        for line in c.source.split("### BEGIN HIDDEN TESTS")[1]
        .split("### END HIDDEN TESTS")[0]
        .splitlines()
        if line.strip()
    ]
    assert hidden
    for page in report.feedback:
        text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))  # code is split in spans
        leaked = [h for h in hidden if h in text]
        assert not leaked, (page, leaked)


ISOLATED = [
    pytest.param(
        "namespaces",
        marks=pytest.mark.skipif(
            not namespaces_work(), reason="no unprivileged user namespaces (unshare -Urn)"
        ),
    ),
    pytest.param(
        "sandbox",
        marks=pytest.mark.skipif(sandbox_problem() is not None, reason=str(sandbox_problem())),
    ),
]


@pytest.mark.parametrize("isolation", ISOLATED)
def test_an_isolated_notebook_cannot_kill_its_grader_or_read_the_course(tmp_path, isolation):
    course = setup(tmp_path / "course", labs_dir=LABS_DIR, assignments=[LAB])
    variants = ["correct", "crashes-kernel", "kills-its-worker", "reads-by-absolute-path"]
    variants += ["infinite-loop"]  # interrupted, not killed: a signal from outside cannot reach it
    expected = make_sample_class(
        course, LAB, tmp_path / "class", memory_mb=768, isolation=isolation, variants=variants
    )
    if isolation == "sandbox":  # the cheat that works without the sandbox does not in it
        assert expected["reads-by-absolute-path"].score < expected["correct"].score
    collect(course, LAB, tmp_path / "class")
    settings = course.settings(**GRADING, isolation=isolation)
    report = grade(course, LAB, workers=2, settings=settings, progress=False)
    assert (report.graded, report.pool_restarts) == (len(variants), 0)
    results = {r.student: r for r in report.results}
    problems = {s: check(e, results[s].score, results[s].reasons) for s, e in expected.items()}
    assert {s: p for s, p in problems.items() if p} == {}


def test_on_a_local_dask_cluster_every_submission_gets_its_expected_score(tmp_path):
    course = setup(tmp_path / "course", labs_dir=LABS_DIR, assignments=[LAB])
    variants = ["correct", "partly-correct", "infinite-loop", "kills-its-worker"]
    expected = make_sample_class(course, LAB, tmp_path / "class", memory_mb=768, variants=variants)
    collect(course, LAB, tmp_path / "class")
    settings = course.settings(**GRADING)
    report = grade(course, LAB, workers=2, settings=settings, progress=False, dask="local")
    assert sorted(r.student for r in report.results) == sorted(variants)  # each once
    results = {r.student: r for r in report.results}
    problems = {s: check(e, results[s].score, results[s].reasons) for s, e in expected.items()}
    assert {s: p for s, p in problems.items() if p} == {}
    with sqlite3.connect(course.db_path) as db:  # one gradebook row per submission
        assert db.execute("SELECT count(*) FROM autograder_results").fetchone()[0] == 4


@pytest.mark.parametrize("lab", ["lab02_class_server", "lab04_finetune"])
def test_labs_with_live_parts_grade_their_sample_class_quickly(tmp_path, lab):
    # Lab 02's test cells come before its live parts (its own server, the class server), Lab
    # 04's before its fine-tunes; grading stops after the last test cell: no server runs and
    # nothing trains while a class is graded.
    course = setup(tmp_path / "course", labs_dir=LABS_DIR, assignments=[lab])
    variants = ["correct", "partly-correct", "wrong", "tampered-test", "removed-parameters-tag"]
    expected = make_sample_class(course, lab, tmp_path / "class", memory_mb=768, variants=variants)
    collect(course, lab, tmp_path / "class")
    report = grade(course, lab, workers=2, settings=course.settings(**GRADING), progress=False)
    results = {r.student: r for r in report.results}
    problems = {s: check(e, results[s].score, results[s].reasons) for s, e in expected.items()}
    assert {s: p for s, p in problems.items() if p} == {}
    assert results["correct"].score == results["correct"].max_score > 0
