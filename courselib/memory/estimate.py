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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from courselib.memory import kv
from courselib.memory.configs import Shape, legacy_notes, load_config, shape_of
from courselib.memory.precision import kind, normalize
from courselib.memory.weights import weight_bytes

if TYPE_CHECKING:
    from courselib.gguf.read import GGUFInfo

Engine = Literal["llama.cpp", "transformers", "vllm"]

COMPONENTS = ("weights", "kv_cache", "gradients", "optimizer", "activations", "overhead")
"""The parts of an estimate, in the order tables and charts show them."""


@dataclass(frozen=True)
class Estimate:
    """Bytes by component; ``total`` (the predicted peak) is their sum minus ``overlap``."""

    model: str
    method: str
    precision: str
    weights: int = 0
    kv_cache: int = 0
    gradients: int = 0
    optimizer: int = 0
    activations: int = 0
    overhead: int = 0
    overlap: int = 0
    """Memory counted twice above: training frees activations while it fills gradients."""
    params: int = 0
    trainable_params: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        return sum(getattr(self, c) for c in COMPONENTS) - self.overlap

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for ``--json``): every field plus ``total``."""
        return {**asdict(self), "notes": list(self.notes), "total": self.total}


def config_of(model: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(display name, config dict) of a model name, path or config dict."""
    if isinstance(model, Mapping):
        return str(model.get("_name_or_path") or model.get("model_type", "model")), dict(model)
    return model_name(model), load_config(model)


def model_name(path: str | os.PathLike[str]) -> str:
    """A model's name from its path: the folder's (or file's) name; in a Hugging Face hub cache
    (``models--Org--Name/snapshots/<revision>``), the repository's ``Name``, not the revision.

    >>> model_name("/hub/models--TheBloke--wizard-vicuna-13B-AWQ/snapshots/3f2a9c")
    'wizard-vicuna-13B-AWQ'
    """
    p = Path(os.fspath(path).rstrip("/"))
    if p.parent.name == "snapshots" and p.parent.parent.name.startswith("models--"):
        return p.parent.parent.name.split("--")[-1]
    return p.name


def _gguf_path(model: str | os.PathLike[str] | Mapping[str, Any]) -> GGUFInfo | None:
    """The header of ``model`` when it is a .gguf file, else None."""
    if isinstance(model, Mapping) or not os.fspath(model).endswith(".gguf"):
        return None
    from courselib.gguf.read import read_gguf

    return read_gguf(model) if os.path.isfile(model) else None


def llama_cpp_compute_bytes(shape: Shape, *, n_ctx: int, n_batch: int = 512) -> int:
    """llama.cpp's compute buffer: the graph of one ``n_batch``-token step, in f32.

    ggml reuses memory between graph nodes, so the buffer holds the largest set of tensors
    alive at once. Without flash attention (llama.cpp's choice on CPU) that is the attention
    step: scores for every head over the whole cache plus the mask (``n_kv x (heads + 1)``)
    and the layer's hidden, Q, K, V vectors (``5h + 2 kv_dim``), for each of the ``n_ubatch``
    tokens; with a big vocabulary, the logits (``n_ubatch x vocab``). Fitted to llama.cpp
    0.3.36's log on LLaMA shapes from 2 to 12 layers, 256 to 4096 cells: within 0.1 MiB.
    """
    cells = kv.llama_cpp_cells(n_ctx)
    n_ub = min(n_batch, n_ctx)  # llama-cpp-python: n_batch = min(n_ctx, 512) = n_ubatch
    attention = cells * (shape.heads + 1) + 5 * shape.hidden + 2 * shape.kv_dim
    logits = shape.vocab + shape.hidden
    ffn = 2 * shape.ffn + 3 * shape.hidden
    return 4 * n_ub * max(attention, logits, ffn)


LLAMA_CPP_RUNTIME_BYTES = 4 * 2**20
"""llama-cpp-python's fixed cost beyond its buffers: library code paged in, thread pool,
small allocations (measured: about 4 MiB whatever the model)."""


