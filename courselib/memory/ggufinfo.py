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

# general.file_type (llama_ftype) -> name; the course's quants and their neighbours
_FTYPE_NAMES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    32: "BF16",
}


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


def read_gguf(path: str | os.PathLike[str]) -> GGUFInfo:
    """Parse the header of the GGUF file at ``path`` (see the module docstring)."""
    gguf = require("gguf", extra="models")
    path = Path(path)
    if not path.is_file():
        raise CourseError(
            f"GGUF file {path} does not exist.",
            hint="Check the path, or build the course models: python -m courselib models build",
        )
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError) as exc:
        raise CourseError(
            f"{path} is not a readable GGUF file ({exc}).",
            hint="The download or conversion may be incomplete: rebuild or re-download it.",
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
    }
    ftype = _value(reader, "general.file_type")
    return GGUFInfo(
        path=path,
        architecture=str(arch),
        file_type=_FTYPE_NAMES.get(ftype, f"ftype {ftype}") if ftype is not None else "unknown",
        config=config,
        tensor_bytes=sum(int(t.n_bytes) for t in reader.tensors),
        file_bytes=path.stat().st_size,
        tensor_types=Counter(t.tensor_type.name for t in reader.tensors),
        n_params=sum(int(t.n_elements) for t in reader.tensors),
    )
