"""Inference memory: weights + KV cache + the engine's working buffers (Lab 03).

:class:`Estimate` is the breakdown every part of the estimator returns (inference here,
training in :mod:`courselib.memory.training`); ``total`` is the peak it predicts.

Example (LLaMA-13B in fp16 with a 2048-token context, batch 1)::

    >>> e = estimate_inference("llama-13b", precision="fp16", n_ctx=2048)
    >>> round(e.weights / 1e9, 1), round(e.kv_cache / 2**30, 2)
    (26.0, 1.56)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from courselib.memory import kv
from courselib.memory.configs import Shape, load_config, shape_of
from courselib.memory.precision import kind, normalize
from courselib.memory.weights import weight_bytes

Engine = Literal["llama.cpp", "transformers"]

COMPONENTS = ("weights", "kv_cache", "gradients", "optimizer", "activations", "overhead")
"""The parts of an estimate, in the order tables and charts show them."""


@dataclass(frozen=True)
class Estimate:
    """Bytes by component; ``total`` is their sum (the predicted peak)."""

    model: str
    method: str
    precision: str
    weights: int = 0
    kv_cache: int = 0
    gradients: int = 0
    optimizer: int = 0
    activations: int = 0
    overhead: int = 0
    params: int = 0
    trainable_params: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        return sum(getattr(self, c) for c in COMPONENTS)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for ``--json``): every field plus ``total``."""
        return {**asdict(self), "notes": list(self.notes), "total": self.total}


def config_of(model: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(display name, config dict) of a model name, path or config dict."""
    if isinstance(model, Mapping):
        return str(model.get("_name_or_path") or model.get("model_type", "model")), dict(model)
    return os.path.basename(os.fspath(model).rstrip("/")), load_config(model)


def llama_cpp_compute_bytes(shape: Shape, *, n_ctx: int, n_batch: int = 512) -> int:
    """llama.cpp's compute buffer: the graph of one ``n_batch``-token step, in f32.

    ggml reuses memory between graph nodes, so the buffer is about the largest set of tensors
    alive at once: the logits (n_batch x vocab) or one attention/FFN step (scores for every
    head over the whole cache, FFN activations).
    """
    n_ub = min(n_batch, kv.llama_cpp_cells(n_ctx))
    logits = n_ub * (shape.vocab + shape.hidden)
    attention = n_ub * (shape.heads * kv.llama_cpp_cells(n_ctx) + 3 * shape.hidden)
    ffn = n_ub * (3 * shape.ffn + 2 * shape.hidden)
    return 4 * max(logits, attention, ffn)


def transformers_workspace_bytes(shape: Shape, *, n_ctx: int, batch: int, dtype: str) -> int:
    """Transient tensors of a transformers prefill of ``n_ctx`` tokens (one layer at a time).

    The MLP's gate, up and product (3 x ffn) plus a few hidden-size tensors per token, and the
    last token's logits in fp32.
    """
    per_token = 3 * shape.ffn + 4 * shape.hidden
    elem = 2 if dtype in ("fp16", "bf16") or kind(dtype) == "bnb" else 4
    return batch * n_ctx * per_token * elem + batch * shape.vocab * 4


def estimate_inference(
    model: str | os.PathLike[str] | Mapping[str, Any],
    *,
    precision: str | None = None,
    n_ctx: int = 2048,
    batch: int = 1,
    kv_dtype: str | None = None,
    engine: Engine | None = None,
) -> Estimate:
    """Memory to generate with ``model`` at ``precision`` with ``n_ctx`` tokens of context.

    ``precision``: fp32/fp16/bf16, a bitsandbytes format (int8, nf4, nf4-dq ...) or a GGUF
    file type (Q4_K_M ...); default the checkpoint's dtype. ``engine``: llama.cpp for GGUF
    types, else transformers. ``kv_dtype``: default fp16 (llama.cpp), else the compute dtype.
    """
    name, config = config_of(model)
    shape = shape_of(config)
    precision = normalize(precision or shape.dtype)
    engine = engine or ("llama.cpp" if kind(precision) == "gguf" else "transformers")
    notes: list[str] = []
    if engine == "llama.cpp":
        kv_dtype = kv_dtype or "fp16"
        cells = kv.llama_cpp_cells(n_ctx)
        kv_bytes = kv.kv_cache_bytes(shape, n_ctx=cells, batch=batch, dtype=kv_dtype)
        overhead = llama_cpp_compute_bytes(shape, n_ctx=n_ctx)
        if cells != n_ctx:
            notes.append(f"llama.cpp rounds the KV cache up to {cells} cells.")
    else:
        compute = precision if kind(precision) == "float" else "fp16"
        kv_dtype = kv_dtype or compute
        kv_bytes = kv.kv_cache_bytes(shape, n_ctx=n_ctx, batch=batch, dtype=kv_dtype)
        overhead = transformers_workspace_bytes(shape, n_ctx=n_ctx, batch=batch, dtype=compute)
    from courselib.memory.params import count_params

    count = count_params(config)
    if count.note:
        notes.append(count.note)
    return Estimate(
        model=name,
        method=f"inference ({engine})",
        precision=precision,
        weights=weight_bytes(config, precision=precision),
        kv_cache=kv_bytes,
        overhead=overhead,
        params=count.total,
        notes=tuple(notes),
    )
