"""Build the course models: tokenizer -> HF checkpoint -> GGUF F32/F16 -> Q8_0, Q4_0, Q4_K_M.

``python -m courselib models build`` (and ``make models``) calls :func:`build_all`. A model is
rebuilt only when its inputs change: the spec, the generated corpus, ``BUILD_VERSION`` (bumped
by any change to the code that shapes the files) and the versions of the libraries that do. Each model is built in a
temporary folder and renamed into place when complete, so an interrupted build never leaves
a half-written model behind (and the next run starts again cleanly).
"""

from __future__ import annotations

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
    "models/corpus.py",
    "models/gate.py",
    "models/specs.py",
    "models/tokenizer.py",
    "models/train.py",
    "models/build.py",
    "gguf/convert.py",
    "gguf/quantize.py",
]
_LIBRARIES = ["torch", "transformers", "sentencepiece", "gguf", "llama-cpp-python"]


def inputs_hash(spec: ModelSpec) -> str:
    """Hash of everything a model's files depend on (hex, 16 chars)."""
    h = hashlib.sha256()
    h.update(json.dumps(spec.to_dict(), sort_keys=True).encode())
    h.update(
        json.dumps(corpus.tokenizer_text() + [str(d) for d in corpus.training_dialogues()]).encode()
    )
    here = Path(__file__).parent.parent
    for name in _SOURCES:
        h.update((here / name).read_bytes())
    for lib in _LIBRARIES:
        h.update(f"{lib}=={_version(lib)}".encode())
    if spec.weights == "random":  # it borrows course-chat's tokenizer
        h.update(inputs_hash(COURSE_MODELS["course-chat"]).encode())
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
                build_model(spec, data_dir=data_dir, log=log)
            manifests[name] = read_manifest(name, data_dir=data_dir)
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
    spec: ModelSpec, *, data_dir: str | os.PathLike[str] | None = None, log=print
) -> Path:
    """Build one model from scratch into its folder (atomically); returns the folder."""
    from courselib.gguf.convert import convert_hf_to_gguf
    from courselib.gguf.quantize import quantize_gguf
    from courselib.gguf.read import read_gguf
    from courselib.models import evaluate, gate, train
    from courselib.models.tokenizer import save_llama_tokenizer, train_sentencepiece

    threads = settings.resolve("threads")
    timings: dict[str, float] = {}
    root = model_root(spec.name, data_dir=data_dir)
    with atomic_path(root, directory=True) as tmp:
        hf = tmp / "hf"
        start = time.perf_counter()
        if spec.weights == "trained":
            sp_model = train_sentencepiece(corpus.tokenizer_text(), vocab_size=spec.vocab_size)
            save_llama_tokenizer(sp_model, hf, context_length=spec.context_length)
            tokenizer = _load_tokenizer(hf)
            report = train.TrainReport()
            model = train.train_chat_model(
                spec,
                tokenizer,
                corpus.training_dialogues(),
                threads=threads,
                gate=lambda m: gate.check(m, tokenizer),
                report=report,
            )
        else:
            chat_hf = model_root("course-chat", data_dir=data_dir) / "hf"
            hf.mkdir(parents=True)
            for f in chat_hf.iterdir():
                if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
                    shutil.copy2(f, hf / f.name)
            tokenizer = _load_tokenizer(hf)
            model = train.random_model(spec, vocab_size=len(tokenizer))
        train.save_checkpoint(model, hf)
        params = sum(p.numel() for p in model.parameters())
        del model
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
            "inputs_hash": inputs_hash(spec),
            "params": params,
            "built_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "timings_s": {k: round(v, 1) for k, v in timings.items()},
            "files": files,
        }
        if spec.weights == "trained":
            q4 = tmp / f"{spec.name}-Q4_K_M.gguf"
            broken = evaluate.broken_promises(q4)
            if broken:
                raise CourseError(
                    f"{spec.name} passed its quality gate in fp32 but its Q4_K_M file breaks "
                    f"{len(broken)} promised answer(s), e.g. {broken[0][0]!r} -> {broken[0][1]!r}.",
                    hint="Nothing was published. Build again (python -m courselib models build "
                    "--force); if it happens again on this machine, report it.",
                )
            manifest["training"] = {"steps": report.steps, "gate": report.rounds}
            acc = evaluate.heldout_accuracy(q4)
            manifest["heldout_accuracy_q4_k_m"] = round(acc.rate, 4)
            manifest["heldout_by_family_q4_k_m"] = {
                k: round(v, 4) for k, v in acc.by_family.items()
            }
            log(f"  held-out accuracy (Q4_K_M): {acc.correct}/{acc.total} = {acc.rate:.1%}")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return root


def _load_tokenizer(hf: Path):
    from courselib.errors import require

    transformers = require("transformers", extra="models")
    return transformers.AutoTokenizer.from_pretrained(str(hf))
