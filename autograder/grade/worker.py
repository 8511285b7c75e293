"""What runs in a grading worker process (a local pool's or a Dask worker): one job at a time,
with a marker file while it runs, so the parent knows which submissions a dead worker held."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from autograder.grade.job import Job, Result

KILLED_WORKER = (
    "scored 0: its grading worker died twice while grading it, the second time alone "
    "(does its code kill the grader?)"
)


def init_worker(runtime_dir: str) -> None:
    """Set a worker process up once: kernels' connection files in the run's ``runtime_dir``,
    quiet grading libraries, the pipeline imported."""
    os.environ["JUPYTER_RUNTIME_DIR"] = runtime_dir
    for name in ("traitlets", "nbgrader", "NbGraderAPI", "nbclient", "papermill"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import autograder.grade.pipeline  # noqa: F401  (import once per worker, not per job)


def work(job: Job, running: str, runtime: str | None = None) -> Result:
    """Run in a worker: grade one job, with a marker file while it runs. ``runtime``: set up the
    worker first if this process has not been (a Dask worker has no initializer)."""
    from autograder.grade.pipeline import grade_one

    if runtime is not None and os.environ.get("JUPYTER_RUNTIME_DIR") != runtime:
        init_worker(runtime)
    marker = Path(running) / job.student
    marker.touch()
    try:
        return grade_one(job)
    finally:
        marker.unlink(missing_ok=True)


def error(job: Job, why: str) -> Result:
    """A job that could not be graded (the grader failed, not the submission): ``why``."""
    return Result(job.student, job.assignment, job.fingerprint, status="error", reasons=[why])
