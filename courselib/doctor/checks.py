"""The doctor's checks: what each one tries, for whom, and what to do when it fails.

A check is a function run in a child process (``python -m courselib.doctor.checks NAME``) that
returns a one-line detail or raises :class:`CourseError` (message + what to do). The parent
reads one JSON line back; a child killed by a signal or out of time is a FAIL too.

Who needs what:

- ``student`` (every lab): the llama.cpp build, generating from a quantized GGUF, torch,
  bitsandbytes (Lab 04's QLoRA), a writable data dir with room for the models;
- ``instructor`` adds bubblewrap (the autograder's sandbox);
- ``ops`` adds nginx with its njs module (the class server's gateway);
- ``dev`` adds chromium (the browser tests of the labs).

Example::

    >>> [o.status for o in run_checks(["llama-build", "torch"])]   # doctest: +SKIP
    ['PASS', 'PASS']
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from courselib import settings
from courselib.errors import CourseError

ROLES = ("student", "instructor", "ops", "dev")
"""Each role needs its own checks and every earlier role's (``dev`` needs everything)."""

MIN_FREE_BYTES = 3 * 10**9
"""Room the course models take in the data dir (course-chat ~40 MB, course-bench's five GGUFs
and checkpoint ~2.2 GB), plus Lab 04's exports."""

CHECK_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Check:
    name: str
    role: str
    what: str
    run: Callable[[], str]


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # "PASS" or "FAIL"
    detail: str
    hint: str = ""

    def line(self) -> str:
        text = f"{self.status}  {self.name:<16} {self.detail}"
        return f"{text}\n      What to do: {self.hint}" if self.hint else text


def _llama_build() -> str:
    from courselib.gguf.runtime import REINSTALL, build_features, cpu_flags

    features = build_features()
    on = [name for name, enabled in features.items() if enabled]
    amx = [name for name in on if name.startswith("AMX")]
    if amx:
        raise CourseError(
            f"llama.cpp was compiled with {', '.join(amx)} (a native build): its AMX kernels die "
            "with SIGILL on Sapphire Rapids-class CPUs, and the wheel runs on no other CPU.",
            hint=REINSTALL + ".",
        )
    flags = cpu_flags()
    missing = [
        f for f in ("AVX2", "FMA", "F16C") if features.get(f) and flags and f.lower() not in flags
    ]
    if missing:
        raise CourseError(
            f"llama.cpp was compiled for {', '.join(missing)}, which this CPU does not have.",
            hint="Build it for this CPU: CMAKE_ARGS='-DGGML_NATIVE=ON' pip install "
            "--force-reinstall --no-cache-dir --no-deps llama-cpp-python==0.3.36",
        )
    return "compiled for " + " ".join(n for n in on if n not in ("OPENMP", "REPACK")) + ", no AMX"


def _llama_generate() -> str:
    from courselib.gguf.runtime import REINSTALL, probe
    from courselib.models.store import read_manifest

    if read_manifest("course-chat") is not None:
        from courselib.models.store import gguf_file

        return _probe_line(probe(gguf_file("course-chat", "Q4_K_M")), REINSTALL)
    from courselib.models.build import build_all

    # not published yet: convert the shipped checkpoint into a scratch data dir (seconds)
    with tempfile.TemporaryDirectory() as tmp:
        build_all(["course-chat"], data_dir=tmp, log=lambda *_: None, check=False)
        q4 = Path(tmp) / "models" / "course-chat" / "course-chat-Q4_K_M.gguf"
        return _probe_line(probe(q4), REINSTALL)


def _probe_line(result: dict, hint: str) -> str:
    if not result["ok"]:
        raise CourseError(f"{result['reason']}.", hint=hint + ".")
    return f"course-chat Q4_K_M generated {result['text']!r} in a child process"


def _torch() -> str:
    from courselib.errors import require

    torch = require("torch", extra="models")
    x = torch.randn(64, 64)
    float((x @ x).sum())
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads"


def _bitsandbytes() -> str:
    from courselib.errors import require
    from courselib.nf4 import require_bitsandbytes

    torch = require("torch", extra="models")
    bnb = require_bitsandbytes()
    weight = torch.randn(256, 256)
    packed, state = bnb.functional.quantize_4bit(weight, quant_type="nf4")
    back = bnb.functional.dequantize_4bit(packed, state)
    err = float((back - weight).abs().mean() / weight.abs().mean())
    if not err < 0.2:
        raise CourseError(
            f"bitsandbytes' NF4 round trip is off by {err:.0%} on this CPU.",
            hint="Reinstall bitsandbytes (pip install --force-reinstall 'bitsandbytes>=0.47').",
        )
    return f"bitsandbytes {bnb.__version__}: NF4 round trip on CPU, mean error {err:.1%}"


