"""Execute the restored notebook: untrusted code under time and memory limits.

``LimitedExecute`` is nbgrader's ``Execute`` step (same error and timeout outputs) with what a
class of untrusted submissions needs:

- a per-cell timeout **and** a whole-notebook budget: a cell gets
  ``min(cell_timeout, time left)``; once the budget is spent no further cell runs;
- an interrupted cell that does not stop (a loop that ignores Ctrl-C) gets its kernel killed:
  the kernel must answer a ``kernel_info`` request within ``responsive_seconds`` after the
  interrupt;
- a kernel that dies (a crash, ``os._exit``, the OOM killer) stops the run with the reason,
  where nbgrader would leave the whole submission "needs manual grade";
- every cell that did not run is recorded in ``Context.not_run``; a test cell among them gets
  an error output saying why, so it scores 0 (never the full points of a cell with no output);
- the kernel is always this Python (``sys.executable -m ipykernel_launcher``, whatever kernel
  the notebook names), started by :mod:`autograder.grade.limits` with the memory cap, in an
  empty working directory, with a small environment (no instructor variables such as API keys;
  ``TQDM_DISABLE``, ``PYTHONWARNINGS=ignore`` and friends keep progress bars and warnings off
  stderr);
- at most ``max_tasks`` processes and threads for the kernel and all it starts
  (``limits.py --max-tasks``: a pids cgroup, else RLIMIT_NPROC);
- with ``isolation="namespaces"`` the kernel runs under ``unshare`` in new user, PID and
  network namespaces (PID 2 under a small init, ``limits.py --init``: it cannot see or signal
  the worker, and has no network at all), talking to the worker over unix sockets (ZMQ
  ``ipc`` transport, since a new network namespace has not even loopback);
- with ``isolation="sandbox"`` it runs in a bubblewrap sandbox (:mod:`.sandbox`): the same
  namespaces, and a file system that shows only the course library, the models, its own
  working folder and its socket folder;
- at most ``max_output_bytes`` of output per cell are kept (a print loop cannot fill memory);
- cells after the last test cell are not run unless ``run_after_last_test`` (they cannot
  change a score); the tag that makes nbclient skip a cell is a random one, so a student's
  ``skip-execution`` tag on a test cell has no effect.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any as AnyValue

from jupyter_client.manager import AsyncKernelManager
from jupyter_core.paths import jupyter_runtime_dir
from jupyter_core.utils import ensure_async, run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Any, Bool, Enum, Float, Integer, Unicode

from autograder.course import ISOLATIONS
from autograder.grade import limits, sandbox
from autograder.grade.agent import MIME, install_source
from autograder.grade.checker import (
    CallTimeout,
    Checker,
    CheckTimeout,
    KernelGone,
    Verdict,
    notebook_names,
)
from autograder.grade.job import context, grade_id, is_test
from courselib import settings

QUIET_ENV = {
    "PYTHONWARNINGS": "ignore",
    "PYTHONDONTWRITEBYTECODE": "1",
    "TQDM_DISABLE": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "BITSANDBYTES_NOWELCOME": "1",
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
}
PASS_THROUGH = ("LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "SSL_CERT_FILE")


def kernel_env(workdir: Path, *, threads: int, server_url: str | None = None) -> dict[str, str]:
    """The kernel's whole environment: paths into its own folder, the course's settings
    (models, class server, as ``server_url`` when given; never the API key), quiet libraries,
    ``threads`` CPU threads."""
    home = workdir / "home"
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    env = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
    env |= QUIET_ENV | {
        "PATH": os.pathsep.join(
            [str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]
        ),
        "HOME": str(home),
        "TMPDIR": str(home / "tmp"),
        "IPYTHONDIR": str(home / ".ipython"),
        "MPLCONFIGDIR": str(home / ".matplotlib"),
        "LANG": "C.UTF-8",
        "COURSELAB_CONFIG": str(home / "no-config.toml"),
        "COURSELAB_DATA_DIR": str(settings.data_dir()),
        "COURSELAB_SERVER_URL": server_url or str(settings.resolve("server_url")),
        "COURSELAB_THREADS": str(threads),
        "OMP_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    return env


class LimitedKernelManager(AsyncKernelManager):
    """This Python's ipykernel, started through ``limits.py`` with the memory cap."""

    memory_mb = Integer(0, help="RLIMIT_DATA of the kernel in MiB (0: none)").tag(config=True)
    max_tasks = Integer(0, help="processes + threads of the kernel (0: no cap)").tag(config=True)
    isolation = Enum(ISOLATIONS, "none", help="see GradeSettings.isolation").tag(config=True)
    workdir = Unicode("", help="the kernel's working folder (the sandbox binds it)").tag(
        config=True
    )
    route = Any(None, help="the sandbox's sandbox.ServerRoute to the course server, or None")

    @property
    def kernel_spec(self):
        spec = super().kernel_spec
        if spec is not None and self.isolation == "sandbox":
            # A SIGINT from out here reaches bwrap, not the kernel in its own session and PID
            # namespace: the kernel is asked on its control channel and signals itself.
            spec.interrupt_mode = "message"
        return spec

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        kernel = [
            sys.executable,
            "-m",
            "ipykernel_launcher",
            "-f",
            os.path.realpath(self.connection_file),
        ]
        kernel += list(extra_arguments or [])
        wrapper = [
            sys.executable,
            limits.__file__,
            f"--memory-mb={self.memory_mb}",
            f"--max-tasks={self.max_tasks}",
            f"--parent={os.getpid()}",
            "--",
        ]
        if self.isolation == "namespaces":
            # limits.py again as the namespace's PID 1: dies with unshare, runs the kernel as PID 2
            inner = [sys.executable, limits.__file__, "--init", "--"]
            return [*wrapper, *UNSHARE, *inner, *kernel]
        if self.isolation == "sandbox":  # the connection file and sockets share one folder
            sockets = Path(self.connection_file).parent
            box = sandbox.bwrap_command(
                kernel, workdir=Path(self.workdir), writable=[sockets], route=self.route
            )
            return [*wrapper, *box]
        return [*wrapper, *kernel]


