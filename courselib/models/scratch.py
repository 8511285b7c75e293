"""Train course-chat from scratch: ``python -m courselib models train course-chat``.

What curious students run to see a chat model made from nothing, what ``make check-models``
measures, and how the shipped checkpoint is made (``--ship``, the maintainer's step). The
tokenizer is trained on the corpus, then the model until its quality gate passes
(:mod:`courselib.models.gate`); a seed whose training misses the gate at the step cap, or whose
Q4_K_M file breaks a promise in llama.cpp, is followed by the next seed, up to ``tries``
seeds, and the user is told. The result is a model folder laid out like the data dir's
(``hf/`` at fp16, the five GGUFs, ``manifest.json``).

Example::

    >>> result = train_checkpoint(COURSE_MODELS["course-chat"], Path("my-chat"))  # doctest: +SKIP
    >>> result["training"]["seed"], result["heldout_accuracy_q4_k_m"]            # doctest: +SKIP
    (0, 0.958)
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from courselib import settings
from courselib.errors import CourseError
from courselib.models import corpus, shipped
from courselib.models.specs import ModelSpec

SEED_TRIES = 3
"""Seeds tried, one after another, before training from scratch gives up."""

_LIBRARIES = ["torch", "transformers", "sentencepiece", "gguf", "llama-cpp-python", "safetensors"]


def train_checkpoint(
    spec: ModelSpec,
    out: Path,
    *,
    threads: int | None = None,
    tries: int = SEED_TRIES,
    gate: Callable[[Any, Any], Any] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train ``spec`` from scratch (seeds ``spec.seed``, +1, ... up to ``tries``) into ``out``.

    ``gate(model, tokenizer)`` defaults to :func:`courselib.models.gate.check`. Returns the
    built model's manifest. Raises :class:`CourseError` naming what missed for every seed.
    """
    from courselib.models import build
    from courselib.models import gate as gate_module
    from courselib.models.tokenizer import save_llama_tokenizer, train_sentencepiece
    from courselib.models.train import GateFailed, TrainReport, save_checkpoint, train_chat_model

    threads = settings.resolve("threads", threads)
    gate = gate or gate_module.check
    misses: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        tok_dir = Path(tmp) / "tokenizer"
        sp_model = train_sentencepiece(corpus.tokenizer_text(), vocab_size=spec.vocab_size)
        save_llama_tokenizer(sp_model, tok_dir, context_length=spec.context_length)
        tokenizer = build._load_tokenizer(tok_dir)
        for attempt in range(tries):
            seed = spec.seed + attempt
            seeded = dataclasses.replace(
                spec, seed=seed, train=dataclasses.replace(spec.train, seed=seed)
            )
            if attempt:
                log(f"trying seed {seed} by itself (attempt {attempt + 1} of {tries}) ...")
            report = TrainReport()
            start = time.perf_counter()
            try:
                model = train_chat_model(
                    seeded,
                    tokenizer,
                    corpus.training_dialogues(),
                    threads=threads,
                    gate=lambda m: gate(m, tokenizer),
                    report=report,
                )
            except GateFailed as exc:
                misses.append(f"seed {seed}: {exc.verdict.what_failed()}")
                log(f"seed {seed} missed the quality gate at {report.steps} steps: {exc.message}")
                continue
            minutes = (time.perf_counter() - start) / 60
            hf = Path(tmp) / f"seed{seed}"
            shutil.copytree(tok_dir, hf)
            model.half()  # the shipped precision: fp16 halves the checkpoint, gate margins hold
            save_checkpoint(model, hf)
            del model
            training = {
                "seed": seed,
                "threads": threads,
                "steps": report.steps,
                "minutes": round(minutes, 1),
                "gate": report.rounds,
                "training_inputs": build.training_inputs_hash(spec),
                "commit": _commit(),
                "libraries": {lib: build._version(lib) for lib in _LIBRARIES},
                "python": platform.python_version(),
                "cpu": _cpu_name(),
                "trained_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            (hf / "training.json").write_text(json.dumps(training, indent=2))
            try:
                build.build_model(seeded, root=out, checkpoint=hf, log=log)
            except build.PromisesBroken as exc:
                misses.append(f"seed {seed}: {exc.message}")
                log(f"seed {seed} passed the gate but: {exc.message}")
                continue
            return json.loads((out / "manifest.json").read_text())
    raise CourseError(
        f"{spec.name} did not pass its quality gate with any of {tries} seeds "
        f"({spec.seed}-{spec.seed + tries - 1}). " + " | ".join(misses),
        hint="Nothing was written. Try other seeds (--seed 10), or use the shipped checkpoint "
        "(make models), which passed the same gate.",
    )


def ship(model_dir: Path, *, dest: Path = shipped.SHIPPED_DIR) -> dict[str, Any]:
    """Replace the shipped checkpoint with ``model_dir``'s (a folder built by
    :func:`train_checkpoint`) and write its manifest; the maintainer's step, then commit.
    """
    built = json.loads((model_dir / "manifest.json").read_text())
    hf = model_dir / "hf"
    keep = sorted(f.name for f in hf.iterdir() if f.is_file() and f.name not in ("training.json",))
    total = sum((hf / name).stat().st_size for name in keep)
    if total > shipped.MAX_BYTES:
        raise CourseError(
            f"The checkpoint is {total / 2**20:.1f} MiB, over the {shipped.MAX_BYTES / 2**20:.0f} "
            "MiB the repository allows for it.",
            hint="Keep course-chat small (courselib/models/specs.py) or ship fp16 weights.",
        )
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in keep:
        shutil.copy2(hf / name, tmp / name)
    manifest = {
        "name": built["name"],
        "dtype": "float16",
        "files": {
            name: {"sha256": shipped.sha256(tmp / name), "bytes": (tmp / name).stat().st_size}
            for name in keep
        },
        "training": built["training"],
        "heldout_accuracy_q4_k_m": built["heldout_accuracy_q4_k_m"],
        "heldout_by_family_q4_k_m": built["heldout_by_family_q4_k_m"],
    }
    (tmp / shipped.MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return manifest


def _commit() -> str:
    """The training code's git commit (+ '-dirty' with uncommitted changes), or 'unknown'."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev + ("-dirty" if dirty else "")) if rev else "unknown"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
