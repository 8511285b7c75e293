"""Estimates next to measurements: the error table of Lab 03 and ``bench/bench_memory.py``.

Each ``compare_*`` function measures one thing on real files (each load in a fresh process,
see :mod:`courselib.measure.memory`) and returns :class:`Row` s; :func:`error_table` turns
them into a DataFrame with the relative error and whether it is within 10%.

Example::

    >>> rows = compare_weights(hf_dir("course-chat"), precisions=("fp32", "nf4-dq"))
    >>> error_table(rows)[["quantity", "estimate", "measured", "error %"]]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypedDict

from courselib.errors import require
from courselib.gguf import mix as gguf_mix
from courselib.measure.memory import run
from courselib.memory import kv
from courselib.memory.configs import load_config, shape_of
from courselib.memory.estimate import llama_cpp_compute_bytes
from courselib.memory.preflight import estimate_load_bytes
from courselib.memory.training import Method, estimate_training
from courselib.memory.weights import weight_bytes

TOLERANCE = 0.10
"""The estimator's target: within 10% of every measurement (or a note why not)."""


@dataclass(frozen=True)
class Row:
    """One quantity, estimated and measured, in bytes."""

    group: str
    quantity: str
    estimate: int
    measured: int
    how: str
    """How it was measured."""
    note: str = ""

    @property
    def error(self) -> float:
        """estimate / measured - 1 (positive: the estimate is too high)."""
        return self.estimate / self.measured - 1


def compare_weights(
    hf: str | os.PathLike[str],
    *,
    precisions: Iterable[str] = ("fp32", "fp16", "bf16", "int8", "nf4", "nf4-dq", "fp4"),
    other_dtype: str = "bf16",
) -> list[Row]:
    """Load the checkpoint at each precision; compare the weight estimate with its tensors."""
    config = load_config(hf)
    rows = []
    for p in precisions:
        m = run("hf_weights", model_dir=str(hf), precision=p, other_dtype=other_dtype)
        est = weight_bytes(config, precision=p, other_dtype=other_dtype)
        rows.append(Row("weights (transformers)", p, est, m["tensor_bytes"], "tensor bytes"))
        note = ""
        if m["footprint"] != m["tensor_bytes"]:
            note = "get_memory_footprint() leaves out bitsandbytes' absmax / row scales."
        rows.append(
            Row("weights (transformers)", p, est, m["footprint"], "get_memory_footprint", note)
        )
    return rows


def compare_gguf(ggufs: Mapping[str, str | os.PathLike[str]]) -> list[Row]:
    """File size of each GGUF (quant -> path) against the estimate from its shape alone."""
    from courselib.gguf.read import read_gguf

    rows = []
    for quant, path in ggufs.items():
        info = read_gguf(path)
        shape = shape_of(info.config)
        predicted = gguf_mix.tensor_type_counts(shape, quant)
        same = (
            ""
            if predicted == info.tensor_types
            else f"tensor types differ: {dict(info.tensor_types)}"
        )
        rows.append(
            Row(
                "GGUF file",
                quant,
                gguf_mix.file_bytes(shape, quant),
                info.file_bytes,
                "file size",
                same,
            )
        )
    return rows


def compare_kv(
    hf: str | os.PathLike[str],
    gguf: str | os.PathLike[str] | None = None,
    *,
    n_ctx: int = 512,
    n_tokens: int = 128,
    threads: int = 2,
) -> list[Row]:
    """KV cache: transformers' cache after a prefill, llama.cpp's own log; llama.cpp's compute
    buffer and the RSS a load + short generation added, against the preflight estimate."""
    shape = shape_of(load_config(hf))
    rows = [
        Row(
            "KV cache",
            f"transformers fp32, {n_tokens} tokens",
            kv.kv_cache_bytes(shape, n_ctx=n_tokens, dtype="fp32"),
            run("hf_kv_cache", model_dir=str(hf), n_tokens=n_tokens),
            "DynamicCache tensors",
        )
    ]
    if gguf is None:
        return rows
    m = run("llama_cpp_load", gguf_path=str(gguf), n_ctx=n_ctx, threads=threads)
    cells = kv.llama_cpp_cells(n_ctx)
    rows.append(
        Row(
            "KV cache",
            f"llama.cpp f16, n_ctx={n_ctx}",
            kv.kv_cache_bytes(shape, n_ctx=cells),
            m["kv_bytes"],
            "llama.cpp log",
            f"{m['kv_cells']} cells" if m["kv_cells"] != n_ctx else "",
        )
    )
    rows.append(
        Row(
            "llama.cpp",
            f"compute buffer, n_ctx={n_ctx}",
            llama_cpp_compute_bytes(shape, n_ctx=n_ctx),
            m["compute_bytes"],
            "llama.cpp log",
            "ggml's allocator reuses memory between graph nodes: we estimate the largest step.",
        )
    )
    repack = m["repack_bytes"]
    rows.append(
        Row(
            "llama.cpp",
            f"load + {n_ctx - 1}-token prompt, {Path(gguf).name}",
            estimate_load_bytes(gguf, n_ctx=n_ctx),
            m["rss_added"] - repack,
            "RSS added" + (" - repacked copy" if repack else ""),
            f"llama.cpp repacked {repack / 2**20:.1f} MiB of weights for this CPU into private "
            "memory; the file pages it read them from stay mapped (clean, droppable) and RSS "
            "counts both, so the copy is subtracted."
            if repack
            else "",
        )
    )
    return rows


