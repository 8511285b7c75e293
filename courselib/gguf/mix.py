"""Which ggml type llama.cpp gives each tensor of a GGUF file type, and the file's real size.

A "Q4_K_M" file is not 4.5 bits everywhere. llama.cpp's quantizer (``llama_tensor_get_type``
in ``src/llama-quant.cpp``) keeps norms in F32, stores the output head in Q6_K, and gives
``attn_v`` and ``ffn_down`` Q6_K in about half the layers (``use_more_bits``: the first and
last eighth and every third layer between). Every file type has rules of this kind: Q2_K
stores ``attn_v`` in Q4_K with grouped-query attention (Q3_K without), ``ffn_down`` and
``attn_output`` in Q3_K; Q3_K_L stores all three in Q5_K; IQ4_XS gives ``attn_v`` Q5_K with
grouped-query attention and ``ffn_down`` Q5_K in the first eighth of the layers; the 1-2 bit
IQ types keep the token embedding in Q2_K or IQ3_S and the head in Q5_K; Mixtral-style models
(8 experts) get ``attn_v`` and ``attn_k`` in Q8_0. Rows whose length is not a multiple of the
block fall back to another type (Q4_K -> Q5_0, Q6_K -> Q8_0, Q2_K/Q3_K -> Q4_0, IQ -> IQ4_NL).

This module replays those rules (llama.cpp as of 2026, LLaMA-layout models: LLaMA, Mistral,
Mixtral, Qwen2, Gemma; docs/facts.md#gguf-mixes) for files made without an importance matrix,
except the types that cannot be made without one (:data:`~courselib.gguf.types.NEEDS_IMATRIX`).
Qwen2's q/k/v biases (F32, under 0.1 MB per layer) are left out; the Falcon rules are not
replayed. Checked against llama.cpp's quantize table for Llama-3.1-8B (IQ4_XS 4.17 GiB, Q2_K
2.95, Q3_K_S 3.41, Q3_K_L 4.02) and the course's own GGUFs.

Example (LLaMA-7B)::

    >>> round(file_bits_per_weight(shape_of(load_config("llama-7b")), "Q4_K_M"), 2)
    4.84
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from courselib.gguf.types import FILE_TYPES, NEEDS_IMATRIX, ggml_block_sizes, ggml_tensor_bytes

if TYPE_CHECKING:  # the estimator's model shape; only its attributes are read here
    from courselib.memory.configs import Shape

LLAMA_LAYOUT = ("llama", "mistral", "mixtral", "qwen2", "gemma")
"""model_type values whose GGUF has the tensors :func:`llama_tensors` lists."""

GGUF_ALIGNMENT = 32
"""Each tensor's data starts at a multiple of this many bytes (general.alignment default)."""
GGUF_BYTES_PER_TOKEN = 24
"""Tokenizer metadata per vocabulary entry: length-prefixed piece (~8+10 B), score, type."""
GGUF_FIXED_HEADER = 4096
"""Other metadata (hyper-parameters, chat template, names), bytes, rounded up."""

# llama.cpp's tensor_type_fallback: a row length the block does not divide -> this type
_FALLBACK = {
    "Q4_K": "Q5_0",
    "Q5_K": "Q5_1",
    "Q6_K": "Q8_0",
    "Q3_K": "Q4_0",
    "Q2_K": "Q4_0",
    **dict.fromkeys(
        ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_XS"), "IQ4_NL"
    ),
}
# file types whose rules follow the 1-2 bit branch of llama_tensor_get_type
_LOW_BIT = ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M")


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor of a LLaMA-layout GGUF: ``nx`` is the row length (ggml ne[0]); ``nz`` stacks
    the experts of a MoE layer (``ffn_*_exps``)."""

    name: str
    nx: int
    ny: int = 1
    nz: int = 1

    @property
    def numel(self) -> int:
        return self.nx * self.ny * self.nz


def llama_tensors(shape: Shape) -> list[GGUFTensor]:
    """The tensors of a LLaMA-layout GGUF in file order (norms are 1-D)."""
    h, q_dim = shape.hidden, shape.heads * shape.head_dim
    out = [GGUFTensor("token_embd.weight", h, shape.vocab), GGUFTensor("output_norm.weight", h)]
    if not shape.tied:
        out.append(GGUFTensor("output.weight", h, shape.vocab))
    E = shape.experts
    for i in range(shape.layers):
        out += [
            GGUFTensor(f"blk.{i}.attn_norm.weight", h),
            GGUFTensor(f"blk.{i}.attn_q.weight", h, q_dim),
            GGUFTensor(f"blk.{i}.attn_k.weight", h, shape.kv_dim),
            GGUFTensor(f"blk.{i}.attn_v.weight", h, shape.kv_dim),
            GGUFTensor(f"blk.{i}.attn_output.weight", q_dim, h),
            GGUFTensor(f"blk.{i}.ffn_norm.weight", h),
        ]
        if E == 1:
            out += [
                GGUFTensor(f"blk.{i}.ffn_gate.weight", h, shape.ffn),
                GGUFTensor(f"blk.{i}.ffn_up.weight", h, shape.ffn),
                GGUFTensor(f"blk.{i}.ffn_down.weight", shape.ffn, h),
            ]
        else:  # the router (kept in F32) and every expert's MLP stacked in one 3-D tensor
            out += [
                GGUFTensor(f"blk.{i}.ffn_gate_inp.weight", h, E),
                GGUFTensor(f"blk.{i}.ffn_gate_exps.weight", h, shape.ffn, E),
                GGUFTensor(f"blk.{i}.ffn_up_exps.weight", h, shape.ffn, E),
                GGUFTensor(f"blk.{i}.ffn_down_exps.weight", shape.ffn, h, E),
            ]
    return out


def _use_more_bits(i: int, n: int) -> bool:
    # llama.cpp: first and last eighth of the layers, and every third layer in between
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _category(name: str) -> str:
    """llama.cpp's tensor_get_category: output, token_embd, attn_v, ffn_down ..."""
    if name in ("output.weight", "token_embd.weight"):
        return name.removesuffix(".weight")
    for cat in ("attn_v", "attn_k", "attn_q", "attn_output", "ffn_up", "ffn_gate", "ffn_down"):
        if f".{cat}." in name or f".{cat}_exps." in name:
            return cat
    return "other"


