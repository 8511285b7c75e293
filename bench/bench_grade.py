"""Grading a class: the autograder against stock ``nbgrader autograde``, side by side.

One class of well-behaved Lab 03 submissions (correct, partly correct, wrong, noisy on stderr,
cycled; hostile ones would only measure the time limits) is graded four ways in this run:

1. bare: each student's notebook executed by nbclient, nothing else (the floor);
2. ``autograder grade --workers 1`` and 3. ``--workers 2`` (a persistent pool of workers);
4. stock ``nbgrader autograde`` on a copy of the same course (one process, one submission at a
   time, a new nbgrader pipeline per submission).

All four run the same cells with the same time limit per cell (``CELL_TIMEOUT``): the
autograder is told to run the cells after the last test too (by default it stops there, which
would save Lab 03's measurement cells and flatter it), and to score a test cell with stderr
output 0 as nbgrader does (by default only errors do; the noisy-stderr submission then differs
from stock on purpose); stock nbgrader gets the same cell limit (its default, 30 s, interrupts
Lab 03's measurement cell and flatters it).

Printed: seconds, submissions per minute, the ratio to stock, the autograder's overhead per
submission over bare execution (1 worker), and whether every submission's score agrees with
stock nbgrader's (those that do not are listed). The issue's goals: >= 2x stock with 2 workers
on 2 cores, <= 15% overhead.

Run: ``python bench/run.py --only grade [--quick]``.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAB = "lab03_memory"
KINDS = ["correct", "partly-correct", "wrong", "noisy-stderr"]
CELL_TIMEOUT = 180  # seconds; Lab 03's slowest cell (measurements) takes ~40 s on 2 busy cores
LABS_DIR = Path(__file__).resolve().parent.parent / "labs"


def main(args) -> None:
    import nbformat
    from nbclient import NotebookClient
    from nbgrader.api import Gradebook

    from autograder.collect import collect
    from autograder.course import setup
    from autograder.grade.run import grade
    from autograder.sample_class import make_sample_class

    n = 4 if getattr(args, "quick", False) else 8
    with tempfile.TemporaryDirectory(prefix="bench-grade-") as tmp:
        root = Path(tmp)
        course = setup(root / "course", labs_dir=LABS_DIR, assignments=[LAB])
        make_sample_class(course, LAB, root / "kinds", memory_mb=0, variants=KINDS)
        (root / "class").mkdir()
        for i in range(n):
            kind = KINDS[i % len(KINDS)]
            shutil.copy(root / "kinds" / f"{kind}.ipynb", root / "class" / f"s{i:02d}-{kind}.ipynb")
        collect(course, LAB, root / "class")
        stock_root = root / "stock"
        shutil.copytree(course.root, stock_root)
        # like stock: every cell runs, stderr in a test cell scores it 0
        settings = course.settings(
            memory_mb=0,
            run_after_last_test=True,
            stderr_fails_test=True,
            cell_timeout=CELL_TIMEOUT,
            notebook_timeout=20 * CELL_TIMEOUT,
        )

        bare = []
        for path in sorted((root / "class").glob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            start = time.perf_counter()
            NotebookClient(
                nb, kernel_name="python3", timeout=CELL_TIMEOUT, allow_errors=True
            ).execute(cwd=str(root / "class"))
            bare.append(time.perf_counter() - start)

        ours = {}
        for workers in (1, 2):
            start = time.perf_counter()
            report = grade(
                course, LAB, workers=workers, force=True, settings=settings, progress=False
            )
            ours[workers] = (time.perf_counter() - start, report)

        start = time.perf_counter()
        stock = subprocess.run(
            [
                *[sys.executable, "-m", "nbgrader", "autograde", LAB, "--force"],
                f"--CourseDirectory.root={stock_root}",  # the copied config names the original
                f"--CourseDirectory.db_url=sqlite:///{stock_root / course.db_path.name}",
                f"--Execute.timeout={CELL_TIMEOUT}",
            ],
            cwd=stock_root,
            capture_output=True,
            text=True,
        )
        stock_s = time.perf_counter() - start
        if stock.returncode != 0:
            print(stock.stdout[-2000:], stock.stderr[-2000:])
            raise RuntimeError("stock nbgrader autograde failed")
        with Gradebook(f"sqlite:///{stock_root / course.db_path.name}") as gb:
            stock_scores = {s.student.id: s.score for s in gb.find_assignment(LAB).submissions}

    ours_scores = {r.student: sum(v or 0 for v in r.scores.values()) for r in ours[1][1].results}
    agree = sum(abs(ours_scores[s] - stock_scores.get(s, -1)) < 1e-9 for s in ours_scores)
    rows = [["bare nbclient (no grading)", sum(bare), n / sum(bare) * 60, None]]
    for workers, (seconds, _report) in ours.items():
        rows.append(
            [f"autograder, {workers} worker(s)", seconds, n / seconds * 60, stock_s / seconds]
        )
    rows.append(["stock nbgrader autograde", stock_s, n / stock_s * 60, 1.0])
    print(f"{LAB}: {n} submissions ({', '.join(KINDS)}, cycled)")
    print(f"{'how':<28} {'seconds':>8} {'per minute':>11} {'vs stock':>9}")
    for name, seconds, per_min, ratio in rows:
        shown = "" if ratio is None else f"{ratio:.2f}x"
        print(f"{name:<28} {seconds:8.1f} {per_min:11.1f} {shown:>9}")
    per_sub = [r.seconds for r in ours[1][1].results]
    overhead = ours[1][0] / sum(bare) - 1
    print(
        f"per submission, 1 worker: median {statistics.median(per_sub):.2f} s graded vs "
        f"{statistics.median(bare):.2f} s bare; whole run {overhead:+.0%} over bare execution"
    )
    print(f"scores equal to stock nbgrader's: {agree}/{n}")
    for student in sorted(ours_scores):
        if abs(ours_scores[student] - stock_scores.get(student, -1)) >= 1e-9:
            print(
                f"  {student}: autograder {ours_scores[student]}, stock {stock_scores.get(student)}"
            )
