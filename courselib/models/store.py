"""Where built course models live, and how a model reference becomes a path (every lab).

Layout under the data dir (``COURSELAB_DATA_DIR``, see courselib.settings)::

    models/<name>/manifest.json        what was built, from which inputs, file sizes, accuracy
    models/<name>/hf/                  Hugging Face checkpoint (config, safetensors, tokenizer)
    models/<name>/<name>-<QUANT>.gguf  F32, F16, Q8_0, Q4_0, Q4_K_M

A model reference is what a student types::

    "course-chat"          -> .../course-chat-Q4_K_M.gguf   (the 4-bit default)
    "course-chat:Q8_0"     -> .../course-chat-Q8_0.gguf
    "course-chat:hf"       -> .../course-chat/hf/
    "/path/llama-7b.gguf"  -> itself (any existing file or folder)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from courselib import settings
from courselib.errors import CourseError
from courselib.models.specs import COURSE_MODELS, QUANTS

DEFAULT_QUANT = "Q4_K_M"


def models_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    return settings.data_dir(data_dir) / "models"


def model_root(name: str, *, data_dir: str | os.PathLike[str] | None = None) -> Path:
    _check_name(name)
    return models_root(data_dir) / name


def read_manifest(
    name: str, *, data_dir: str | os.PathLike[str] | None = None
) -> dict[str, Any] | None:
    """The manifest of a built model, or None if it was never (completely) built."""
    path = model_root(name, data_dir=data_dir) / "manifest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def _require_built(name: str, data_dir) -> Path:
    root = model_root(name, data_dir=data_dir)
    if read_manifest(name, data_dir=data_dir) is None:
        raise CourseError(
            f"The course model '{name}' is not built yet (looked in {root}).",
            hint="Run `python -m courselib models build` (or `make models`) once; it takes a few minutes.",
        )
    return root


def hf_dir(name: str = "course-chat", *, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The Hugging Face checkpoint folder of a built course model.

    Example: ``AutoModelForCausalLM.from_pretrained(hf_dir("course-chat"))``
    """
    return _require_built(name, data_dir) / "hf"


def gguf_file(
    name: str = "course-chat",
    quant: str = DEFAULT_QUANT,
    *,
    data_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The GGUF file of a built course model at one quantization (F32 ... Q4_K_M).

    Example: ``Llama(str(gguf_file("course-chat", "Q4_K_M")))``
    """
    if quant not in QUANTS:
        raise CourseError(
            f"The course models have no {quant!r} file.", hint=f"Choose one of {', '.join(QUANTS)}."
        )
    return _require_built(name, data_dir) / f"{name}-{quant}.gguf"


def resolve_model_ref(
    ref: str | os.PathLike[str], *, data_dir: str | os.PathLike[str] | None = None
) -> Path:
    """Turn a model reference (see the module docstring) into an existing path."""
    text = str(ref)
    name, _, variant = text.partition(":")
    if name in COURSE_MODELS and "/" not in text:
        if variant == "hf":
            return hf_dir(name, data_dir=data_dir)
        return gguf_file(name, variant or DEFAULT_QUANT, data_dir=data_dir)
    path = Path(text).expanduser()
    if path.exists():
        return path
    raise CourseError(
        f"Model '{text}' not found: it is neither an existing file or folder nor a course model.",
        hint=f"Give a path to a .gguf file or an HF checkpoint folder, or one of "
        f"{', '.join(COURSE_MODELS)} (optionally with :{'|:'.join(QUANTS)}|:hf).",
    )


def _check_name(name: str) -> None:
    if name not in COURSE_MODELS:
        raise CourseError(
            f"There is no course model called {name!r}.",
            hint=f"Choose one of {', '.join(COURSE_MODELS)}.",
        )
