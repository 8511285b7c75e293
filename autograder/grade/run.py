"""Grade a lab's submissions with a pool of worker processes; resumable.

- **Plan**: every submission whose fingerprint (its bytes, the instructor's notebook, the
  grading settings) differs from the one recorded in the gradebook, or that is not recorded;
  ``force`` regrades all, ``limit`` stops after that many.
- **Workers**: ``workers`` long-lived processes (spawned once, each grading many submissions:
  no CLI or import start-up per submission). Each reads a snapshot of the gradebook and writes
  only its own executed notebook; it returns the scores to this process, the one writer
  (:mod:`autograder.grade.ledger`), which records each result as it arrives.
- **A worker that dies** (killed, or killed by the student code it was grading) breaks the pool:
  results already returned are kept, the submissions that had started are graded again each
  in a pool of its own, the others in a fresh pool. A submission that kills its worker again
  when graded alone scores 0 with that reason (its code can kill the process that runs it:
  same user, no sandbox).

Example::

    report = grade(course, "lab03_memory", workers=2)    # RunReport(graded=14, ...)
    grade(course, "lab03_memory")                        # graded=0: nothing changed
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from time import monotonic

from nbgrader.api import Gradebook
from tqdm.auto import tqdm

from autograder.collect import submissions
from autograder.course import Course, GradeSettings, settings_dict
from autograder.grade.execute import namespaces_work
from autograder.grade.job import Job, Result, fingerprint, sha256_file
from autograder.grade.ledger import Ledger
from autograder.grade.pipeline import scored_zero
from autograder.grade.sandbox import sandbox_problem
from autograder.grade.worker import KILLED_WORKER, error, init_worker, work
from courselib.errors import CourseError

MAX_POOL_RESTARTS = 5


class GradingStopped(CourseError):
    """Workers kept dying; what was graded is saved, a re-run goes on from there."""


@dataclass
class RunReport:
    assignment: str
    submissions: int
    """Submissions found for the lab."""
    planned: int
    """How many needed grading (missing or changed), before ``limit``."""
    results: list[Result] = field(default_factory=list)
    workers: int = 1
    seconds: float = 0.0
    pool_restarts: int = 0

    @property
    def graded(self) -> int:
        return sum(r.status == "graded" for r in self.results)

    @property
    def errors(self) -> list[Result]:
        return [r for r in self.results if r.status == "error"]

    @property
    def per_minute(self) -> float:
        return 60 * len(self.results) / self.seconds if self.seconds else 0.0


def _snapshot(course: Course) -> Path:
    """A consistent copy of the gradebook for the workers to read (SQLite's backup API)."""
    path = course.root / ".autograder" / "gradebook-snapshot.db"
    path.parent.mkdir(exist_ok=True)
    path.unlink(missing_ok=True)
    with sqlite3.connect(course.db_path) as src, sqlite3.connect(path) as dest:
        src.backup(dest)
    with Gradebook(f"sqlite:///{path}"):  # adds nbgrader's default course row: workers only read
        pass
    return path


def plan(
    course: Course,
    assignment: str,
    settings: GradeSettings,
    *,
    db_url: str,
    scratch: Path,
    force: bool = False,
) -> tuple[int, list[Job]]:
    """-> (submissions found, jobs for those not graded in their current version)."""
    found = submissions(course, assignment)
    source_sha = sha256_file(course.source_notebook(assignment))
    wanted = settings.fingerprint_fields(assignment)
    job_settings = settings_dict(settings) | {"parameters": settings.parameters.get(assignment, {})}
    with Ledger(course.db_url) as ledger:
        done = {} if force else ledger.done(assignment)
    jobs = []
    for student, path in found.items():
        fp = fingerprint(sha256_file(path), source_sha, wanted)
        if done.get(student) == fp:
            continue
        jobs.append(
            Job(
                student=student,
                assignment=assignment,
                submission=str(path),
                release=str(course.release_notebook(assignment)),
                db_url=db_url,
                output=str(course.dir("autograded", student, assignment, f"{assignment}.ipynb")),
                scratch=str(scratch / "kernels"),
                fingerprint=fp,
                settings=job_settings,
            )
        )
    return len(found), jobs


def _run_pool(
    jobs: list[Job], workers: int, scratch: Path, handle: Callable[[Result], None]
) -> int:
    """Grade ``jobs``; ``handle`` gets each result as it comes. -> pool restarts."""
    running = scratch / "running"
    running.mkdir(parents=True, exist_ok=True)
    runtime = scratch / "runtime"
    runtime.mkdir(exist_ok=True)
    context = multiprocessing.get_context("spawn")
    pending, restarts, idle_breaks = list(jobs), 0, 0
    alone: list[Job] = []
    while pending or alone:
        batch = pending or [alone.pop(0)]
        isolated = not pending
        broken: list[Job] = []
        with ProcessPoolExecutor(
            min(workers, len(batch)),
            mp_context=context,
            initializer=init_worker,
            initargs=(str(runtime),),
        ) as pool:
            futures = {pool.submit(work, job, str(running)): job for job in batch}
            try:
                for future in as_completed(futures):
                    job = futures[future]
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        broken.append(job)
                        continue
                    except Exception as err:  # the worker raised outside grade_one's guard
                        result = error(job, f"grader error: {type(err).__name__}: {err}")
                    handle(result)
            except KeyboardInterrupt:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        pending = []
        if not broken:
            continue
        restarts += 1
        if isolated:
            (job,) = broken
            handle(scored_zero(job, KILLED_WORKER))
            continue
        started = {p.name for p in running.iterdir()}
        for p in running.iterdir():
            p.unlink()
        if not started:
            idle_breaks += 1
            if idle_breaks >= 2:
                raise GradingStopped(
                    "The grading workers die before grading anything.",
                    hint="In a script, call grade() under `if __name__ == '__main__':` (workers "
                    "are spawned processes that import the script).",
                )
        alone += [j for j in broken if j.student in started]
        pending = [j for j in broken if j.student not in started]
        if restarts > MAX_POOL_RESTARTS + len(jobs):
            raise GradingStopped(
                "Grading stopped: its workers keep dying. What was graded is saved.",
                hint="Run the same grade command again: it goes on from there (look for a "
                "submission that kills the process grading it, or memory running out).",
            )
    return restarts


def grade(
    course: Course,
    assignment: str,
    *,
    workers: int = 1,
    limit: int | None = None,
    force: bool = False,
    settings: GradeSettings | None = None,
    progress: bool = True,
    dask: str | None = None,
) -> RunReport:
    """Grade what is missing or changed for ``assignment``; scores go into the gradebook.

    Workers are spawned processes: in a script, call this under ``if __name__ == "__main__":``.
    ``dask``: grade on a Dask cluster instead of the local pool: "local" (a local cluster of
    ``workers`` processes) or a scheduler's address (:mod:`autograder.grade.cluster`).
    """
    settings = settings or course.settings()
    if settings.isolation == "namespaces" and not namespaces_work():
        raise CourseError(
            "isolation = 'namespaces' needs `unshare` and unprivileged user namespaces, which "
            "this machine does not give.",
            hint="Enable them (sysctl kernel.unprivileged_userns_clone=1) or set isolation = "
            "'none'.",
        )
    if settings.isolation == "sandbox" and (problem := sandbox_problem()) is not None:
        raise CourseError(
            f"isolation = 'sandbox' cannot run here: {problem}.",
            hint="Fix that, or grade with isolation = 'namespaces'.",
        )
    _llama_must_run()
    workers = max(1, workers)
    if settings.kernel_threads <= 0:
        settings = replace(settings, kernel_threads=max(1, (os.cpu_count() or 1) // workers))
    # On a remote cluster every worker needs the run's folder: beside the course (shared).
    remote = dask not in (None, "local")
    scratch = Path(tempfile.mkdtemp(prefix="autograder-run-", dir=course.root if remote else None))
    start = monotonic()
    try:
        snapshot = _snapshot(course)
        found, jobs = plan(
            course,
            assignment,
            settings,
            db_url=f"sqlite:///{snapshot}",
            scratch=scratch,
            force=force,
        )
        report = RunReport(assignment, submissions=found, planned=len(jobs), workers=workers)
        jobs = jobs[:limit] if limit is not None else jobs
        if jobs:
            _grade_jobs(course, jobs, report, scratch, progress=progress, dask=dask)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report.seconds = monotonic() - start
    return report


def _llama_must_run() -> None:
    """Stop before grading if llama.cpp dies on this machine (a build with instructions the CPU
    lacks): every lab kernel that opens a GGUF would fail and each student would score 0 for
    it. Checked once per build and CPU; the answer is cached in the data dir, where the
    kernels find it instead of probing again."""
    from courselib.gguf.runtime import ensure_llama_runs
    from courselib.models import gguf_file

    try:
        course_chat = gguf_file("course-chat", "Q4_K_M")
    except CourseError:
        return  # course models not built: the labs that use them say so in their own cells
    try:
        ensure_llama_runs(course_chat)
    except CourseError as exc:
        raise CourseError(
            f"Nothing was graded: llama.cpp cannot run on this machine. {exc.message}",
            hint=exc.hint,
        ) from None


def _grade_jobs(
    course: Course,
    jobs: list[Job],
    report: RunReport,
    scratch: Path,
    *,
    progress: bool,
    dask: str | None,
) -> None:
    assignment = report.assignment
    bar = tqdm(total=len(jobs), desc=f"grading {assignment}", unit="nb", disable=not progress)
    with Ledger(course.db_url) as ledger:

        def handle(result: Result) -> None:
            stamp = course.dir("submitted", result.student, assignment, "timestamp.txt")
            timestamp = stamp.read_text().strip() if stamp.exists() else None
            ledger.write(result, notebook=assignment, timestamp=timestamp)
            report.results.append(result)
            shown = (
                f"{result.score:g}/{result.max_score:g}" if result.status == "graded" else "error"
            )
            bar.set_postfix_str(f"{result.student}: {shown}", refresh=False)
            bar.update()

        try:
            if dask is None:
                report.pool_restarts = _run_pool(jobs, report.workers, scratch, handle)
            else:
                from autograder.grade.cluster import run_on_dask

                address = None if dask == "local" else dask
                run_on_dask(
                    jobs, address=address, workers=report.workers, scratch=scratch, handle=handle
                )
        finally:
            bar.close()
