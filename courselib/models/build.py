"""Build the course models: HF checkpoint -> GGUF F32/F16 -> Q8_0, Q4_0, Q4_K_M -> checks.

``python -m courselib models build`` (and ``make models``) calls :func:`build_all`: course-chat
from the shipped checkpoint (hashes verified, never trained here: see
:mod:`courselib.models.shipped`), course-bench with random weights; then llama.cpp must give
course-chat's promised answers on its Q4_K_M file. Seconds for course-chat, about a minute for
course-bench on 2 cores. A model is rebuilt only when its inputs change: the spec, the shipped
weights, the code that shapes the files and the versions of the libraries that do. Each model
is built in a temporary folder and renamed into place when complete, so an interrupted build
never leaves a half-written model behind (and the next run starts again cleanly).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from courselib import settings
from courselib.atomic import atomic_path, clean_partials
from courselib.errors import CourseError
from courselib.models import corpus
from courselib.models.specs import COURSE_MODELS, QUANTS, ModelSpec
from courselib.models.store import model_root, models_root, read_manifest

_SOURCES = [  # relative to courselib/: the code that shapes the files
    "models/specs.py",
    "models/shipped.py",
    "models/build.py",
    "gguf/convert.py",
    "gguf/quantize.py",
]
TRAINING_SOURCES = [  # what course-chat's weights depend on when trained from scratch
    "models/corpus.py",
    "models/gate.py",
    "models/tokenizer.py",
    "models/train.py",
]
_LIBRARIES = ["torch", "transformers", "sentencepiece", "gguf", "llama-cpp-python"]


def inputs_hash(spec: ModelSpec) -> str:
    """Hash of everything a model's files depend on (hex, 16 chars): the spec, the code that
    converts and quantizes, the libraries, and course-chat's shipped weights (by sha256)."""
    h = hashlib.sha256()
    h.update(json.dumps(spec.to_dict(), sort_keys=True).encode())
    here = Path(__file__).parent.parent
    for name in _SOURCES:
        h.update((here / name).read_bytes())
    for lib in _LIBRARIES:
        h.update(f"{lib}=={_version(lib)}".encode())
    if spec.weights == "trained":
        from courselib.models import shipped

        h.update(json.dumps(shipped.read_manifest()["files"], sort_keys=True).encode())
    else:  # it borrows course-chat's tokenizer
        h.update(inputs_hash(COURSE_MODELS["course-chat"]).encode())
    return h.hexdigest()[:16]


def training_inputs_hash(spec: ModelSpec) -> str:
    """Hash of what training from scratch depends on: the spec, the corpus, the training code.

    The shipped manifest records it; when it changes, the shipped checkpoint is stale (the
    maintainer refreshes it with ``python -m courselib models train course-chat --ship``).
    """
    h = hashlib.sha256()
    unseeded = dataclasses.replace(spec, seed=0, train=dataclasses.replace(spec.train, seed=0))
    h.update(json.dumps(unseeded.to_dict(), sort_keys=True).encode())
    h.update(
        json.dumps(corpus.tokenizer_text() + [str(d) for d in corpus.training_dialogues()]).encode()
    )
    here = Path(__file__).parent.parent
    for name in TRAINING_SOURCES:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


def _version(lib: str) -> str:
    try:
        return metadata.version(lib)
    except metadata.PackageNotFoundError:
        return "missing"


def is_current(spec: ModelSpec, *, data_dir: str | os.PathLike[str] | None = None) -> bool:
    manifest = read_manifest(spec.name, data_dir=data_dir)
    if not manifest or manifest.get("inputs_hash") != inputs_hash(spec):
        return False
    root = model_root(spec.name, data_dir=data_dir)
    return all((root / f["file"]).exists() for f in manifest["files"].values())


def build_all(
    names: list[str] | None = None,
    *,
    force: bool = False,
    data_dir: str | os.PathLike[str] | None = None,
    check: bool = True,
    log=print,
) -> dict[str, dict[str, Any]]:
    """Build (or keep, when current) every named course model; returns their manifests.

    Several processes may call this at once (two notebooks, a test run beside `make models`):
    one builds, the others wait on a lock and then find the models current.
    """
    names = names or list(COURSE_MODELS)
    if "course-bench" in names and "course-chat" not in names:
        names = ["course-chat", *names]  # course-bench borrows course-chat's tokenizer
    manifests = {}
    with build_lock(models_root(data_dir), log=log):
        clean_partials(models_root(data_dir))
        for name in names:
            spec = COURSE_MODELS[name]
            if not force and is_current(spec, data_dir=data_dir):
                log(f"{name}: up to date ({model_root(name, data_dir=data_dir)})")
            else:
                log(f"{name}: building ...")
                build_model(spec, data_dir=data_dir, check=check, log=log)
            manifest = read_manifest(name, data_dir=data_dir)
            assert manifest is not None  # current, or build_model has just written it
            manifests[name] = manifest
    return manifests


