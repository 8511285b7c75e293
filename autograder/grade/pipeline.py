"""Grade one submission: read it, then a list of steps with nbconvert's one signature.

Every step is a ``Preprocessor``: ``preprocess(nb, resources) -> (nb, resources)``, nbgrader's
own where they do the job, ours (``resources["autograder"]`` is the shared ``Context``) where
they do not. In order:

====================  ========  ===========================================================
step                  from      what
====================  ========  ===========================================================
Normalise             here      nbformat upgrade, normalize (cell ids), validate
ClearOutput           nbgrader  outputs from before the tests were restored are never graded
DeduplicateGradeIds   here      one cell per grade_id (copied cells)
RestoreSourceCells    here      metadata, tags, moved and deleted cells (student version)
OverwriteKernelspec   nbgrader  the lab's kernelspec
OverwriteCells        nbgrader  locked cells and hidden tests from the gradebook
InjectParameters      here      papermill's parameters, after the lab's parameters cell
LimitedExecute        here      run the restored notebook: timeouts, memory cap, crashes
LimitOutput           nbgrader  trim long outputs and tracebacks
Score                 here      points per test cell
====================  ========  ===========================================================

``grade_one(job) -> Result`` is what a worker runs; it writes only the executed notebook
(``job.output``), never the gradebook.
"""

from __future__ import annotations

import html
import logging
import os
import shutil
import tempfile
import traceback
from pathlib import Path
from time import monotonic

import nbformat
from nbformat import NotebookNode
from nbgrader.preprocessors import ClearOutput, LimitOutput, OverwriteCells, OverwriteKernelspec

from autograder.grade.cells import DeduplicateGradeIds, RestoreSourceCells
from autograder.grade.execute import LimitedExecute
from autograder.grade.job import Context, Job, Result, nbgrader_id, sha256_file
from autograder.grade.parameters import InjectParameters
from autograder.grade.read import Normalise, UnreadableNotebook, read_submission
from autograder.grade.score import Score


def steps(settings: dict) -> list:
    """The grading steps for ``settings`` (a ``GradeSettings`` dict), in order."""
    return [
        Normalise(),
        ClearOutput(),
        DeduplicateGradeIds(),
        RestoreSourceCells(),
        OverwriteKernelspec(),
        OverwriteCells(add_missing_cells=False),
        InjectParameters(),
        LimitedExecute(
            cell_timeout=float(settings["cell_timeout"]),
            notebook_timeout=float(settings["notebook_timeout"]),
            memory_mb=int(settings["memory_mb"]),
            max_tasks=int(settings.get("max_tasks", 0)),
            kernel_threads=max(1, int(settings["kernel_threads"])),
            run_after_last_test=bool(settings["run_after_last_test"]),
            isolation=settings.get("isolation", "none"),
            tests_in_kernel=bool(settings.get("tests_in_kernel", False)),
        ),
        LimitOutput(),
        Score(),
    ]


def _notice(reasons: list[str]) -> NotebookNode:
    """A markdown cell on top of the graded notebook (and so of the feedback)."""
    lines = ["**Autograder notes** (what was repaired, could not be graded, or lost points):", ""]
    lines += [f"- {html.escape(r)}" for r in reasons]  # a reason can quote the student's text
    cell = nbformat.v4.new_markdown_cell("\n".join(lines))
    cell.metadata["tags"] = ["autograder-notice"]
    return cell


def _points(n: float) -> str:
    return f"{n:g} point" + ("" if n == 1 else "s")


def _write(nb: NotebookNode, path: str) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    nbformat.write(nb, tmp)
    tmp.replace(out)


def scored_zero(job: Job, reason: str, result: Result | None = None) -> Result:
    """Every test 0 with ``reason``; the graded notebook is the student version with it on top.

    For a file that is not a notebook, and for one whose code kills the process grading it.
    """
    release = nbformat.read(job.release, as_version=4)
    result = result or Result(
        job.student, job.assignment, job.fingerprint, submission_sha256=sha256_file(job.submission)
    )
    for cell in release.cells:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            result.scores[nbgrader_id(cell)] = 0.0
            result.max_scores[nbgrader_id(cell)] = float(cell.metadata.nbgrader.get("points", 0))
    result.reasons.append(reason)
    release.cells.insert(0, _notice(result.reasons))
    _write(release, job.output)
    return result


def _copy_lab_files(lab: Path, workdir: Path) -> None:
    """The lab's other files (data the notebook reads), as nbgrader's autograde copies them."""
    for path in lab.iterdir():
        if path.suffix == ".ipynb" or path.name.startswith("."):
            continue
        if path.is_dir():
            shutil.copytree(path, workdir / path.name, symlinks=False)
        else:
            shutil.copy(path, workdir / path.name)


def grade_one(job: Job) -> Result:
    """Grade ``job.submission``; write the executed notebook to ``job.output``."""
    import hashlib

    start = monotonic()
    data = Path(job.submission).read_bytes()
    result = Result(
        job.student,
        job.assignment,
        job.fingerprint,
        submission_sha256=hashlib.sha256(data).hexdigest(),
    )
    release = nbformat.read(job.release, as_version=4)
    try:
        nb = read_submission(data)
    except UnreadableNotebook as err:
        result = scored_zero(job, f"not graded, scored 0: the file is {err}", result)
        result.seconds = monotonic() - start
        return result

    Path(job.scratch).mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"{job.student[:40]}-", dir=job.scratch))
    _copy_lab_files(Path(job.release).parent, workdir)
    ctx = Context(job, release, workdir=workdir)
    resources = {
        "nbgrader": {
            "notebook": Path(job.release).stem,
            "assignment": job.assignment,
            "student": job.student,
            "db_url": job.db_url,
        },
        "autograder": ctx,
        "metadata": {"path": str(workdir)},
    }
    step = None
    try:
        for step in steps(job.settings):
            nb, resources = step.preprocess(nb, resources)
    except Exception as err:
        logging.getLogger("autograder").error(
            "grading %s failed:\n%s", job.student, traceback.format_exc()
        )
        result.status = "error"
        result.reasons = [f"grader error in {type(step).__name__}: {type(err).__name__}: {err}"]
        result.seconds = monotonic() - start
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    lost = [
        f"{gid} lost {_points(ctx.max_scores.get(gid, 0) - (ctx.scores.get(gid) or 0))}: {why}"
        for gid, why in ctx.lost.items()
    ]
    if ctx.reasons or lost:
        nb.cells.insert(0, _notice(ctx.reasons + lost))
    _write(nb, job.output)
    result.scores, result.max_scores = ctx.scores, ctx.max_scores
    result.reasons, result.notes = ctx.reasons, ctx.notes
    result.lost, result.flags = ctx.lost, ctx.flags
    result.seconds = monotonic() - start
    return result
