"""Read a GGUF file's header: shape, tensor types and sizes, without loading the weights.

``gguf.GGUFReader`` memory-maps the file and parses only the header and tensor table, so this
is cheap even for a 40 GB model. The shape is translated to Hugging Face config keys, so the
estimator treats a .gguf like a checkpoint folder (Lab 03, and the chat backends' preflight).

Example::

    >>> info = read_gguf("course-chat-Q4_K_M.gguf")
    >>> info.config["num_hidden_layers"], info.file_type, info.tensor_types["Q6_K"]
    (4, 'Q4_K_M', 5)
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from courselib.errors import CourseError, require
from courselib.gguf.types import file_type_name


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF header says about the model inside."""

    path: Path
    architecture: str
    file_type: str
    config: dict[str, Any]
    """Shape in Hugging Face config.json keys (hidden_size, num_hidden_layers ...)."""
    tensor_bytes: int
    """Sum of all tensors' data (what llama.cpp maps or loads)."""
    file_bytes: int
    tensor_types: Counter[str] = field(default_factory=Counter)
    """ggml type name -> number of tensors stored in it."""
    n_params: int = 0


def _value(reader, key: str, default: Any = None) -> Any:
    fld = reader.fields.get(key)
    if fld is None:
        return default
    return fld.contents()


GGUF_MAGIC = b"GGUF"


def check_magic(path: Path) -> Path:
    """``path`` if it is a file starting with the GGUF magic bytes, else a CourseError saying
    what it is instead (missing, a folder, a zip such as a renamed PyTorch .bin ...)."""
    if not path.exists():
        raise CourseError(
            f"Model file {path} does not exist.",
            hint="Check the path, or build the course models: python -m courselib models build",
        )
    if path.is_dir():
        raise CourseError(
            f"{path} is a folder, not a GGUF file.",
            hint="Pass the .gguf file, or open a Hugging Face checkpoint folder with "
            "open_backend(folder), which uses transformers.",
        )
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise CourseError(
            f"{path} is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r}).",
            hint="llama.cpp needs a .gguf model: convert the checkpoint with "
            "`python -m courselib models convert`, or pass the right file.",
        )
    return path


def read_gguf(path: str | os.PathLike[str]) -> GGUFInfo:
    """Parse the header of the GGUF file at ``path`` (see the module docstring); a
    CourseError says what is wrong with a missing, foreign or truncated file."""
    gguf = require("gguf", extra="models")
    path = check_magic(Path(path).expanduser())
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, IndexError, AttributeError, OSError) as exc:
        raise CourseError(
            f"{path} starts like a GGUF file but its header cannot be read ({exc}).",
            hint="The file is probably incomplete: copy, build or download it again.",
        ) from None
    arch = _value(reader, "general.architecture", "llama")

    def hp(name: str, default: Any = None) -> Any:
        return _value(reader, f"{arch}.{name}", default)

    tensors = {t.name: t for t in reader.tensors}
    embd = tensors.get("token_embd.weight")
    vocab_list = _value(reader, "tokenizer.ggml.tokens")
    vocab = hp("vocab_size") or (len(vocab_list) if vocab_list else None)
    if vocab is None and embd is not None:
        vocab = int(embd.shape[1])
    hidden = int(hp("embedding_length"))
    heads = int(hp("attention.head_count"))
    config = {
        "_source": f"GGUF header of {path.name}",
        "model_type": arch,
        "hidden_size": hidden,
        "num_hidden_layers": int(hp("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(hp("attention.head_count_kv", heads)),
        "head_dim": int(hp("attention.key_length", hidden // heads)),
        "intermediate_size": int(hp("feed_forward_length", 4 * hidden)),
        "vocab_size": int(vocab or 32000),
        "max_position_embeddings": int(hp("context_length", 2048)),
        "tie_word_embeddings": "output.weight" not in tensors,
        "num_local_experts": int(hp("expert_count", 1)),  # MoE (Mixtral): experts per layer
    }
    ftype = _value(reader, "general.file_type")
    return GGUFInfo(
        path=path,
        architecture=str(arch),
        file_type=file_type_name(ftype),
        config=config,
        tensor_bytes=sum(int(t.n_bytes) for t in reader.tensors),
        file_bytes=path.stat().st_size,
        tensor_types=Counter(t.tensor_type.name for t in reader.tensors),
        n_params=sum(int(t.n_elements) for t in reader.tensors),
    )
