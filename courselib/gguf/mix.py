"""Which ggml type llama.cpp gives each tensor of a GGUF file type, and the file's real size.

A "Q4_K_M" file is not 4.5 bits everywhere. llama.cpp's quantizer (``llama_tensor_get_type``
in ``src/llama-quant.cpp``) keeps norms in F32, stores the output head in Q6_K, and gives
``attn_v`` and ``ffn_down`` Q6_K in about half the layers (``use_more_bits``: the first and
last eighth and every third layer between). Rows whose length is not a multiple of the block
fall back to a legacy type (Q4_K -> Q5_0, Q6_K -> Q8_0). This module replays those rules for
the file types the course uses, so the estimate of a file's size is within a fraction of a
percent (Lab 03 checks it against the course GGUFs). The IQ/Q2/Q3 types, MoE and Falcon
special cases are not replayed.

Example (LLaMA-7B)::

    >>> round(file_bits_per_weight(shape_of(load_config("llama-7b")), "Q4_K_M"), 2)
    4.84
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from courselib.gguf.types import FILE_TYPES, ggml_block_sizes, ggml_tensor_bytes

if TYPE_CHECKING:  # the estimator's model shape; only its attributes are read here
    from courselib.memory.configs import Shape

GGUF_ALIGNMENT = 32
"""Each tensor's data starts at a multiple of this many bytes (general.alignment default)."""
GGUF_BYTES_PER_TOKEN = 24
"""Tokenizer metadata per vocabulary entry: length-prefixed piece (~8+10 B), score, type."""
GGUF_FIXED_HEADER = 4096
"""Other metadata (hyper-parameters, chat template, names), bytes, rounded up."""

_K_FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0", "Q3_K": "IQ4_NL", "Q2_K": "IQ4_NL"}


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor of a LLaMA-layout GGUF: ``nx`` is the row length (ggml ne[0])."""

    name: str
    nx: int
    ny: int = 1

    @property
    def numel(self) -> int:
        return self.nx * self.ny


def llama_tensors(shape: Shape) -> list[GGUFTensor]:
    """The tensors of a LLaMA-layout GGUF in file order (norms are 1-D)."""
    h, q_dim = shape.hidden, shape.heads * shape.head_dim
    out = [GGUFTensor("token_embd.weight", h, shape.vocab), GGUFTensor("output_norm.weight", h)]
    if not shape.tied:
        out.append(GGUFTensor("output.weight", h, shape.vocab))
    for i in range(shape.layers):
        out += [
            GGUFTensor(f"blk.{i}.attn_norm.weight", h),
            GGUFTensor(f"blk.{i}.attn_q.weight", h, q_dim),
            GGUFTensor(f"blk.{i}.attn_k.weight", h, shape.kv_dim),
            GGUFTensor(f"blk.{i}.attn_v.weight", h, shape.kv_dim),
            GGUFTensor(f"blk.{i}.attn_output.weight", q_dim, h),
            GGUFTensor(f"blk.{i}.ffn_norm.weight", h),
            GGUFTensor(f"blk.{i}.ffn_gate.weight", h, shape.ffn),
            GGUFTensor(f"blk.{i}.ffn_up.weight", h, shape.ffn),
            GGUFTensor(f"blk.{i}.ffn_down.weight", shape.ffn, h),
        ]
    return out


def _use_more_bits(i: int, n: int) -> bool:
    # llama.cpp: first and last eighth of the layers, and every third layer in between
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def tensor_types(shape: Shape, file_type: str) -> dict[str, str]:
    """tensor name -> ggml type llama.cpp's quantizer picks for ``file_type`` (e.g. "Q4_K_M")."""
    ftype = file_type.upper()
    base = FILE_TYPES[ftype]
    quantized = base not in ("F32", "F16", "BF16")
    # LLaMA with 80 layers and grouped-query attention is llama.cpp's "70B" model type
    is_70b = shape.layers == 80 and shape.kv_heads < shape.heads
    types: dict[str, str] = {}
    for t in llama_tensors(shape):
        if t.ny == 1:
            types[t.name] = "F32"  # 1-D tensors (norms) are never quantized
            continue
        new = base
        layer = int(t.name.split(".")[1]) if t.name.startswith("blk.") else -1
        if quantized:
            if t.name == "output.weight" or (shape.tied and t.name == "token_embd.weight"):
                if t.nx % ggml_block_sizes()[base][0] != 0:
                    new = "Q8_0"
                elif new != "Q8_0":
                    new = "Q6_K"
            elif ".attn_v." in t.name:
                if ftype in ("Q4_K_M", "Q5_K_M") and _use_more_bits(layer, shape.layers):
                    new = "Q6_K"
                elif ftype == "Q4_K_S" and layer < 4:
                    new = "Q5_K"
                if is_70b and new in ("Q3_K", "Q4_K"):
                    new = "Q5_K"
            elif ".ffn_down." in t.name:
                if ftype in ("Q4_K_M", "Q5_K_M") and _use_more_bits(layer, shape.layers):
                    new = "Q6_K"
                elif ftype == "Q4_K_S" and layer < shape.layers // 8:
                    new = "Q5_K"
            if new in _K_FALLBACK and t.nx % 256 != 0:
                new = _K_FALLBACK[new]
        types[t.name] = new
    return types


def tensor_type_counts(shape: Shape, file_type: str) -> Counter[str]:
    """How many tensors of each ggml type (compare with a real file's header)."""
    return Counter(tensor_types(shape, file_type).values())


def file_tensor_bytes(shape: Shape, file_type: str) -> int:
    """Bytes of all tensor data of a ``file_type`` GGUF (with per-tensor alignment padding)."""
    types = tensor_types(shape, file_type)
    total = 0
    for t in llama_tensors(shape):
        n = ggml_tensor_bytes(types[t.name], t.numel)
        total += -(-n // GGUF_ALIGNMENT) * GGUF_ALIGNMENT
    return total


def file_bytes(shape: Shape, file_type: str) -> int:
    """Estimated size of the whole GGUF file: tensor data + tensor table + metadata."""
    tensors = llama_tensors(shape)
    table = sum(8 + len(t.name) + 4 + 8 * 2 + 4 + 8 for t in tensors)
    meta = GGUF_FIXED_HEADER + GGUF_BYTES_PER_TOKEN * shape.vocab
    return file_tensor_bytes(shape, file_type) + table + meta


def file_bits_per_weight(shape: Shape, file_type: str) -> float:
    """Average bits per weight over the tensor data of a ``file_type`` file."""
    numel = sum(t.numel for t in llama_tensors(shape))
    return file_tensor_bytes(shape, file_type) * 8 / numel
