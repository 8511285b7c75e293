"""Grade on a Dask cluster (``grade --dask``): the local pool's jobs, for a class that
outgrows one machine.

``address=None`` starts a ``LocalCluster`` of ``workers`` processes (one thread each) on this
machine; an address (``tcp://scheduler:8786``) uses a running cluster, e.g. one started on
Slurm by dask-jobqueue or on Kubernetes by the Dask operator. Every worker must see the course
directory at the same path (a shared file system: the run's scratch folder is made inside it),
have this course lab installed, and bubblewrap if ``isolation = "sandbox"``.

Results come back to this process, the gradebook's one writer, as on the local pool. A worker
killed by the code it grades is restarted by its nanny; every submission that was on a worker
when it died is graded again at the end, alone on the cluster, as on the local pool, and one
that kills its worker again scores 0 with the reason. (Left to the scheduler's own retries, an
innocent submission was seen to die twice beside a killer on a loaded machine.) A remote
scheduler applies its own ``distributed.scheduler.allowed-failures`` and ``worker-saturation``
(set them to 0 and 1.0).

Example::

    grade(course, "lab03_memory", workers=8, dask="tcp://10.0.0.5:8786")
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from autograder.grade.job import Job, Result
from autograder.grade.pipeline import scored_zero
from autograder.grade.worker import KILLED_WORKER, error, work

ALLOWED_FAILURES = 0
"""The scheduler's own retries: none. A submission on a dying worker is graded again alone."""


def run_on_dask(
    jobs: list[Job],
    *,
    address: str | None,
    workers: int,
    scratch: Path,
    handle: Callable[[Result], None],
) -> None:
    """Grade ``jobs`` on the cluster at ``address`` (None: a local one); ``handle`` gets each
    result as it comes."""
    import dask
    from distributed import Client, LocalCluster, as_completed
    from distributed.scheduler import KilledWorker

    running, runtime = scratch / "running", scratch / "runtime"
    running.mkdir(parents=True, exist_ok=True)
    runtime.mkdir(exist_ok=True)
    config = {
        "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
        # one task per worker thread, none queued behind it: a worker killed by the notebook it
        # grades must not take a queued submission's retry with it
        "distributed.scheduler.worker-saturation": 1.0,
    }
    with dask.config.set(config):
        cluster = None
        if address is None:
            cluster = LocalCluster(
                n_workers=min(workers, len(jobs)),
                threads_per_worker=1,  # one kernel per worker process, as on the local pool
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
        try:
            with Client(cluster if cluster is not None else address) as client:

                def submit(job: Job, *, attempt: str = ""):
                    return client.submit(
                        work,
                        job,
                        str(running),
                        str(runtime),
                        key=f"grade-{job.student}{attempt}",
                        pure=False,
                    )

                futures = {submit(job): job for job in jobs}
                suspects = []  # on a worker when it died: the killer, or beside it
                for future in as_completed(futures):
                    job = futures[future]
                    try:
                        handle(future.result())
                    except KilledWorker:
                        suspects.append(job)
                    except Exception as err:  # the worker raised outside grade_one's guard
                        handle(error(job, f"grader error: {type(err).__name__}: {err}"))
                for job in suspects:  # one at a time, nothing else on the cluster
                    try:
                        result = submit(job, attempt="-alone").result()
                    except KilledWorker:
                        result = scored_zero(job, KILLED_WORKER)
                    except Exception as err:
                        result = error(job, f"grader error: {type(err).__name__}: {err}")
                    handle(result)
        finally:
            if cluster is not None:
                cluster.close()
