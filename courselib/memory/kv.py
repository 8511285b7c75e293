"""KV cache size (Lab 03): what a model must keep per token of context to generate the next one.

Every layer stores a key and a value vector per token and per KV head::

    KV bytes = 2 (K and V) x layers x kv_heads x head_dim x bytes per value x tokens x batch

Grouped-query attention (Llama-2-70B, Llama-3: 8 KV heads for 64 query heads) divides it by
heads / kv_heads. llama.cpp allocates the cache for the whole context when the model is
loaded (f16 by default) and rounds the number of cells up (:data:`LLAMA_CPP_CTX_PAD`).

Example (LLaMA-13B, 512 tokens, fp16: llama.cpp prints "KV self size = 400.00 MiB")::

    >>> kv_cache_bytes(shape_of(load_config("llama-13b")), n_ctx=512) / 2**20
    400.0
"""

from __future__ import annotations

from courselib.gguf.types import ggml_tensor_bytes
from courselib.memory.configs import Shape
from courselib.memory.precision import bytes_per_param, kind, normalize

LLAMA_CPP_CTX_PAD = 256
"""llama.cpp rounds the KV cache's cell count up to a multiple of this."""


def kv_bytes_per_token(shape: Shape, *, dtype: str = "fp16") -> int:
    """Bytes of K and V for one token in all layers (batch 1).

    Example: LLaMA-7B fp16: 2 x 32 x 32 x 128 x 2 = 524288 bytes (0.5 MiB per token).
    """
    values = 2 * shape.layers * shape.kv_dim
    name = normalize(dtype)
    if kind(name) == "gguf":  # llama.cpp's quantized caches (q8_0, q4_0) are stored per row
        return shape.layers * 2 * ggml_tensor_bytes(name, shape.kv_dim)
    return int(values * bytes_per_param(name))


def kv_cache_bytes(shape: Shape, *, n_ctx: int, batch: int = 1, dtype: str = "fp16") -> int:
    """KV cache for ``batch`` sequences of ``n_ctx`` tokens, values stored as ``dtype``."""
    return kv_bytes_per_token(shape, dtype=dtype) * n_ctx * batch


def llama_cpp_cells(n_ctx: int) -> int:
    """Cells llama.cpp allocates for a context of ``n_ctx`` tokens (rounded up to the pad)."""
    return -(-n_ctx // LLAMA_CPP_CTX_PAD) * LLAMA_CPP_CTX_PAD