def llama_cpp_overhead_bytes(shape: Shape, *, n_ctx: int, n_batch: int = 512) -> int:
    """Everything llama-cpp-python allocates besides weights and KV cache: the compute buffer,
    ggml's matmul work buffer (the attention weights converted to f16 to multiply with the f16
    V cache: ``heads x n_kv x n_ubatch x 2`` bytes), the logits array (``n_batch x vocab``
    floats, ``Llama._scores``) and the fixed runtime.

    Checked against RSS after filling the context: course-chat and course-bench, 512 and 2048
    tokens, within 3%.
    """
    n_ub = min(n_batch, n_ctx)
    work = 2 * shape.heads * kv.llama_cpp_cells(n_ctx) * n_ub
    return (
        llama_cpp_compute_bytes(shape, n_ctx=n_ctx, n_batch=n_batch)
        + work
        + 4 * n_ub * shape.vocab
        + LLAMA_CPP_RUNTIME_BYTES
    )


TRANSFORMERS_RUNTIME_BYTES = 10 * 2**20
"""A loaded transformers model's cost beyond its tensors: module objects, config, loader
state (measured: 9.9 MiB for a 5 MB model, 11.2 MiB for course-bench's 625 MB)."""


def transformers_workspace_bytes(shape: Shape, *, n_ctx: int, batch: int, dtype: str) -> int:
    """Transient tensors of a transformers prefill of ``n_ctx`` tokens (one layer at a time).

    The MLP's gate, up and product (3 x ffn) plus a few hidden-size tensors per token, the
    last token's logits in fp32, and the fixed :data:`TRANSFORMERS_RUNTIME_BYTES`.
    """
    per_token = 3 * shape.ffn + 4 * shape.hidden
    elem = 2 if dtype in ("fp16", "bf16") or kind(dtype) == "bnb" else 4
    return batch * n_ctx * per_token * elem + batch * shape.vocab * 4 + TRANSFORMERS_RUNTIME_BYTES


VLLM_BLOCK_TOKENS = 16
"""vLLM's KV cache page (``--block-size``): a sequence holds whole pages of 16 tokens."""
VLLM_MAX_BATCHED_TOKENS = 2048
"""Tokens vLLM's OpenAI server runs through the model in one step (chunked prefill's
``--max-num-batched-tokens`` default); its start-up profile run measures this step's peak."""
VLLM_RUNTIME_BYTES = 2**30
"""vLLM's fixed cost per GPU besides weights, activations and KV cache: CUDA context, cuBLAS
and NCCL workspaces, captured CUDA graphs (an allowance: vLLM logs 0.3-1 GiB for the graphs)."""


def vllm_overhead_bytes(
    shape: Shape, *, max_seqs: int, dtype: str, tensor_parallel: int = 1
) -> int:
    """vLLM's memory per GPU besides weights and KV cache (docs/facts.md#vllm-memory).

    The profile step's activations (:data:`VLLM_MAX_BATCHED_TOKENS` tokens through the widest
    layer: fused gate+up, the activation, q/k/v and a few hidden-size tensors, split over the
    ``tensor_parallel`` GPUs), the sampler's fp32 logits and probabilities for ``max_seqs``
    sequences, and :data:`VLLM_RUNTIME_BYTES`.

    Example: LLaMA-13B fp16, 16 sequences: 2048 x (3 x 13824 + 7 x 5120) x 2 B + 2 x 16 x
    32000 x 4 B + 1 GiB, about 1.30 GiB.
    """
    elem = 4 if dtype == "fp32" else 2  # AWQ/GPTQ compute in fp16
    q_dim = shape.heads * shape.head_dim
    per_token = 3 * shape.ffn + 4 * shape.hidden + q_dim + 2 * shape.kv_dim
    activations = VLLM_MAX_BATCHED_TOKENS * per_token * elem // tensor_parallel
    sampler = 2 * max_seqs * shape.vocab * 4
    return activations + sampler + VLLM_RUNTIME_BYTES


