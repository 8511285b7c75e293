"""Bytes of a model's weights at a given precision, exactly as each loader stores them (Lab 03).

- fp32 / fp16 / bf16: every parameter at that width (``P x 4``, ``P x 2``).
- bitsandbytes (transformers ``BitsAndBytesConfig``): only the block matrices are quantized.
  int8 adds one fp32 scale per output row; NF4/FP4 one absmax per 64 weights (fp32, or 8 bit
  with double quantisation). Embeddings, norms, biases and the output head stay in
  ``other_dtype`` (transformers never quantizes ``lm_head``).
- AWQ / GPTQ 4-bit (group size 128): every block matrix as int32-packed 4-bit weights, an
  fp16 scale and a 4-bit zero point per group of 128 input weights and output column, and for
  GPTQ ``g_idx`` (the group of each input row, int32); the rest in fp16, as vLLM loads them.
  A 4096 x 4096 matrix: 8 MiB of weights + 256 KiB of scales + 64 KiB of zeros (+ 16 KiB
  g_idx for GPTQ): 4.156 bits per weight.
- GGUF file types: the per-tensor mix llama.cpp writes (:mod:`courselib.gguf.mix`), for the
  LLaMA-layout architectures llama.cpp runs (llama, mistral, mixtral, qwen2, gemma).

Example::

    >>> weight_bytes(load_config("llama-13b"), precision="fp32") / 1e9     # WizardVicuna fp32
    52.06345728
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from courselib.errors import CourseError
from courselib.gguf import mix as gguf_mix
from courselib.memory.configs import shape_of
from courselib.memory.params import count_params
from courselib.memory.precision import (
    BNB_BITS,
    BNB_BLOCK,
    BNB_DQ_BLOCK,
    FLOAT_BITS,
    GROUP_BITS,
    GROUP_SIZE,
    bytes_per_param,
    kind,
    normalize,
)


def quantized_matrix_bytes(numel: int, out_features: int, *, precision: str) -> int:
    """Bytes of one bitsandbytes-quantized weight matrix (without its bias).

    Example: a 4096 x 4096 matrix in nf4-dq: 8388608 packed + 262144 absmax (8 bit) + 4096
    second-level absmax (1024 fp32) + 1092 per-matrix constants.
    """
    name = normalize(precision)
    if name == "int8":
        return numel + 4 * out_features  # int8 weights + fp32 row scale (SCB)
    blocks = -(-numel // BNB_BLOCK)
    packed = -(-numel // 2)
    code = 16 * 4  # the 16 NF4/FP4 levels in fp32, stored with every matrix
    if name.endswith("-dq"):
        # 8-bit absmax, fp32 constant per 256 of them, their 256-entry code and offset
        return packed + blocks + 4 * -(-blocks // BNB_DQ_BLOCK) + code + 256 * 4 + 4
    return packed + 4 * blocks + code


def group_quant_matrix_bytes(in_features: int, out_features: int, *, precision: str) -> int:
    """Bytes of one AWQ or GPTQ 4-bit matrix (group size 128, without its bias).

    Example: 4096 x 4096 in GPTQ: 8388608 (qweight) + 262144 (fp16 scales, 32 groups x 4096
    columns) + 65536 (4-bit zeros) + 16384 (g_idx) = 8732672 bytes.
    """
    groups = -(-in_features // GROUP_SIZE)
    qweight = in_features * out_features // 2  # 4 bits, packed 8 per int32
    scales = 2 * groups * out_features  # fp16
    zeros = groups * out_features // 2  # 4 bits, packed 8 per int32 (qzeros)
    g_idx = 4 * in_features if normalize(precision) == "gptq" else 0  # int32 per input row
    return qweight + scales + zeros + g_idx


def weight_bytes(
    config: Mapping[str, Any], *, precision: str, other_dtype: str | None = None
) -> int:
    """Bytes of all weights of ``config``'s model stored at ``precision``.

    ``other_dtype``: for bitsandbytes formats, the dtype of what is not quantized (default:
    the checkpoint's dtype, as transformers loads it).
    """
    name = normalize(precision)
    count = count_params(config)
    if name in FLOAT_BITS:
        return int(count.total * bytes_per_param(name))
    if name in BNB_BITS:
        rest = bytes_per_param(other_dtype or shape_of(config).dtype)
        total = (count.embedding + count.lm_head + count.norms) * rest
        for lin in count.linears:
            matrix = quantized_matrix_bytes(
                lin.in_features * lin.out_features, lin.out_features, precision=name
            )
            total += lin.count * (matrix + lin.bias * lin.out_features * rest)
        return int(total)
    if name in GROUP_BITS:  # AWQ / GPTQ: what is not quantized is fp16
        total = (count.embedding + count.lm_head + count.norms) * 2
        for lin in count.linears:
            matrix = group_quant_matrix_bytes(lin.in_features, lin.out_features, precision=name)
            total += lin.count * (matrix + lin.bias * lin.out_features * 2)
        return int(total)
    assert kind(name) == "gguf"
    shape = shape_of(config)
    if shape.model_type not in gguf_mix.LLAMA_LAYOUT:
        raise CourseError(
            f"GGUF sizes are replayed for LLaMA-layout models only, not {shape.model_type!r}.",
            hint="Estimate from a real .gguf file (its header lists every tensor), or use "
            "fp16/bf16/awq/gptq for this model.",
        )
    if name in gguf_mix.FILE_TYPES:
        return gguf_mix.file_tensor_bytes(shape, name)
    # a bare ggml tensor type ("Q6_K"): every matrix in it, norms in F32
    numel_1d = count.norms
    return int((count.total - numel_1d) * bytes_per_param(name)) + 4 * numel_1d