def _output_type(ftype: str, base: str, nx: int) -> str:
    if nx % ggml_block_sizes()[base][0] != 0:
        return "Q8_0"
    if ftype in (*_LOW_BIT, "IQ3_XXS"):
        return "Q5_K"
    return base if base == "Q8_0" else "Q6_K"


def _low_bit_type(cat: str, ftype: str, new: str, i: int, n: int, gqa: int, E: int) -> str:
    """The 1-2 bit IQ file types (IQ1_S ... IQ2_M): their own branch of the rules."""
    iq2_sm = ftype in ("IQ2_S", "IQ2_M")
    if cat == "attn_v":
        return "Q4_K" if gqa >= 4 or E >= 4 else ("IQ3_S" if iq2_sm else "Q2_K")
    if cat == "attn_k" and E == 8:
        return "Q4_K"
    if cat == "ffn_down" and i < n // 8:
        return "IQ3_S" if iq2_sm else "Q2_K"
    if cat == "attn_output":
        if E == 8:
            return "Q5_K"
        if ftype in ("IQ1_S", "IQ1_M"):
            return "IQ2_XXS"
        if iq2_sm:
            return "IQ3_S"
    return new


def _attn_v_type(ftype: str, new: str, i: int, n: int, gqa: int, imatrix: bool) -> str:
    if ftype == "Q2_K":
        return "Q4_K" if gqa >= 4 else "Q3_K"
    if ftype == "Q2_K_S" and gqa >= 4:
        return "Q4_K"
    if ftype == "IQ3_XXS":
        return "Q4_K" if gqa >= 4 else ("IQ3_XXS" if imatrix else "IQ3_S")
    if (ftype in ("IQ3_XS", "IQ3_S") and gqa >= 4) or ftype == "IQ3_M":
        return "Q4_K"
    if ftype == "Q3_K_M":
        return "Q5_K" if i < 2 else "Q4_K"
    if ftype == "Q3_K_L" or (ftype in ("IQ4_NL", "IQ4_XS") and gqa >= 4):
        return "Q5_K"
    if ftype in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n):
        return "Q6_K"
    if ftype == "Q4_K_S" and i < 4:
        return "Q5_K"
    return new