def estimate_inference(
    model: str | os.PathLike[str] | Mapping[str, Any],
    *,
    precision: str | None = None,
    n_ctx: int = 2048,
    batch: int = 1,
    kv_dtype: str | None = None,
    engine: Engine | None = None,
    tensor_parallel: int = 1,
) -> Estimate:
    """Memory to generate with ``model`` at ``precision`` with ``n_ctx`` tokens of context.

    ``precision``: fp32/fp16/bf16, a bitsandbytes format (int8, nf4, nf4-dq ...), AWQ/GPTQ
    4-bit or a GGUF file type (Q4_K_M ..., F16); default the checkpoint's dtype. ``engine``:
    llama.cpp for GGUF types, vLLM for AWQ/GPTQ, else transformers. ``kv_dtype``: default
    fp16 (llama.cpp), else the compute dtype. ``batch`` sequences of ``n_ctx`` tokens each.

    vLLM (the class server): the KV cache in whole 16-token pages, the overhead of
    :func:`vllm_overhead_bytes`; with ``tensor_parallel`` N the estimate is per GPU: weights
    and KV heads split N ways (a KV head is never split: with fewer KV heads than GPUs each
    GPU keeps one).

    Example: ``estimate_inference("llama-13b", precision="awq", engine="vllm",
    n_ctx=2048, batch=16).weights`` is about 7.25e9 bytes.
    """
    name, config = config_of(model)
    shape = shape_of(config)
    notes: list[str] = legacy_notes(config)
    gguf_file = _gguf_path(model)
    if gguf_file is not None and precision in (None, gguf_file.file_type):
        # a GGUF file: its own tensors, whatever mix or architecture made them
        precision, engine = gguf_file.file_type, engine or "llama.cpp"
        weights = gguf_file.tensor_bytes
        notes.append(f"Weights: the tensor bytes listed in {gguf_file.path.name}'s header.")
    else:
        precision = normalize(precision or shape.dtype)
        default_engine: dict[str, Engine] = {"gguf": "llama.cpp", "group": "vllm"}
        engine = engine or default_engine.get(kind(precision), "transformers")
        weights = weight_bytes(config, precision=precision)
    if engine == "vllm":
        compute = precision if precision in ("fp32", "bf16") else "fp16"
        kv_dtype = kv_dtype or compute
        tokens = -(-n_ctx // VLLM_BLOCK_TOKENS) * VLLM_BLOCK_TOKENS
        kv_heads_per_gpu = -(-shape.kv_heads // tensor_parallel)
        full_kv = kv.kv_cache_bytes(shape, n_ctx=tokens, batch=batch, dtype=kv_dtype)
        kv_bytes = full_kv * kv_heads_per_gpu // shape.kv_heads
        weights = -(-weights // tensor_parallel)
        overhead = vllm_overhead_bytes(
            shape, max_seqs=batch, dtype=compute, tensor_parallel=tensor_parallel
        )
        if tensor_parallel > 1:
            notes.append(f"Per GPU, tensor parallel over {tensor_parallel} GPUs.")
    elif engine == "llama.cpp":
        kv_dtype = kv_dtype or "fp16"
        cells = kv.llama_cpp_cells(n_ctx)
        kv_bytes = kv.kv_cache_bytes(shape, n_ctx=cells, batch=batch, dtype=kv_dtype)
        overhead = llama_cpp_overhead_bytes(shape, n_ctx=n_ctx)
        if cells != n_ctx:
            notes.append(f"llama.cpp rounds the KV cache up to {cells} cells.")
    else:
        compute = precision if kind(precision) == "float" else "fp16"
        kv_dtype = kv_dtype or compute
        kv_bytes = kv.kv_cache_bytes(shape, n_ctx=n_ctx, batch=batch, dtype=kv_dtype)
        overhead = transformers_workspace_bytes(shape, n_ctx=n_ctx, batch=batch, dtype=compute)
    from courselib.memory.params import count_params

    return Estimate(
        model=name,
        method=f"inference ({engine})",
        precision=precision,
        weights=weights,
        kv_cache=kv_bytes,
        overhead=overhead,
        params=count_params(config).total,
        notes=tuple(notes),
    )
