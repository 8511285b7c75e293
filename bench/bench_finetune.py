"""Lab 04's memory savings on course-bench, measured beside the estimate: full fine-tuning vs
LoRA vs QLoRA, and the memory tips on LoRA (a smaller batch with gradient accumulation, bf16
autocast, gradient checkpointing), each a training step in a fresh process
(:mod:`courselib.measure.savings`). Peaks and seconds per step are medians of 3 runs (1 with
``--quick``); the ratios are against each group's baseline.

The issue's goals, reported here and not asserted anywhere: LoRA's peak at most 0.5x, QLoRA's
at most 0.35x of full fine-tuning's.

Run: ``python bench/run.py --only finetune [--quick]``.
"""

from __future__ import annotations

import statistics
from dataclasses import replace

from courselib import settings
from courselib.measure.savings import compare_savings, savings_table
from courselib.models import hf_dir

GOALS = {"lora": 0.5, "qlora": 0.35}


def main(args) -> None:
    import pandas as pd

    repeats = 1 if getattr(args, "quick", False) else 3
    threads = settings.resolve("threads")
    runs = [compare_savings(hf_dir("course-bench"), threads=threads) for _ in range(repeats)]
    rows = [
        replace(
            same[0],
            peak=int(statistics.median(r.peak for r in same)),
            seconds_per_step=statistics.median(r.seconds_per_step for r in same),
        )
        for same in zip(*runs, strict=True)
    ]
    table = savings_table(rows)
    with pd.option_context("display.width", 200, "display.max_colwidth", 50):
        print(table.drop(columns=["note"]).to_string())
    print(f"\n(medians of {repeats} run(s), {threads} thread(s); MB = 1e6 bytes)")
    for i, note in table["note"].items():
        if note:
            print(f"  [{i}] {note}")
    full = next(r.peak for r in rows if r.setting == "full")
    for method, goal in GOALS.items():
        ratio = next(r.peak for r in rows if r.setting == method) / full
        verdict = "met" if ratio <= goal else "MISSED"
        print(f"goal: {method} peak <= {goal}x full fine-tuning's: {ratio:.3f}x ({verdict})")
