"""Grading a class: the autograder against stock ``nbgrader autograde``, side by side.

One class of well-behaved Lab 03 submissions (correct, partly correct, wrong, noisy on stderr,
cycled; hostile ones would only measure the time limits) is graded four ways in this run:

1. bare: each student's notebook executed by nbclient, nothing else (the floor);
2. ``autograder grade --workers 1`` and 3. ``--workers 2`` (a persistent pool of workers);
4. stock ``nbgrader autograde`` on a copy of the same course (one process, one submission at a
   time, a new nbgrader pipeline per submission).

Twice, and each time all four paths run the same cells with the same time limit per cell
(``CELL_TIMEOUT``; stock nbgrader's default, 30 s, would interrupt Lab 03's measurement cell
and flatter it), and the autograder scores a test cell with stderr output 0 as nbgrader does
(by default only errors do, and the noisy-stderr submission then differs from stock on purpose):

- **graded cells**: the autograder's default, which stops after the last test cell (the cells
  after it cannot change a score); bare nbclient and stock nbgrader are given the same
  notebooks cut after their last test cell, so they run those cells too;
- **all cells**: every cell, Lab 03's measurements included (the autograder is told
  ``run_after_last_test``).

Printed per mode: seconds, submissions per minute, the ratio to stock, the autograder's
overhead per submission over bare execution (1 worker), and whether every submission's score
agrees with stock nbgrader's (those that do not are listed). Last, the ratio as shipped: the
autograder's default against stock nbgrader on the uncut notebooks. The issue's goals: >= 2x
stock with 2 workers on 2 cores, <= 15% overhead. Graded cells take ~2 s a submission, all
cells ~45 s, so the first mode grades a bigger class (32, or 16 with ``--quick``; all cells:
8 or 4), which also spreads the pool's and nbgrader's start-up over a class.

First, the cost of running the test cells in the grader (the default) rather than in the
student's kernel: the same class with 2 workers both ways, alternating, medians and the ratio.

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


def cut_after_last_test(path: Path) -> None:
    """Drop the cells after the notebook's last test cell (what the autograder skips)."""
    import nbformat

    from autograder.grade.job import is_test

    nb = nbformat.read(path, as_version=4)
    last = max(i for i, cell in enumerate(nb.cells) if is_test(cell))
    nb.cells = nb.cells[: last + 1]
    nbformat.write(nb, path)


def run_mode(root: Path, kinds: Path, *, cut: bool, n: int) -> dict[str, float]:
    """Grade a class of ``n`` submissions four ways and print the table; -> per minute, by path."""
    import nbformat
    from nbclient import NotebookClient
    from nbgrader.api import Gradebook

    from autograder.collect import collect
    from autograder.course import setup
    from autograder.grade.run import grade

    mode = "graded cells" if cut else "all cells"
    work = root / mode.replace(" ", "-")
    course = setup(work / "course", labs_dir=LABS_DIR, assignments=[LAB])
    bare_dir = work / "class"
    bare_dir.mkdir()
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        shutil.copy(kinds / f"{kind}.ipynb", bare_dir / f"s{i:02d}-{kind}.ipynb")
    collect(course, LAB, bare_dir)
    stock_root = work / "stock"
    shutil.copytree(course.root, stock_root)
    if cut:
        for path in [*bare_dir.glob("*.ipynb"), *stock_root.glob(f"submitted/*/{LAB}/*.ipynb")]:
            cut_after_last_test(path)
    settings = course.settings(
        memory_mb=0,
        run_after_last_test=not cut,
        stderr_fails_test=True,  # as stock nbgrader scores it
        cell_timeout=CELL_TIMEOUT,
        notebook_timeout=20 * CELL_TIMEOUT,
    )

    bare = []
    for path in sorted(bare_dir.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT, allow_errors=True).execute(
            cwd=str(bare_dir)
        )
        bare.append(time.perf_counter() - start)

    ours = {}
    for workers in (1, 2):
        start = time.perf_counter()
        report = grade(course, LAB, workers=workers, force=True, settings=settings, progress=False)
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
    print(f"\n-- {mode}: {LAB}, {n} submissions ({', '.join(KINDS)}, cycled)")
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
    print(f"scores equal to stock nbgrader's: {agree}/{n}", flush=True)
    for student in sorted(ours_scores):
        if abs(ours_scores[student] - stock_scores.get(student, -1)) >= 1e-9:
            print(
                f"  {student}: autograder {ours_scores[student]}, stock {stock_scores.get(student)}"
            )
    return {name: per_min for name, _seconds, per_min, _ratio in rows}


def tests_where(root: Path, kinds: Path, *, n: int, rounds: int = 3) -> float:
    """The same class graded with 2 workers, the tests in the grader (the default) and in the
    student's kernel (nbgrader's way, ``tests_in_kernel``), alternating, ``rounds`` times;
    prints the medians; -> the ratio of throughputs (grader / kernel)."""
    from autograder.collect import collect
    from autograder.course import setup
    from autograder.grade.run import grade

    course = setup(root / "where" / "course", labs_dir=LABS_DIR, assignments=[LAB])
    folder = root / "where" / "class"
    folder.mkdir()
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        shutil.copy(kinds / f"{kind}.ipynb", folder / f"s{i:02d}-{kind}.ipynb")
    collect(course, LAB, folder)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    scores: dict[bool, dict[str, float]] = {}
    for _ in range(rounds):
        for in_kernel in (False, True):
            settings = course.settings(
                memory_mb=0, cell_timeout=CELL_TIMEOUT, tests_in_kernel=in_kernel
            )
            start = time.perf_counter()
            report = grade(course, LAB, workers=2, force=True, settings=settings, progress=False)
            seconds[in_kernel].append(time.perf_counter() - start)
            scores[in_kernel] = {r.student: r.score for r in report.results}
    grader, kernel = (statistics.median(seconds[k]) for k in (False, True))
    same = sum(scores[False][s] == scores[True].get(s) for s in scores[False])
    print(f"\n-- where the tests run: {LAB}, {n} submissions, 2 workers, median of {rounds}")
    print(f"{'tests in the grader (default)':<36} {grader:8.1f} s {n / grader * 60:8.1f}/min")
    print(f"{'tests in the kernel (nbgrader)':<36} {kernel:8.1f} s {n / kernel * 60:8.1f}/min")
    print(f"throughput ratio grader/kernel: {kernel / grader:.2f}x; equal scores {same}/{n}")
    return kernel / grader


def main(args) -> None:
    from autograder.course import setup
    from autograder.sample_class import make_sample_class

    quick = getattr(args, "quick", False)
    with tempfile.TemporaryDirectory(prefix="bench-grade-") as tmp:
        root = Path(tmp)
        course = setup(root / "kinds-course", labs_dir=LABS_DIR, assignments=[LAB])
        make_sample_class(course, LAB, root / "kinds", memory_mb=0, variants=KINDS)
        tests_where(root, root / "kinds", n=8 if quick else 16)
        # a graded-cells submission takes ~2 s, an all-cells one ~45 s: more of the first
        graded = run_mode(root, root / "kinds", cut=True, n=16 if quick else 32)
        full = run_mode(root, root / "kinds", cut=False, n=4 if quick else 8)
    stock = full["stock nbgrader autograde"]
    print(
        "\n-- as shipped: the autograder's default (graded cells) against stock nbgrader on the "
        "uncut notebooks (all cells), the same submissions and scores, per minute: "
        + ", ".join(
            f"{w} worker(s) {graded[f'autograder, {w} worker(s)'] / stock:.1f}x" for w in (1, 2)
        )
    )
