"""Run a function in a fresh Python process and measure its peak memory (Lab 01, Lab 03, bench).

Peak RSS of the current process is useless for a measurement: whatever loaded before (a
notebook's torch import, an earlier model) stays in the high-water mark. So the function runs
in a new process started with ``spawn``; we report that process's peak RSS and its RSS right
after the imports, so ``peak - baseline`` is what the work itself added.

Example::

    >>> r = run_isolated("courselib.measure:_example_alloc", n_bytes=200_000_000)
    >>> r.value, round(r.added_bytes / 1e6)     # doctest: +SKIP
    (200000000, 200)
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import resource
import time
from dataclasses import dataclass
from typing import Any

from courselib.errors import CourseError


@dataclass(frozen=True)
class Isolated:
    """What a function returned in its own process, and what it cost."""

    value: Any
    peak_rss_bytes: int
    """Peak resident set size of the whole child process."""
    baseline_rss_bytes: int
    """RSS after importing the function's module, before calling it."""
    seconds: float
    """Wall time of the call alone."""

    @property
    def added_bytes(self) -> int:
        """Peak RSS minus the baseline: memory the call itself needed."""
        return self.peak_rss_bytes - self.baseline_rss_bytes


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; falls back to the peak)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * resource.getpagesize()
    except OSError:
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """Peak RSS of this process so far.

    Linux's VmHWM counts this process only; ru_maxrss survives the fork+exec that ``spawn``
    does, so a child of a 500 MB notebook would report the notebook's 500 MB as its own peak.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB elsewhere


def _child(target: str, kwargs: dict[str, Any], queue: mp.Queue) -> None:
    try:
        module_name, func_name = target.split(":")
        func = getattr(importlib.import_module(module_name), func_name)
        baseline = current_rss_bytes()
        start = time.perf_counter()
        value = func(**kwargs)
        seconds = time.perf_counter() - start
        queue.put(("ok", Isolated(value, peak_rss_bytes(), baseline, seconds)))
    except BaseException as exc:  # report anything to the parent instead of dying silently
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def run_isolated(target: str, *, timeout_s: float = 600, **kwargs: Any) -> Isolated:
    """Call ``module:function(**kwargs)`` in a fresh process; return its value and peak RSS.

    The function and its arguments and return value must be picklable (plain data).
    """
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(target, kwargs, queue), daemon=True)
    proc.start()
    deadline = time.monotonic() + timeout_s
    try:
        while True:  # poll, so a child that dies (e.g. killed for memory) is noticed at once
            try:
                status, payload = queue.get(timeout=0.5)
                break
            except Exception:
                if not proc.is_alive() and queue.empty():
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
    return payload


def _example_alloc(n_bytes: int) -> int:
    """Touch ``n_bytes`` of memory (used by the doctest and the tests)."""
    buf = bytearray(n_bytes)
    buf[:: resource.getpagesize()] = b"\1" * len(buf[:: resource.getpagesize()])
    return len(buf)
