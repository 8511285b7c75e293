"""Lab 03's memory estimator against measurements on the course models, side by side.

For course-chat and course-bench: GGUF file sizes (F32 ... Q4_K_M), the weights loaded by
transformers at every precision (tensor bytes and get_memory_footprint), the KV cache
(transformers' DynamicCache, llama.cpp's log), llama.cpp's compute buffer and the RSS of a
load + prompt; on course-bench the peak RSS of one AdamW training step for full fine-tuning,
LoRA and QLoRA. Every load runs in a fresh process (courselib.measure.memory).

The target is every estimate within 10% of its measurement; the table's notes say why a row
misses it. ``--quick`` skips course-bench's extra rows (glibc's malloc cache, LoRA with
gradient checkpointing, llama.cpp at n_ctx 2048).

Run: ``python bench/run.py --only memory [--quick]``.
"""

from __future__ import annotations

import time
from dataclasses import replace

from courselib.measure.compare import (
    TOLERANCE,
    Row,
    compare_gguf,
    compare_kv,
    compare_training,
    compare_weights,
    error_table,
)
from courselib.models import QUANTS, gguf_file, hf_dir


def _rows(name: str, *, quick: bool) -> list:
    hf = hf_dir(name)
    rows = compare_gguf({q: gguf_file(name, q) for q in QUANTS})
    rows += compare_weights(hf)
    rows += compare_kv(hf, gguf_file(name, "Q4_K_M"), n_ctx=512)
    rows += compare_kv(hf, gguf_file(name, "Q8_0"), n_ctx=512)[1:]
    if name == "course-bench" and not quick:
        rows += compare_kv(hf, gguf_file(name, "Q4_0"), n_ctx=2048)[1:]
    return rows


def main(args) -> None:
    import pandas as pd

    quick = getattr(args, "quick", False)
    rows = []
    for name in ("course-chat", "course-bench"):
        start = time.perf_counter()
        model_rows = _rows(name, quick=quick)
        rows += [_prefixed(r, name) for r in model_rows]
        print(
            f"({name}: loads and files measured in {time.perf_counter() - start:.0f} s)", flush=True
        )
    start = time.perf_counter()
    bench = hf_dir("course-bench")
    rows += [_prefixed(r, "course-bench") for r in compare_training(bench, batch=2, seq_len=256)]
    if not quick:
        rows += [
            _prefixed(r, "course-bench")
            for r in compare_training(
                bench, methods=("full",), batch=2, seq_len=256, malloc_cache=True
            )
        ]
    print(f"(training steps measured in {time.perf_counter() - start:.0f} s)", flush=True)

    table = error_table(rows)
    with pd.option_context(
        "display.width", 200, "display.max_rows", 200, "display.max_colwidth", 60
    ):
        print(table.drop(columns=["note"]).to_string())
    inside = int(table["within 10%"].sum())
    print(f"\n{inside} of {len(table)} estimates within {TOLERANCE:.0%} of the measurement.")
    print("Notes (rows by index):")
    for i, note in table["note"].items():
        if note:
            print(f"  [{i}] {note}")
    for i, row in table[~table["within 10%"]].iterrows():
        print(f"  outside 10%: [{i}] {row['group']} / {row['quantity']} ({row['error %']:+.1f}%)")


def _prefixed(row: Row, name: str) -> Row:
    return replace(row, group=f"{name}: {row.group}")
