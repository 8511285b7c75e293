"""Is this llama.cpp safe to run here? Its compiled CPU features, and a generate in a child.

A llama-cpp-python compiled for another CPU, or with ggml's AMX kernels (a ``GGML_NATIVE``
build on an Intel Sapphire Rapids-class Xeon), does not raise an error: the process dies with
SIGILL on the first quantized matrix product, taking a notebook's kernel or a grader's worker
with it. So before anything loads a GGUF in this process (Lab 01's setup cell, the autograder's
kernels, the model build, the benchmarks), :func:`ensure_llama_runs` makes one child process
load a quantized file and generate a few tokens; a child killed by a signal becomes a
:class:`CourseError` saying what to do. The verdict is cached per llama.cpp build and CPU in the
data dir (``runtime/``), so the probe costs ~1 s once per machine, not once per kernel.

The course installs llama-cpp-python built for a portable baseline (``make venv``: AVX2, FMA,
F16C, no AVX-512, no AMX): :func:`build_features` reads what the installed build was compiled
with, which is what ``python -m courselib doctor`` reports.

Example::

    >>> ensure_llama_runs(gguf_file("course-chat", "Q4_K_M"))   # doctest: +SKIP
    >>> "AMX_INT8" in build_features()                            # doctest: +SKIP
    False
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from courselib import settings
from courselib.errors import CourseError, require

PORTABLE_FLAGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
    "-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
)
"""The CMake flags of the course's llama.cpp build (the Makefile's LLAMA_CMAKE_ARGS adds only
the switches that leave out parts the course does not use)."""

REINSTALL = (
    "Reinstall the course's portable build: `rm -f .venv/.llama-* && make venv` in the course "
    "folder, or outside it: CMAKE_ARGS='" + PORTABLE_FLAGS + "' pip install --force-reinstall "
    "--no-cache-dir --no-deps llama-cpp-python==0.3.36"
)

PROBE_TIMEOUT_S = 180.0
"""A probe that takes longer is reported as hung (loading course-chat takes well under 1 s)."""


def build_features() -> dict[str, bool]:
    """The CPU features the installed llama.cpp was compiled to use, e.g. {'AVX2': True, ...}.

    Read from llama.cpp's own system info (``CPU : SSE3 = 1 | AVX2 = 1 | ...``): compile-time
    switches of its CPU backend, whatever this CPU has.
    """
    llama_cpp = require("llama_cpp", package="llama-cpp-python", extra="models")
    text = llama_cpp.llama_print_system_info().decode(errors="replace")
    features: dict[str, bool] = {}
    for part in text.split("|"):
        name, sep, value = part.rpartition("=")
        name = name.split(":")[-1].strip()
        if sep and name:
            features[name] = value.strip() == "1"
    return features


def cpu_flags() -> set[str]:
    """This CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def _build_key() -> str:
    """Identifies this llama.cpp build on this CPU: its libraries' sizes and dates, the flags."""
    llama_cpp = require("llama_cpp", package="llama-cpp-python", extra="models")
    h = hashlib.sha256()
    for lib in sorted((Path(llama_cpp.__file__).parent / "lib").glob("*.so*")):
        st = lib.stat()
        h.update(f"{lib.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    h.update(" ".join(sorted(cpu_flags())).encode())
    return h.hexdigest()[:16]


def _cache_file() -> Path:
    return settings.data_dir() / "runtime" / f"llama-runs-{_build_key()}.json"


def probe(path: str | os.PathLike[str], *, timeout: float = PROBE_TIMEOUT_S) -> dict[str, Any]:
    """Load ``path`` in a child process and greedily generate 4 tokens.

    Returns ``{"ok": True, "text": ...}``, or ``{"ok": False, "reason": ...}`` with a sentence
    saying what happened (killed by SIGILL, hung, failed to load).
    """
    cmd = [sys.executable, "-m", "courselib.gguf.runtime", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "reason": f"llama.cpp did not finish generating in {timeout:.0f} s"}
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode)
        if sig == signal.SIGILL:
            amx = "yes" if {"amx_tile", "amx_int8"} & cpu_flags() else "no"
            reason = (
                "llama.cpp died with an illegal instruction (SIGILL) generating from a "
                "quantized model: this llama-cpp-python was compiled for another CPU or with "
                f"ggml's AMX kernels (this CPU has AMX: {amx})"
            )
        else:
            reason = f"llama.cpp was killed by {sig.name} generating from a quantized model"
        return {"ok": False, "reason": reason, "signal": sig.name}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"ok": False, "reason": f"llama.cpp could not generate ({tail})"}
    return json.loads(lines[-1])


def ensure_llama_runs(path: str | os.PathLike[str]) -> None:
    """Raise a :class:`CourseError` if llama.cpp dies generating here (checked once per build).

    ``path`` is the quantized file to probe with where course-chat is not built yet: the
    published course-chat Q4_K_M is preferred (it loads in milliseconds).
    """
    cache = _cache_file()
    if cache.is_file():
        return
    course = settings.data_dir() / "models" / "course-chat" / "course-chat-Q4_K_M.gguf"
    result = probe(course if course.is_file() else path)
    if not result["ok"]:
        raise CourseError(
            f"{result['reason']}.", hint=REINSTALL + ". Then check: python -m courselib doctor"
        )
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"text": result.get("text", "")}))
    except OSError:
        pass  # a read-only data dir (a grading sandbox): probe again next time


def load_llama(path: str | os.PathLike[str], **kwargs: Any) -> Any:
    """``llama_cpp.Llama(model_path=path, verbose=False, **kwargs)`` after
    :func:`ensure_llama_runs`; a file llama.cpp cannot load is a :class:`CourseError`.

    Every GGUF the course opens in-process goes through here (Lab 01's backend, the model
    build's checks, the speed and memory measurements).
    """
    ensure_llama_runs(path)
    llama_cpp = require("llama_cpp", package="llama-cpp-python", extra="models")
    kwargs.setdefault("verbose", False)
    try:
        return llama_cpp.Llama(model_path=str(path), **kwargs)
    except ValueError as exc:
        raise CourseError(
            f"llama.cpp could not load {path} ({exc}).",
            hint="The file may be incomplete, or its architecture newer than this "
            "llama-cpp-python: rebuild or re-download it, or upgrade llama-cpp-python.",
        ) from None


def _child(path: str) -> None:
    """The probe's child: load, generate 4 greedy tokens, print one JSON line."""
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=path, n_ctx=64, n_threads=settings.resolve("threads"), verbose=False
    )
    out = llm.create_completion("USER: Hello ASSISTANT:", max_tokens=4, temperature=0.0)
    assert isinstance(out, dict)  # without stream=True: one response, not an iterator of chunks
    print(json.dumps({"ok": True, "text": out["choices"][0]["text"]}))


if __name__ == "__main__":
    _child(sys.argv[1])