class _Step(TypedDict):
    """The training step measured and estimated: train_step's and estimate_training's
    arguments alike."""

    method: Method
    batch: int
    seq_len: int
    gradient_checkpointing: bool


def compare_training(
    hf: str | os.PathLike[str],
    *,
    methods: Iterable[Method] = ("full", "lora", "qlora"),
    batch: int = 2,
    seq_len: int = 256,
    threads: int = 2,
    malloc_cache: bool = False,
) -> list[Row]:
    """Peak RSS of one AdamW step (fp32 on CPU) for each method, against estimate_training.

    LoRA: r=8 on q_proj, v_proj (alpaca-lora); QLoRA: the same adapters on NF4 + double quant
    with gradient checkpointing (``prepare_model_for_kbit_training``'s default).
    """
    rows = []
    for method in methods:
        gc = method == "qlora"
        kwargs: _Step = {
            "method": method,
            "batch": batch,
            "seq_len": seq_len,
            "gradient_checkpointing": gc,
        }
        m = run(
            "train_step", model_dir=str(hf), threads=threads, malloc_cache=malloc_cache, **kwargs
        )
        est = estimate_training(hf, precision="fp32", **kwargs)
        label = f"{method}{' + grad ckpt' if gc else ''}, {batch}x{seq_len} tokens"
        note = (
            "glibc's default malloc keeps freed memory: RSS counts dead tensors."
            if malloc_cache
            else ""
        )
        rows.append(Row("training step (fp32, CPU)", label, est.total, m["peak"], "peak RSS", note))
    return rows


def compare_all(
    hf: str | os.PathLike[str],
    ggufs: Mapping[str, str | os.PathLike[str]],
    *,
    kv_gguf: str | os.PathLike[str],
    precisions: Iterable[str] = ("fp32", "fp16", "nf4", "nf4-dq"),
    n_ctx: int = 512,
    methods: Iterable[Method] = ("full", "lora", "qlora"),
    batch: int = 2,
    seq_len: int = 128,
    progress: bool = True,
) -> list[Row]:
    """Lab 03, part 5: every comparison above, with a progress bar (a fresh process each:
    about half a minute on course-chat)."""
    from tqdm.auto import tqdm

    precisions, methods = list(precisions), list(methods)
    steps: list[tuple[str, Callable[[], list[Row]]]] = [("GGUF files", lambda: compare_gguf(ggufs))]
    steps += [(f"weights {p}", partial(compare_weights, hf, precisions=[p])) for p in precisions]
    steps.append(("KV cache", lambda: compare_kv(hf, kv_gguf, n_ctx=n_ctx)))
    steps += [
        (
            f"training: {m}",
            partial(compare_training, hf, methods=[m], batch=batch, seq_len=seq_len),
        )
        for m in methods
    ]
    rows: list[Row] = []
    bar = tqdm(steps, desc="measuring", unit="step", disable=not progress)
    for name, step in bar:
        bar.set_postfix_str(name)
        rows += step()
    return rows


def error_table(rows: Iterable[Row], *, unit: float = 1e6):
    """DataFrame: group, quantity, estimate and measured (MB), error %, within 10%, notes."""
    pd = require("pandas", extra="lab")
    return pd.DataFrame(
        [
            {
                "group": r.group,
                "quantity": r.quantity,
                "estimate": round(r.estimate / unit, 3),
                "measured": round(r.measured / unit, 3),
                "how measured": r.how,
                "error %": round(100 * r.error, 1) + 0.0,  # + 0.0: no "-0.0"
                "within 10%": abs(r.error) <= TOLERANCE,
                "note": r.note,
            }
            for r in rows
        ]
    )