def _data_dir() -> str:
    root = Path(settings.resolve("data_dir"))
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root):
            pass
    except OSError as exc:
        raise CourseError(
            f"The data dir {root} is not writable ({exc.strerror}).",
            hint="Point COURSELAB_DATA_DIR (or data_dir in the config file) at a folder you can write.",
        ) from None
    free = shutil.disk_usage(root).free
    if free < MIN_FREE_BYTES:
        raise CourseError(
            f"The data dir {root} has {free / 1e9:.1f} GB free; the course models need "
            f"{MIN_FREE_BYTES / 1e9:.0f} GB.",
            hint="Free some space there, or point COURSELAB_DATA_DIR at a bigger disk.",
        )
    return f"{root} writable, {free / 1e9:.0f} GB free"


def _program(name: str, version_args: list[str], package: str, needed_for: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise CourseError(
            f"{name} is not installed (needed by {needed_for}).",
            hint=f"apt-get install {package}  (or `make sysdeps` as root)",
        )
    proc = subprocess.run([path, *version_args], capture_output=True, text=True, timeout=60)
    first = (proc.stdout + proc.stderr).strip().splitlines()
    return f"{path}: {first[0] if first else 'runs'}"


def _bubblewrap() -> str:
    line = _program("bwrap", ["--version"], "bubblewrap", "the autograder's sandbox")
    proc = subprocess.run(
        ["bwrap", "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if proc.returncode != 0:
        raise CourseError(
            f"bubblewrap is installed but cannot make a sandbox here ({proc.stderr.strip()}).",
            hint="Allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1), "
            "or grade with --isolation none on a machine where students cannot reach the grader.",
        )
    return line + ", sandbox works"


def _nginx() -> str:
    line = _program("nginx", ["-v"], "nginx libnginx-mod-http-js", "the class server's gateway")
    if not list(Path("/usr/lib/nginx/modules").glob("ngx_http_js_module.so")):
        raise CourseError(
            "nginx's njs module is not installed (the gateway's key checks are written in njs).",
            hint="apt-get install libnginx-mod-http-js",
        )
    return line + ", njs module present"


def _chromium() -> str:
    return _program("chromium", ["--version"], "chromium", "the browser tests of the labs")


CHECKS: list[Check] = [
    Check("llama-build", "student", "llama.cpp compiled for the portable baseline", _llama_build),
    Check("llama-generate", "student", "llama.cpp generates from a 4-bit GGUF", _llama_generate),
    Check("torch", "student", "torch loads and multiplies", _torch),
    Check("bitsandbytes", "student", "bitsandbytes 4-bit on CPU (Lab 04)", _bitsandbytes),
    Check("data-dir", "student", "the data dir is writable, with room", _data_dir),
    Check("bubblewrap", "instructor", "the grading sandbox", _bubblewrap),
    Check("nginx", "ops", "the gateway's nginx + njs", _nginx),
    Check("chromium", "dev", "the browser tests' chromium", _chromium),
]
BY_NAME = {c.name: c for c in CHECKS}


def checks_for(role: str) -> list[Check]:
    """The checks ``role`` needs (its own and every earlier role's)."""
    allowed = ROLES[: ROLES.index(role) + 1]
    return [c for c in CHECKS if c.role in allowed]


def run_checks(names: Iterable[str]) -> Iterable[Outcome]:
    """Run each named check in its own child process; yield outcomes as they finish."""
    for name in names:
        yield _run_child(name)


def _run_child(name: str) -> Outcome:
    cmd = [sys.executable, "-m", "courselib.doctor.checks", name]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return Outcome(name, "FAIL", f"did not finish in {CHECK_TIMEOUT_S:.0f} s", "Report it.")
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        return Outcome(name, "FAIL", f"the check's process was killed by {sig}", "Report it.")
    lines = proc.stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return Outcome(name, "FAIL", f"the check crashed: {tail}", "Report it.")
    return Outcome(name, data["status"], data["detail"], data.get("hint", ""))


def _child(name: str) -> None:
    """In the child: run one check, print one JSON line (status, detail, hint)."""
    try:
        out = {"status": "PASS", "detail": BY_NAME[name].run()}
    except CourseError as exc:
        out = {"status": "FAIL", "detail": exc.message, "hint": exc.hint}
    except Exception as exc:  # an unexpected failure is still one line, never a traceback
        out = {"status": "FAIL", "detail": f"{type(exc).__name__}: {exc}", "hint": "Report it."}
    print(json.dumps(out))


if __name__ == "__main__":
    _child(sys.argv[1])
