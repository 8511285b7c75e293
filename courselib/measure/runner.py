"""Run a function in a fresh Python process and measure its memory (Lab 01, Lab 03, bench).

Peak RSS of the current process is useless for a measurement: whatever loaded before (a
notebook's torch import, an earlier model) stays in the high-water mark. So the function runs
in a new process started with ``spawn``. One method for every measurement of the course:

1. the child imports the function's module and the engines named in ``imports`` (llama_cpp,
   torch, transformers ...): their code is the process's, not the model's;
2. it resets the peak and takes the baseline RSS;
3. it calls the function; ``peak - baseline`` is what the work itself added.

Example::

    >>> r = run_isolated("courselib.measure.runner:_example_alloc", n_bytes=200_000_000)
    >>> r.value, round(r.added_bytes / 1e6)     # doctest: +SKIP
    (200000000, 200)
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import pickle
import queue
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from courselib.errors import CourseError
from courselib.measure.process import peak_rss_bytes, reset_peak, rss_bytes


@dataclass(frozen=True)
class Isolated:
    """What a function returned in its own process, and what it cost."""

    value: Any
    peak_rss_bytes: int
    """Peak resident set size of the child process after its imports (the baseline's)."""
    baseline_rss_bytes: int
    """RSS after importing the function's module and ``imports``, before calling it."""
    seconds: float
    """Wall time of the call alone."""

    @property
    def added_bytes(self) -> int:
        """Peak RSS minus the baseline: memory the call itself needed."""
        return self.peak_rss_bytes - self.baseline_rss_bytes


def _child(target: str, imports: Sequence[str], kwargs: dict[str, Any], out: mp.Queue) -> None:
    try:
        module_name, func_name = target.split(":")
        func = getattr(importlib.import_module(module_name), func_name)
        for name in imports:
            importlib.import_module(name)
        reset_peak()
        baseline = rss_bytes()
        start = time.perf_counter()
        value = func(**kwargs)
        seconds = time.perf_counter() - start
        result = Isolated(value, max(peak_rss_bytes(), baseline), baseline, seconds)
        payload: tuple[str, bytes | str]
        try:  # Queue.put pickles in a background thread, where an error is only printed
            payload = ("ok", pickle.dumps(result))
        except Exception as exc:
            payload = ("error", f"its result cannot be sent back ({type(exc).__name__}: {exc})")
        out.put(payload)
    except BaseException as exc:  # report anything to the parent instead of dying silently
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def run_isolated(
    target: str, *, imports: Sequence[str] = (), timeout_s: float = 600, **kwargs: Any
) -> Isolated:
    """Call ``module:function(**kwargs)`` in a fresh process; return its value and memory.

    ``imports``: modules to import before the baseline is taken (the engine the function
    uses), so that the engine's own code is not counted as what the call added. The
    function's arguments and return value must be picklable (plain data).
    """
    ctx = mp.get_context("spawn")
    results: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(target, tuple(imports), kwargs, results), daemon=True)
    proc.start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:  # poll, so a child that dies (e.g. killed for memory) is noticed at once
            try:
                status, payload = results.get(timeout=0.5)
                break
            except queue.Empty:
                if not proc.is_alive() and results.empty():
                    raise CourseError(
                        f"Measuring {target} failed: its process died (exit code {proc.exitcode}).",
                        hint="It may have run out of memory; try a smaller model, context or batch.",
                    ) from None
                if time.monotonic() > deadline:
                    proc.kill()
                    raise CourseError(
                        f"Measuring {target} did not finish within {timeout_s:.0f} s.",
                        hint="The machine may be busy or swapping; try a smaller model or batch.",
                    ) from None
    finally:
        proc.join(timeout=30)
    if status == "error":
        raise CourseError(f"Measuring {target} failed: {payload}", hint="See the message above.")
    return pickle.loads(payload)


def _example_alloc(n_bytes: int) -> int:
    """Touch ``n_bytes`` of memory (used by the doctest and the tests)."""
    buf = bytearray(n_bytes)
    buf[:: resource.getpagesize()] = b"\1" * len(buf[:: resource.getpagesize()])
    return len(buf)


def _unpicklable() -> Any:
    """Return something that cannot travel back (the tests check the message)."""
    return lambda: None
