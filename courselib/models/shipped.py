"""The course-chat checkpoint shipped in the package: one set of weights for every machine.

Training course-chat takes minutes, and another CPU's float kernels take it down another
trajectory: machines that each trained their own model each failed somewhere new. So
course-chat is trained once (``python -m courselib models train course-chat --ship``, the
maintainer's step), checked through the quality gate and in llama.cpp, and shipped in
``courselib/data/course-chat/``: the HF checkpoint at fp16 (config, safetensors, tokenizer)
and ``manifest.json`` with the sha256 of every file and how the weights were made (seed,
threads, steps, the gate's numbers, held-out accuracy by family, the training code's commit,
library versions, CPU). ``make models`` verifies the hashes and converts; it never trains.

Example::

    >>> verify()["training"]["seed"]      # doctest: +SKIP
    1
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from courselib.errors import CourseError, require

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "course-chat"
MANIFEST = "manifest.json"
MAX_BYTES = 16 * 2**20
"""The shipped checkpoint's size limit (all files): the only weights the repository holds."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(root: Path = SHIPPED_DIR) -> dict[str, Any]:
    """The shipped manifest; a missing or broken one is a :class:`CourseError`."""
    try:
        return json.loads((root / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CourseError(
            f"The shipped course-chat checkpoint has no readable manifest ({root / MANIFEST}: {exc}).",
            hint="Restore it from the repository (git checkout -- courselib/data/course-chat).",
        ) from None


def verify(root: Path = SHIPPED_DIR) -> dict[str, Any]:
    """Check every shipped file against its sha256; returns the manifest."""
    manifest = read_manifest(root)
    for name, entry in manifest["files"].items():
        path = root / name
        if not path.is_file():
            bad = "is missing"
        elif sha256(path) != entry["sha256"]:
            bad = "does not match its sha256 in the manifest"
        else:
            continue
        raise CourseError(
            f"The shipped course-chat checkpoint is damaged: {path} {bad}.",
            hint="Restore it from the repository (git checkout -- courselib/data/course-chat); "
            "an edit, a partial copy or a checkout that stopped half-way changes it.",
        )
    return manifest


def install(hf: Path, root: Path = SHIPPED_DIR) -> dict[str, Any]:
    """Verify the shipped checkpoint and write it to ``hf`` as an fp32 HF checkpoint.

    fp32 in the data dir, as every course model: Lab 04 fine-tunes it and Lab 03 measures it
    at the precisions it chooses. Returns the shipped manifest.
    """
    manifest = verify(root)
    torch = require("torch", extra="models")
    safetensors_torch = require("safetensors.torch", package="safetensors", extra="models")
    hf.mkdir(parents=True, exist_ok=True)
    for name in manifest["files"]:
        if name == "model.safetensors":
            tensors = safetensors_torch.load_file(str(root / name))
            fp32 = {k: v.to(torch.float32).contiguous() for k, v in tensors.items()}
            safetensors_torch.save_file(fp32, str(hf / name), metadata={"format": "pt"})
        elif name == "config.json":
            config = json.loads((root / name).read_text())
            config["torch_dtype"] = config["dtype"] = "float32"
            (hf / name).write_text(json.dumps(config, indent=2))
        else:
            shutil.copy2(root / name, hf / name)
    return manifest
