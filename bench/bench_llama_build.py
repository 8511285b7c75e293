"""What the portable llama.cpp build costs: its speed beside builds for this CPU, side by side.

The course installs llama-cpp-python compiled for a portable baseline (AVX2, no AVX-512, no
AMX; the Makefile's LLAMA_CMAKE_ARGS), so that one wheel runs on every student's x86-64 CPU
and ggml's AMX kernels, which die with SIGILL on Sapphire Rapids-class Xeons, are never in
it. This bench measures the price on this machine: course-bench (~150M params, random
weights) at Q4_K_M and Q8_0, prompt processing and greedy decode tokens/s, for

- the venv's build (portable),
- an AVX-512 build without AMX (only where the CPU has AVX-512F), the fastest build that
  runs everywhere such a CPU is found,
- a native build (GGML_NATIVE=ON: whatever this CPU has, AMX included where it is there).

Each other build is compiled once into the same wheel cache the Makefile uses (keyed by the
version and its flags; ~4 min each on 2 cores the first time) and imported from an unpacked
copy by a fresh process. A build that cannot run here (SIGILL) is reported, not measured.
Runs alternate build by build within each round; medians over rounds, ratios to portable.

Run: ``python bench/run.py --only llama_build [--quick]``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from courselib.gguf.runtime import cpu_flags
from courselib.models import gguf_file

MODEL = "course-bench"
TYPES = ("Q4_K_M", "Q8_0")
_OFF = (
    "-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF"
)
_BASE = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
AVX512 = (
    f"{_BASE} -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON "
    f"-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF {_OFF}"
)
NATIVE = f"-DGGML_NATIVE=ON {_OFF}"

# One measurement in a fresh interpreter whose sys.path starts with the build to test; the
# measuring child (spawned by measure_gguf) inherits that sys.path, its probe the PYTHONPATH.
_CHILD = """
import dataclasses, json, sys
from courselib.errors import CourseError
from courselib.measure.speed import measure_gguf
try:
    r = measure_gguf(sys.argv[1], max_tokens=int(sys.argv[2]))
    print(json.dumps(dataclasses.asdict(r)))
except CourseError as exc:
    print(json.dumps({"error": exc.message}))
"""


def _wheel(flags: str, version: str) -> Path:
    """The llama-cpp-python wheel for ``flags``: from the course's wheel cache, else compiled."""
    key = hashlib.sha256(f"{version} {flags}".encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "courselab/wheels"
    folder = cache / f"llama-cpp-python-{version}-{key}"
    wheels = sorted(folder.glob("llama_cpp_python-*.whl"))
    if not wheels:
        print(f"  compiling llama.cpp with {flags.split(' -DLLAVA')[0]} (~4 min) ...", flush=True)
        partial = folder.with_name(folder.name + ".partial")
        subprocess.run(["rm", "-rf", str(partial)], check=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-cache-dir",
             "--no-binary", "llama-cpp-python", "-w", str(partial),
             f"llama-cpp-python=={version}"],
            check=True, env={**os.environ, "CMAKE_ARGS": flags},
        )  # fmt: skip
        partial.rename(folder)
        wheels = sorted(folder.glob("llama_cpp_python-*.whl"))
    return wheels[0]


def _measure(path: Path, build_dir: Path | None, max_tokens: int) -> dict:
    env = dict(os.environ)
    if build_dir is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(build_dir), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(max_tokens)],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if out.returncode != 0:
        return {"error": f"exit code {out.returncode}: {out.stderr.strip().splitlines()[-1:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(args) -> None:
    quick = getattr(args, "quick", False)
    rounds, max_tokens = (2, 32) if quick else (5, 64)
    version = importlib.metadata.version("llama-cpp-python")
    builds: dict[str, str | None] = {"portable (venv)": None}
    if "avx512f" in cpu_flags():
        builds["AVX-512, no AMX"] = AVX512
    builds["native"] = NATIVE
    with tempfile.TemporaryDirectory(prefix="llama-builds-") as tmp:
        dirs: dict[str, Path | None] = {}
        for name, flags in builds.items():
            if flags is None:
                dirs[name] = None
                continue
            target = Path(tmp) / name.split()[0].strip(",")
            with zipfile.ZipFile(_wheel(flags, version)) as whl:
                whl.extractall(target)
            dirs[name] = target
        amx = "amx_tile" in cpu_flags()
        print(
            f"{MODEL}, llama-cpp-python {version}, {max_tokens} greedy tokens, "
            f"median of {rounds} rounds; CPU has AVX-512: {'avx512f' in cpu_flags()}, AMX: {amx}"
        )
        results: dict[tuple[str, str], list[dict]] = {}
        for _ in range(rounds):
            for quant in TYPES:
                for name, build_dir in dirs.items():
                    r = _measure(gguf_file(MODEL, quant), build_dir, max_tokens)
                    results.setdefault((quant, name), []).append(r)
    print(
        f"{'type':<7} {'build':<17} {'prompt tok/s':>13} {'x portable':>11} "
        f"{'decode tok/s':>13} {'x portable':>11}"
    )
    for quant in TYPES:
        base: dict[str, float] = {}
        for name in builds:
            runs = results[(quant, name)]
            errors = [r["error"] for r in runs if "error" in r]
            if errors:
                print(f"{quant:<7} {name:<17} does not run here: {errors[0][:90]}")
                continue
            prompt = statistics.median(r["prompt_tokens"] / r["ttft_s"] for r in runs)
            decode = statistics.median(r["decode_tokens_per_s"] for r in runs)
            base = base or {"prompt": prompt, "decode": decode}
            print(
                f"{quant:<7} {name:<17} {prompt:>13.0f} {prompt / base['prompt']:>11.2f} "
                f"{decode:>13.1f} {decode / base['decode']:>11.2f}"
            )
    print(
        "prompt tok/s counts the first generated token with the prompt (time to first token); "
        "a build that dies with SIGILL is what the portable default exists for."
    )