def _ffn_down_type(ftype: str, new: str, i: int, n: int, E: int, imatrix: bool) -> str:
    if ftype == "Q2_K":
        return "Q3_K"
    if ftype == "Q2_K_S":
        return "Q4_K" if i < n // 8 else new
    if ftype == "IQ3_XXS" and not imatrix:
        return "Q4_K" if i < n // 8 else "Q3_K"
    if ftype == "Q3_K_M":
        return "Q5_K" if i < n // 16 else "Q4_K"
    if ftype == "IQ3_M" and (i < n // 8 or (E == 8 and _use_more_bits(i, n))):
        return "Q4_K"
    if ftype == "Q3_K_L":
        return "Q5_K"
    if ftype == "Q4_K_M":
        return "Q6_K" if _use_more_bits(i, n) else new
    if i < n // 8 and ftype in ("IQ4_NL", "IQ4_XS") and not imatrix:
        return "Q5_K"
    if ftype == "Q5_K_M" and _use_more_bits(i, n):
        return "Q6_K"
    if ftype == "Q4_K_S" and i < n // 8:
        return "Q5_K"
    if ftype in ("Q4_0", "Q5_0") and imatrix and i < n // 8:
        return "Q4_1" if ftype == "Q4_0" else "Q5_1"
    return new


_ATTN_OUTPUT_MOE_Q5_K = (
    "Q2_K",
    "IQ3_XS",
    "IQ3_XXS",
    "Q3_K_S",
    "Q3_K_M",
    "IQ4_NL",
    "Q4_K_S",
    "Q4_K_M",
    "IQ3_S",
    "IQ3_M",
    "IQ4_XS",
)
_ATTN_OUTPUT = {
    "Q2_K": "Q3_K",
    "IQ3_XXS": "IQ3_S",
    "Q3_K_M": "Q4_K",
    "Q3_K_L": "Q5_K",
    "IQ3_M": "Q4_K",
}


def _pick(t: GGUFTensor, shape: Shape, ftype: str, base: str, imatrix: bool) -> str:
    """llama_tensor_get_type for one quantizable tensor (before the row-length fallback)."""
    cat = _category(t.name)
    i, n = (int(t.name.split(".")[1]), shape.layers) if t.name.startswith("blk.") else (-1, 0)
    gqa, E = shape.heads // shape.kv_heads, shape.experts
    if cat == "output" or (cat == "token_embd" and shape.tied):
        return _output_type(ftype, base, t.nx)
    if cat == "token_embd":
        if ftype in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
            return "Q2_K"
        return "IQ3_S" if ftype in ("IQ2_S", "IQ2_M", "IQ3_XXS") else base
    if ftype in _LOW_BIT:
        return _low_bit_type(cat, ftype, base, i, n, gqa, E)
    if cat == "attn_v":
        new = _attn_v_type(ftype, base, i, n, gqa, imatrix)
        # LLaMA with 80 layers and grouped-query attention is llama.cpp's "70B" model type
        if n == 80 and gqa > 1 and new in ("Q3_K", "Q4_K"):
            new = "Q5_K"
        return "Q8_0" if E == 8 else new
    if cat in ("attn_k", "attn_q"):
        if cat == "attn_k" and E == 8:
            return "Q8_0"
        return {"IQ3_XS": "IQ3_XXS", "IQ3_XXS": "IQ2_S"}.get(ftype, base)
    if cat == "ffn_down":
        return _ffn_down_type(ftype, base, i, n, E, imatrix)
    if cat == "attn_output":
        if E == 8:
            return "Q5_K" if ftype in _ATTN_OUTPUT_MOE_Q5_K else base
        return _ATTN_OUTPUT.get(ftype, base)
    if cat in ("ffn_gate", "ffn_up") and ftype == "IQ3_XS" and n // 8 <= i < 7 * n // 8:
        return "IQ3_XXS"
    return base


def _fallback(ggml_type: str, nx: int) -> str:
    """A type whose block divides the row length ``nx`` (llama.cpp's tensor_type_fallback)."""
    blocks = ggml_block_sizes()
    if nx % blocks[ggml_type][0] == 0:
        return ggml_type
    new = _FALLBACK.get(ggml_type, "F16")
    return new if nx % blocks[new][0] == 0 else "F16"


def tensor_types(shape: Shape, file_type: str, *, imatrix: bool | None = None) -> dict[str, str]:
    """tensor name -> ggml type llama.cpp's quantizer picks for ``file_type`` (e.g. "Q4_K_M").

    ``imatrix``: whether the file was made with an importance matrix (default: only for the
    types that need one); it changes IQ3_XXS, IQ4_NL/IQ4_XS and Q4_0/Q5_0 files a little.

    Example: Llama-3-8B in IQ4_XS: ``attn_v`` Q5_K (4 query heads per KV head), ``ffn_down``
    Q5_K in layers 0-3, ``output`` Q6_K, the rest IQ4_XS.
    """
    ftype = file_type.upper()
    base = FILE_TYPES[ftype]
    quantized = base not in ("F32", "F16", "BF16")
    imatrix = ftype in NEEDS_IMATRIX if imatrix is None else imatrix
    types: dict[str, str] = {}
    for t in llama_tensors(shape):
        if t.ny == 1 or ".ffn_gate_inp." in t.name:
            types[t.name] = "F32"  # norms and MoE routers are never quantized
        elif quantized:
            types[t.name] = _fallback(_pick(t, shape, ftype, base, imatrix), t.nx)
        else:
            types[t.name] = base
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
