"""Bits per weight of every storage format the course meets (Lab 03).

- Floats: fp32 32, fp16/bf16 16.
- bitsandbytes: int8 (LLM.int8: 8 bits + one fp32 scale per output row), NF4/FP4 in blocks
  of 64 weights with an fp32 absmax per block (4 + 32/64 = 4.5 bits), or with double
  quantisation: the absmaxes quantised to 8 bit with one fp32 constant per 256 of them
  (4 + 8/64 + 32/(64 x 256) = 4.127 bits: it saves 0.373 bits per parameter).
- AWQ and GPTQ 4-bit (what vLLM serves a 13B in on one GPU), group size 128. Per group of
  128 input weights of one output column: 128 x 4-bit weights (64 B), one fp16 scale (2 B)
  and one 4-bit zero point (0.5 B, packed 8 to an int32 ``qzeros`` word):
  4 + (16 + 4) / 128 = 4.15625 bits per weight. GPTQ checkpoints add ``g_idx`` (one int32 per
  input row, see :mod:`~courselib.memory.weights`); embeddings, head and norms stay fp16
  (docs/facts.md#awq-gptq).
- GGUF (llama.cpp) tensor types at their real size from ``gguf.GGML_QUANT_SIZES``: Q4_0 stores
  32 weights in 18 bytes (4.5 bits), Q4_K 256 in 144 (4.5), Q6_K 6.5625, Q8_0 8.5, IQ4_XS
  4.25. A GGUF *file type* such as Q4_K_M mixes tensor types: see :mod:`courselib.gguf.mix`.
  Written exactly as llama.cpp does, ``F32``/``F16``/``BF16`` are GGUF file types too (served
  by llama.cpp); ``fp16``, ``f16`` or ``float16`` are the torch dtype.

Example::

    >>> bits_per_weight("nf4-dq"), bits_per_weight("Q8_0"), bytes_per_param("fp16")
    (4.126953125, 8.5, 2.0)
    >>> bits_per_weight("gptq"), kind("F16"), kind("f16")
    (4.15625, 'gguf', 'float')
"""

from __future__ import annotations

from courselib.errors import CourseError
from courselib.gguf.types import FILE_TYPES, ggml_block_sizes

FLOAT_BITS = {"fp32": 32, "fp16": 16, "bf16": 16}
"""Plain floating-point formats: bits per weight."""

BNB_BLOCK = 64
"""bitsandbytes 4-bit block size (weights per absmax)."""
BNB_DQ_BLOCK = 256
"""Double quantisation: absmaxes per second-level fp32 constant."""

BNB_BITS = {
    "int8": 8.0,
    "nf4": 4 + 32 / BNB_BLOCK,
    "fp4": 4 + 32 / BNB_BLOCK,
    "nf4-dq": 4 + 8 / BNB_BLOCK + 32 / (BNB_BLOCK * BNB_DQ_BLOCK),
    "fp4-dq": 4 + 8 / BNB_BLOCK + 32 / (BNB_BLOCK * BNB_DQ_BLOCK),
}
"""bitsandbytes formats, bits per weight of a quantized matrix (int8 without its row scales)."""

GROUP_SIZE = 128
"""AWQ / GPTQ: input weights per (scale, zero point) pair, the common ``group_size``."""

GROUP_BITS = {
    "awq": 4 + (16 + 4) / GROUP_SIZE,  # 4-bit weight + fp16 scale and 4-bit zero per group
    "gptq": 4 + (16 + 4) / GROUP_SIZE,  # the same, plus g_idx per input row (weights.py)
}
"""Group-wise 4-bit formats of GPU servers, bits per weight of a quantized matrix."""

GGUF_FLOATS = ("F32", "F16", "BF16")
"""GGUF file types that are plain floats: spelled this way they mean the llama.cpp file."""

_ALIASES = {
    "float32": "fp32",
    "f32": "fp32",
    "float16": "fp16",
    "f16": "fp16",
    "half": "fp16",
    "bfloat16": "bf16",
    "8bit": "int8",
    "llm.int8": "int8",
    "4bit": "nf4",
    "nf4+dq": "nf4-dq",
    "fp4+dq": "fp4-dq",
    "qlora": "nf4-dq",
    "awq-4bit": "awq",
    "gptq-4bit": "gptq",
}


def normalize(precision: str) -> str:
    """Canonical name: "float16" -> "fp16", "q4_k_m" -> "Q4_K_M", "NF4+DQ" -> "nf4-dq".

    Raises CourseError listing the known names for anything else.
    """
    if precision.strip() in GGUF_FLOATS:
        return precision.strip()
    key = precision.strip().lower().replace("torch.", "")
    key = _ALIASES.get(key, key)
    if key in FLOAT_BITS or key in BNB_BITS or key in GROUP_BITS:
        return key
    upper = precision.strip().upper()
    if upper in FILE_TYPES or upper in ggml_block_sizes():
        return upper
    raise CourseError(
        f"Unknown precision {precision!r}.",
        hint="Use one of: " + ", ".join([*FLOAT_BITS, *BNB_BITS, *GROUP_BITS, *FILE_TYPES]) + ".",
    )


def bits_per_weight(precision: str) -> float:
    """Bits one weight of a big matrix costs in ``precision`` (a GGUF file type: its main type).

    Example: ``bits_per_weight("Q4_K_M") == 4.5`` (most tensors are Q4_K; the file as a whole
    is larger, see :func:`courselib.gguf.mix.file_bits_per_weight`).
    """
    name = normalize(precision)
    if name in FLOAT_BITS:
        return float(FLOAT_BITS[name])
    if name in BNB_BITS:
        return BNB_BITS[name]
    if name in GROUP_BITS:
        return GROUP_BITS[name]
    ggml_type = FILE_TYPES.get(name, name)
    block, size = ggml_block_sizes()[ggml_type]
    return size * 8 / block


def bytes_per_param(precision: str) -> float:
    """``bits_per_weight / 8``: fp32 4.0, fp16 2.0, int8 1.0, nf4-dq 0.516."""
    return bits_per_weight(precision) / 8


def kind(precision: str) -> str:
    """ "float", "bnb" (bitsandbytes), "group" (AWQ/GPTQ) or "gguf" (llama.cpp)."""
    name = normalize(precision)
    if name in FLOAT_BITS:
        return "float"
    if name in BNB_BITS:
        return "bnb"
    return "group" if name in GROUP_BITS else "gguf"
