"""Bits per weight of every storage format the course meets (Lab 03).

- Floats: fp32 32, fp16/bf16 16.
- bitsandbytes: int8 (LLM.int8: 8 bits + one fp32 scale per output row), NF4/FP4 in blocks
  of 64 weights with an fp32 absmax per block (4 + 32/64 = 4.5 bits), or with double
  quantisation: the absmaxes quantised to 8 bit with one fp32 constant per 256 of them
  (4 + 8/64 + 32/(64 x 256) = 4.127 bits: it saves 0.373 bits per parameter).
- GGUF (llama.cpp) tensor types at their real size from ``gguf.GGML_QUANT_SIZES``: Q4_0 stores
  32 weights in 18 bytes (4.5 bits), Q4_K 256 in 144 (4.5), Q6_K 6.5625, Q8_0 8.5. A GGUF
  *file type* such as Q4_K_M mixes tensor types: see :mod:`courselib.gguf.mix`.

Example::

    >>> bits_per_weight("nf4-dq"), bits_per_weight("Q8_0"), bytes_per_param("fp16")
    (4.126953125, 8.5, 2.0)
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
}


def normalize(precision: str) -> str:
    """Canonical name: "float16" -> "fp16", "q4_k_m" -> "Q4_K_M", "NF4+DQ" -> "nf4-dq".

    Raises CourseError listing the known names for anything else.
    """
    key = precision.strip().lower().replace("torch.", "")
    key = _ALIASES.get(key, key)
    if key in FLOAT_BITS or key in BNB_BITS:
        return key
    upper = precision.strip().upper()
    if upper in FILE_TYPES or upper in ggml_block_sizes():
        return upper
    raise CourseError(
        f"Unknown precision {precision!r}.",
        hint="Use one of: " + ", ".join([*FLOAT_BITS, *BNB_BITS, *FILE_TYPES]) + ".",
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
    ggml_type = FILE_TYPES.get(name, name)
    block, size = ggml_block_sizes()[ggml_type]
    return size * 8 / block


def bytes_per_param(precision: str) -> float:
    """``bits_per_weight / 8``: fp32 4.0, fp16 2.0, int8 1.0, nf4-dq 0.516."""
    return bits_per_weight(precision) / 8


def kind(precision: str) -> str:
    """ "float", "bnb" (bitsandbytes, transformers) or "gguf" (llama.cpp)."""
    name = normalize(precision)
    if name in FLOAT_BITS:
        return "float"
    return "bnb" if name in BNB_BITS else "gguf"