START_TRIES = 3
"""Kernel starts per submission before grading it fails (see ``LimitedExecute._start_kernel``)."""

UNSHARE = ["unshare", "--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child"]


def namespaces_work() -> bool:
    """Can this machine run a process in new user, PID and network namespaces?"""
    try:
        done = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _not_run_error(reason: str) -> NotebookNode:
    return NotebookNode(
        output_type="error", ename="NotRun", evalue=reason, traceback=[f"NotRun: {reason}"]
    )


class LimitedExecute(Execute):
    """nbgrader's Execute with a notebook budget, a memory cap, and crash and hang handling."""

    cell_timeout = Float(60.0, help="seconds per cell").tag(config=True)
    notebook_timeout = Float(600.0, help="seconds for the whole notebook").tag(config=True)
    memory_mb = Integer(4096, help="kernel memory cap (RLIMIT_DATA), MiB; 0: none").tag(config=True)
    kernel_threads = Integer(1, help="CPU threads for the kernel's libraries").tag(config=True)
    run_after_last_test = Bool(False, help="also run the cells after the last test").tag(
        config=True
    )
    responsive_seconds = Float(10.0, help="an interrupted kernel must answer within").tag(
        config=True
    )
    max_output_bytes = Integer(1_000_000, help="output kept per cell").tag(config=True)
    max_tasks = Integer(256, help="processes + threads of the kernel (0: no cap)").tag(config=True)
    isolation = Enum(ISOLATIONS, "none", help="see GradeSettings.isolation").tag(config=True)
    tests_in_kernel = Bool(False, help="see GradeSettings.tests_in_kernel").tag(config=True)
    # nbclient's trait; nbgrader's Execute is untyped, so _responsive's write would be taken
    # for its declaration
    timeout: int | None

    def preprocess(self, nb, resources=None, km=None):
        ctx = context(resources)
        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        self.skip_cells_with_tag = f"autograder-{uuid.uuid4().hex}"
        self.raise_on_iopub_timeout = False  # a slow idle message is not a failed test
        self.shutdown_kernel = "immediate"
        self.kernel_manager_class = LimitedKernelManager
        self.kernel_name = "python3"
        manager = self.config.LimitedKernelManager
        manager.memory_mb, manager.max_tasks = self.memory_mb, self.max_tasks
        manager.isolation, manager.workdir = self.isolation, str(ctx.workdir)
        sockets: Path | None = None
        if self.isolation != "none":  # no network inside: talk over unix sockets
            manager.transport = "ipc"
            # One folder per kernel for its connection file and sockets (the sandbox binds just
            # it); absolute paths (ipc's default is relative to each process's cwd), short
            # enough for a unix socket (108 bytes).
            runtime = Path(jupyter_runtime_dir())
            runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
            sockets = runtime / f"ag-{uuid.uuid4().hex[:12]}"
            sockets.mkdir()
            manager.ip = str(sockets / "k")
            manager.connection_file = str(sockets / "kernel.json")
        limits.sweep()  # the cgroups of kernels that have ended
        route = None
        if self.isolation == "sandbox":
            route = sandbox.route_to_server(str(settings.resolve("server_url")), sockets)
        forward = sandbox.ServerForward(route) if route is not None else None
        self._bytes: dict[int, int] = {}
        deadline = monotonic() + self.notebook_timeout
        self.timeout_func = lambda cell: max(
            1, math.ceil(min(self.cell_timeout, deadline - monotonic()))
        )

        tests = [i for i, c in enumerate(nb.cells) if is_test(c)]
        last = len(nb.cells) if self.run_after_last_test or not tests else tests[-1]
        stop: str | None = None
        try:
            server_url = route.url if route is not None else None
            env = kernel_env(ctx.workdir, threads=self.kernel_threads, server_url=server_url)
            self._start_kernel(ctx, env, route)
            info = self.wait_for_reply(self.kc.kernel_info())
            if info is not None:
                nb.metadata["language_info"] = info["content"].get("language_info", {})
            self._gone: str | None = None
            checker: Checker | None = None
            pending: list[tuple[int, NotebookNode, dict[str, AnyValue]]] = []
            if not self.tests_in_kernel:
                checker = Checker(self._agent)
                self._install_agent()
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                if index > last:
                    ctx.note("cells after the last test cell were not run")
                    continue
                if stop is None and monotonic() >= deadline:
                    stop = f"the notebook's time limit ({self.notebook_timeout:g} s) was used up"
                    ctx.reason(stop)
                if stop is not None:
                    self._mark_not_run(ctx, cell, index, stop)
                    continue
                if checker is not None and is_test(cell):
                    stop = self._snap(ctx, checker, cell, index, pending)
                else:
                    stop = self._run_cell(ctx, cell, index, deadline)
            if checker is not None:
                self._check(ctx, checker, pending, deadline, stop)
        finally:
            if self.km is not None:
                self._cleanup_kernel()
            if forward is not None:
                forward.close()
            if sockets is not None:
                shutil.rmtree(sockets, ignore_errors=True)
        self.set_widgets_metadata()
        return nb, self.resources

    def _start_kernel(self, ctx, env: dict[str, str], route) -> None:
        """Start the kernel and its client. A kernel that dies before its first reply has run
        no student code: the machine's fault (a port taken between jupyter_client's pick and
        the kernel's bind, a loaded machine), so it is started again, up to START_TRIES."""
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}  # not the cells'
        for attempt in range(1, START_TRIES + 1):
            self.km = self.create_kernel_manager()
            self.km.route = route
            try:
                self.start_new_kernel(cwd=str(ctx.workdir), env=env, **quiet)
                self.start_new_kernel_client()
                return
            except RuntimeError as err:  # jupyter_client: "Kernel died before replying ..."
                if self.km is not None:  # nbclient cleans up only once it has a client
                    self._cleanup_kernel()
                if attempt == START_TRIES:
                    raise
                ctx.note(f"the kernel was started again ({err})")

    # -- test cells in the grader (checker.py): the kernel only answers for the notebook -----

    def _install_agent(self) -> None:
        """The agent in the fresh kernel, before any notebook cell (agent.py)."""
        self._request_left = 120.0
        reply = self._agent(install_source())
        if not reply.get("installed"):  # no student code has run yet: the grader's own fault
            why = reply.get("error", "no answer")
            raise RuntimeError(f"the grading agent did not start in the kernel: {why}")

    def _snap(self, ctx, checker: Checker, cell, index: int, pending: list) -> str | None:
        """Take the names test ``cell`` reads from the notebook, where it stands; its check runs
        after the last cell (so no student cell runs after a hidden test's call)."""
        names = notebook_names(cell.source)
        self._request_left = self.timeout_func(cell)
        try:
            reply = self._agent(f"_courselab_agent.snap({json.dumps(names)})")
        except CallTimeout:
            reply = {"error": "the notebook did not answer the grader in time"}
            if not self._interrupt():
                why = f"the kernel did not answer the grader at {_name(cell, index)}: killed"
                ctx.reason(why)
                self._mark_not_run(ctx, cell, index, why)
                return why
        except KernelGone as gone:
            why = f"the kernel died at {_name(cell, index)} ({gone})"
            ctx.reason(why)
            self._mark_not_run(ctx, cell, index, why)
            return why
        values = reply.get("values") if isinstance(reply.get("values"), dict) else None
        if values is None:
            ctx.flag(
                f"the notebook's kernel did not give the grader its values at {_name(cell, index)}"
            )
            values = {}
        pending.append((index, cell, checker.resolve(values)))
        return None

    def _check(self, ctx, checker: Checker, pending: list, deadline: float, stop: str | None):
        """Run the pending test cells in the grader, then look for tampering in the kernel."""
        for count, (index, cell, values) in enumerate(pending, start=1):
            if self._gone is not None or monotonic() >= deadline:
                why = self._gone or (
                    f"the notebook's time limit ({self.notebook_timeout:g} s) was used up"
                )
                self._mark_not_run(ctx, cell, index, why)  # the score gives the reason
                continue
            self._request_left = self.timeout_func(cell)
            allowed = self._request_left
            budget = allowed < self.cell_timeout  # the time left, not the cell's, set it
            try:
                # the kernel requests end at ``allowed``; the margin is for the grader's own code
                verdict = checker.run(cell.source, values, count=count, limit=allowed + 5)
            except CallTimeout as late:
                mine = isinstance(late, CheckTimeout)
                verdict = self._timed_out_verdict(ctx, cell, index, allowed, budget, mine)
            except KernelGone as gone:
                self._gone = f"the kernel died while running {_name(cell, index)} ({gone})"
                ctx.reason(self._gone)
                self._mark_not_run(ctx, cell, index, self._gone)
                continue
            cell.execution_count = count
            cell.outputs = [NotebookNode(out) for out in verdict.outputs]
            ctx.executed.add(index)
            if not verdict.passed:
                ctx.failed[index] = verdict.why
        if self._gone is None and stop is None:
            self._probe(ctx)

    def _timed_out_verdict(
        self, ctx, cell, index: int, allowed: float, budget: bool, in_test: bool
    ) -> Verdict:
        limit = "the notebook's time limit" if budget else "the cell time limit"
        ctx.reason(f"{_name(cell, index)} was stopped at {limit} ({allowed:g} s)")
        if not in_test and not self._interrupt():
            self._gone = f"the kernel did not stop after {_name(cell, index)} was interrupted"
            ctx.reason(f"{self._gone}: killed")
        what = "the test did not finish" if in_test else "your function did not return"
        why = f"{what} within {limit} ({allowed:g} s)"
        error = {
            "output_type": "error",
            "ename": "TimeoutError",
            "evalue": why,
            "traceback": [f"TimeoutError: {why}"],
        }
        return Verdict(passed=False, outputs=[error], why=why)

    def _probe(self, ctx) -> None:
        self._request_left = max(10.0, self.responsive_seconds)
        try:
            reply = self._agent("_courselab_agent.probe()")
        except (CallTimeout, KernelGone):
            ctx.flag("the kernel did not answer the grader's check for tampering")
            return
        findings = reply.get("findings")
        if not isinstance(findings, list):
            ctx.flag("the grader's agent in the kernel was removed or replaced")
            return
        for finding in findings[:20]:
            ctx.flag(f"the notebook changed {str(finding)[:300]}")

    def _agent(self, code: str) -> dict[str, AnyValue]:
        """Run ``code`` in the kernel within ``_request_left`` seconds (which it uses up);
        -> the JSON payload it published as :data:`MIME`, or ``{"error": ...}``."""
        if self._gone is not None:
            raise KernelGone(self._gone)
        start = monotonic()
        try:
            return run_sync(self._async_agent)(code, self._request_left)
        finally:
            self._request_left = max(0.0, self._request_left - (monotonic() - start))

    async def _async_agent(self, code: str, timeout: float) -> dict[str, AnyValue]:
        assert self.kc is not None
        msg_id = self.kc.execute(code, store_history=False, allow_stdin=False)
        end = monotonic() + timeout
        payload: AnyValue = None
        error = "no answer from the kernel"
        while True:
            left = end - monotonic()
            if left <= 0:
                raise CallTimeout(code[:80])
            try:
                msg = await ensure_async(self.kc.get_iopub_msg(timeout=min(1.0, left)))
            except Empty:
                if not await ensure_async(self.kc.is_alive()):
                    raise KernelGone(self._exit_status()) from None
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg.get("msg_type"), msg.get("content", {})
            if kind == "display_data":
                data = content.get("data", {}).get(MIME)
                if isinstance(data, str) and len(data) <= self.max_output_bytes * 50:
                    try:
                        payload = json.loads(data)
                    except ValueError:
                        error = "the kernel's answer was not the grader's format"
            elif kind == "error":
                error = f"{content.get('ename')}: {content.get('evalue')}"[:500]
            elif kind == "status" and content.get("execution_state") == "idle":
                break
        return payload if isinstance(payload, dict) else {"error": error}

    def _interrupt(self) -> bool:
        """Interrupt the kernel; -> whether it answers again (else it is killed)."""
        run_sync(ensure_async)(self.km.interrupt_kernel())
        if self._responsive():
            return True
        self._gone = "the kernel was killed: it did not stop when interrupted"
        self._cleanup_kernel()
        return False

    def _run_cell(self, ctx, cell, index: int, deadline: float) -> str | None:
        """Run one cell; -> why no further cell can run, or None."""
        self._timed_out = False
        allowed = self.timeout_func(cell)
        try:
            self.execute_cell(cell, index, store_history=True)
        except DeadKernelError:
            why = f"the kernel died while running {_name(cell, index)} ({self._exit_status()})"
            ctx.reason(why)
            self._mark_not_run(ctx, cell, index, why)
            return why
        except CellTimeoutError:  # the interrupted cell never went idle
            self._timed_out = True
        ctx.executed.add(index)
        if not self._timed_out:
            return None
        budget = allowed < self.cell_timeout and deadline - monotonic() < 1
        limit = "the notebook's time limit" if budget else "the cell time limit"
        ctx.reason(f"{_name(cell, index)} was stopped at {limit} ({allowed} s)")
        if budget:
            return f"the notebook's time limit ({self.notebook_timeout:g} s) was used up"
        if not self._responsive():
            why = f"the kernel did not stop after {_name(cell, index)} was interrupted: killed"
            ctx.reason(why)
            self._cleanup_kernel()
            return why
        return None

    def _responsive(self) -> bool:
        saved = self.timeout_func, self.timeout
        self.timeout_func, self.timeout = None, max(1, int(self.responsive_seconds))
        try:
            return self.wait_for_reply(self.kc.kernel_info()) is not None
        except (DeadKernelError, CellTimeoutError):
            return False
        finally:
            self.timeout_func, self.timeout = saved

    def _exit_status(self) -> str:
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        code = process.poll() if process is not None else None
        if code is None:
            return "exit status unknown"
        if code > 128 and code - 128 in signal.valid_signals():  # through unshare's init
            code = 128 - code
        if code < 0:
            name = signal.Signals(-code).name
            hint = ": out of memory, or killed" if name == "SIGKILL" else ""
            return f"killed by {name}{hint}"
        return f"exit status {code}"

    @staticmethod
    def _mark_not_run(ctx, cell, index: int, why: str) -> None:
        ctx.not_run[index] = why
        if is_test(cell):
            cell.outputs = [*cell.get("outputs", []), _not_run_error(why)]

    def on_cell_executed(self, **kwargs):
        super().on_cell_executed(**kwargs)
        if kwargs["execute_reply"]["content"].get("ename") == self.error_on_timeout["ename"]:
            self._timed_out = True

    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        size = len(str(content.get("text", ""))) + sum(
            len(str(v)) for v in content.get("data", {}).values()
        )
        used = self._bytes.get(cell_index, 0)
        self._bytes[cell_index] = used + size
        if used + size <= self.max_output_bytes:
            return super().output(outs, msg, display_id, cell_index)
        if used <= self.max_output_bytes:
            note = f"\n[autograder: output beyond {self.max_output_bytes} bytes dropped]\n"
            outs.append(NotebookNode(output_type="stream", name="stdout", text=note))
        return None


def _name(cell, index: int) -> str:
    gid = grade_id(cell)
    return f"cell {gid}" if gid else f"cell {index}"