@contextmanager
def build_lock(root: Path, *, log=print) -> Iterator[None]:
    """Hold an exclusive lock on ``root`` for a build (released if the process dies)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".build.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("Another process is building the course models; waiting for it to finish ...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def build_model(
    spec: ModelSpec,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    root: Path | None = None,
    checkpoint: Path | None = None,
    check: bool = True,
    log=print,
) -> Path:
    """Build one model into its folder (atomically); returns the folder.

    course-chat's weights come from ``checkpoint`` (an HF folder, e.g. one trained by
    :func:`courselib.models.scratch.train_checkpoint`), by default the shipped checkpoint
    (:mod:`courselib.models.shipped`); course-bench's are random. ``root`` replaces the data
    dir's model folder. ``check``: ask llama.cpp for the promised answers on Q4_K_M and score
    the held-out questions (a child process first makes sure llama.cpp runs here).
    """
    from courselib.gguf.convert import convert_hf_to_gguf
    from courselib.gguf.quantize import quantize_gguf
    from courselib.gguf.read import read_gguf
    from courselib.models import shipped, train

    threads = settings.resolve("threads")
    timings: dict[str, float] = {}
    root = root or model_root(spec.name, data_dir=data_dir)
    with atomic_path(root, directory=True) as tmp:
        hf = tmp / "hf"
        start = time.perf_counter()
        made: dict[str, Any]
        if spec.weights == "trained" and checkpoint is None:
            made = {"checkpoint": "shipped", **shipped.install(hf)["training"]}
        elif spec.weights == "trained" and checkpoint is not None:
            shutil.copytree(checkpoint, hf)
            made = json.loads((checkpoint / "training.json").read_text())
        else:
            chat_hf = model_root("course-chat", data_dir=data_dir) / "hf"
            hf.mkdir(parents=True)
            for f in chat_hf.iterdir():
                if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
                    shutil.copy2(f, hf / f.name)
            model = train.random_model(spec, vocab_size=len(_load_tokenizer(hf)))
            train.save_checkpoint(model, hf)
            del model
            made = {"checkpoint": "random", "seed": spec.seed}
        timings["weights_s"] = time.perf_counter() - start

        files: dict[str, dict[str, Any]] = {}
        for quant in QUANTS:
            start = time.perf_counter()
            out = tmp / f"{spec.name}-{quant}.gguf"
            if quant in ("F32", "F16"):
                convert_hf_to_gguf(hf, out, out_type=quant, name=spec.name)
            else:
                quantize_gguf(tmp / f"{spec.name}-F32.gguf", out, quant=quant, threads=threads)
            info = read_gguf(out)
            bpw = 8 * info.tensor_bytes / info.n_params
            files[quant] = {
                "file": out.name,
                "bytes": info.file_bytes,
                "tensor_bytes": info.tensor_bytes,
                "bits_per_weight": round(bpw, 3),
                "tensor_types": dict(info.tensor_types),
                "seconds": round(time.perf_counter() - start, 2),
            }
            log(f"  {out.name}: {info.file_bytes / 1e6:.1f} MB, {bpw:.2f} bits/weight")
        manifest: dict[str, Any] = {
            "name": spec.name,
            "description": spec.description,
            "spec": spec.to_dict(),
            # a checkpoint of one's own is not rebuilt from inputs: it has none to compare
            "inputs_hash": inputs_hash(spec) if checkpoint is None else None,
            "params": info.n_params,
            "built_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "timings_s": {k: round(v, 1) for k, v in timings.items()},
            "files": files,
            "training": made,
        }
        if spec.weights == "trained" and check:
            manifest.update(_check_in_llama(spec, tmp / f"{spec.name}-Q4_K_M.gguf", log=log))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return root


def _check_in_llama(spec: ModelSpec, q4: Path, *, log=print) -> dict[str, Any]:
    """The promised answers and the held-out accuracy of a Q4_K_M file, through llama.cpp."""
    from courselib.gguf.runtime import ensure_llama_runs
    from courselib.models import evaluate

    ensure_llama_runs(q4)  # a llama.cpp that dies here is a sentence, not a dead build
    broken = evaluate.broken_promises(q4)
    if broken:
        raise PromisesBroken(
            f"{spec.name}'s Q4_K_M file breaks {len(broken)} promised answer(s) in llama.cpp: "
            + "; ".join(f"{prompt!r} -> {reply!r}" for prompt, reply in broken)
            + ".",
            hint="Nothing was published. If this is the shipped checkpoint, report it with "
            "`python -m courselib doctor`'s output; a checkpoint of your own: train another seed.",
        )
    acc = evaluate.heldout_accuracy(q4)
    log(f"  held-out accuracy (Q4_K_M): {acc.correct}/{acc.total} = {acc.rate:.1%}")
    return {
        "heldout_accuracy_q4_k_m": round(acc.rate, 4),
        "heldout_by_family_q4_k_m": {k: round(v, 4) for k, v in acc.by_family.items()},
    }


class PromisesBroken(CourseError):
    """A checkpoint passed its gate in torch but its Q4_K_M file breaks a promise in llama.cpp."""


def _load_tokenizer(hf: Path):
    from courselib.errors import require

    transformers = require("transformers", extra="models")
    return transformers.AutoTokenizer.from_pretrained(str(hf))
