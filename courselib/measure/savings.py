"""What LoRA, QLoRA and the memory tips save, measured beside the estimate (Lab 04, bench).

Each row is one training setting, measured by :func:`courselib.measure.memory.train_step`
(the model from ``courselib.finetune.methods.load_for_training``, random tokens, AdamW) in a
fresh process, and estimated by :func:`courselib.memory.training.estimate_training` with the
same arguments. Two groups, each against its own baseline:

- ``method``: full fine-tuning, LoRA and QLoRA at the same batch (baseline: full);
- ``tip``: the memory tips on one method (default LoRA) at a larger batch, where activations
  dominate (baseline: that method as it is): a smaller batch with gradient accumulation
  (the same examples per optimizer step); bf16 autocast alone (transformers' ``bf16=True``:
  the weights stay fp32); bf16 weights with autocast (mixed precision as a GPU recipe runs
  it: 16-bit frozen base, fp32 adapters and optimizer; for full fine-tuning, bf16 weights
  and AdamW states); gradient checkpointing.

Times are seconds per optimizer step (with accumulation: all its micro-batches), one step
after a first one that also allocates the optimizer: on a shared machine, take the median
of several runs.

Example::

    rows = compare_savings(hf_dir("course-bench"))
    savings_table(rows)        # peak MB, estimate MB, x baseline, s/step ...
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypedDict

from courselib.errors import CourseError, require
from courselib.finetune.presets import PRESETS, LoraSettings
from courselib.measure.memory import run
from courselib.memory.training import StateDtype, TrainPrecision, estimate_training

if TYPE_CHECKING:
    from courselib.finetune.methods import Precision

Tip = Literal["grad-accum", "bf16-autocast", "bf16-weights", "grad-checkpointing"]
TIPS: tuple[Tip, ...] = ("grad-accum", "bf16-autocast", "bf16-weights", "grad-checkpointing")


class _StepArgs(TypedDict, total=False):
    """The train_step arguments a tip sets."""

    batch: int
    grad_accum: int
    autocast: bool
    precision: Precision
    gradient_checkpointing: bool


class _EstimateArgs(TypedDict, total=False):
    """The estimate_training arguments a tip sets instead of fp32."""

    precision: TrainPrecision
    optimizer_dtype: StateDtype


@dataclass(frozen=True)
class Saving:
    """One training setting: its measured peak and time, its estimate, its baseline."""

    group: str
    """"method" or "tip"."""
    setting: str
    peak: int
    """Peak RSS of a training step above the process's RSS after its imports, bytes."""
    estimate: int
    """``estimate_training``'s peak for the same setting, bytes."""
    seconds_per_step: float
    trainable: int
    baseline: str
    """The setting of this group's baseline row."""
    note: str = ""


def compare_savings(
    model_dir: str | os.PathLike[str],
    *,
    methods: Iterable[str] = ("full", "lora", "qlora"),
    tips: Iterable[Tip] = TIPS,
    tip_method: Literal["full", "lora", "qlora"] = "lora",
    lora: LoraSettings = PRESETS["alpaca-lora"],
    batch: int = 2,
    seq_len: int = 256,
    tip_batch: int = 4,
    grad_accum: int = 4,
    threads: int = 2,
    timeout_s: float = 900,
) -> list[Saving]:
    """Measure ``methods`` at ``batch`` x ``seq_len`` tokens and ``tips`` on ``tip_method`` at
    ``tip_batch`` x ``seq_len`` (gradient accumulation: ``tip_batch / grad_accum`` sequences
    ``grad_accum`` times); each row in a fresh process, fp32 weights, adapters from ``lora``.
    """
    if tip_batch % grad_accum:
        raise CourseError(
            f"tip_batch={tip_batch} is not a multiple of grad_accum={grad_accum}.",
            hint="Accumulation keeps the examples per step: choose tip_batch = k x grad_accum.",
        )
    adapters = {
        "lora_rank": lora.r,
        "lora_targets": tuple(lora.target_modules),
        "lora_dropout": lora.dropout,
    }
    rows: list[Saving] = []

    def measure(group: str, setting: str, baseline: str, *, note="", estimate=None, **kw):
        kw = {**adapters, "seq_len": seq_len, **kw}
        m = run("train_step", model_dir=str(model_dir), threads=threads, timeout_s=timeout_s, **kw)
        shape = {k: v for k, v in kw.items() if k not in ("grad_accum", "autocast", "precision")}
        est = estimate_training(model_dir, **shape, **(estimate or {"precision": "fp32"}))
        rows.append(
            Saving(
                group,
                setting,
                m["peak"],
                est.total,
                m["seconds_per_step"],
                m["trainable"],
                baseline,
                note,
            )
        )

    small = tip_batch // grad_accum
    # 16-bit weights: full fine-tuning trains them with 16-bit AdamW states; LoRA and QLoRA
    # keep fp32 adapters and states (the estimator's "mixed")
    sixteen: _EstimateArgs = (
        {"precision": "bf16", "optimizer_dtype": "bf16"}
        if tip_method == "full"
        else {"precision": "mixed"}
    )
    # tip -> (setting, train_step arguments, estimate_training arguments, note)
    variants: dict[str, tuple[str, _StepArgs, _EstimateArgs | None, str]] = {
        "grad-accum": (
            f"batch {small} x {grad_accum} accumulated",
            {"batch": small, "grad_accum": grad_accum},
            None,
            "",
        ),
        "bf16-autocast": (
            "bf16 autocast",
            {"batch": tip_batch, "autocast": True},
            None,
            "Estimated as fp32 (the estimator has no autocast on fp32 weights): bf16 "
            "activations, but a bf16 copy of each weight saved for the backward pass.",
        ),
        "bf16-weights": (
            "bf16 weights + autocast",
            {"batch": tip_batch, "autocast": True, "precision": "bf16"},
            sixteen,
            "The estimator counts every saved activation at 2 bytes; under autocast LLaMA's "
            "RMSNorm saves its input upcast to fp32, and peft's dropout runs on the fp32 "
            "input of the fp32 adapters (a third of the saved bytes on a 19M model).",
        ),
        "grad-checkpointing": (
            "gradient checkpointing",
            {"batch": tip_batch, "gradient_checkpointing": True},
            None,
            "",
        ),
    }
    tips = list(tips)
    unknown = [t for t in tips if t not in variants]
    if unknown:
        raise CourseError(f"Unknown tip {unknown[0]!r}.", hint=f"Choose among {', '.join(TIPS)}.")
    methods = list(methods)
    for method in methods:
        measure("method", method, methods[0], method=method, batch=batch)
    if tips:
        base = f"{tip_method}, batch {tip_batch}"
        measure("tip", base, base, method=tip_method, batch=tip_batch)
    for tip in tips:
        setting, kw, estimate, note = variants[tip]
        measure("tip", setting, base, estimate=estimate, note=note, method=tip_method, **kw)
    return rows


def savings_table(rows: Iterable[Saving], *, unit: float = 1e6):
    """DataFrame: group, setting, peak and estimate (MB), error %, peak and time against the
    group's baseline (x), s/step, trainable parameters, note."""
    pd = require("pandas", extra="lab")
    rows = list(rows)
    by_setting = {(r.group, r.setting): r for r in rows}
    out = []
    for r in rows:
        base = by_setting[(r.group, r.baseline)]
        out.append(
            {
                "group": r.group,
                "setting": r.setting,
                "peak": round(r.peak / unit, 1),
                "estimate": round(r.estimate / unit, 1),
                "error %": round(100 * (r.estimate / r.peak - 1), 1) + 0.0,  # + 0.0: no "-0.0"
                "x baseline peak": round(r.peak / base.peak, 3),
                "s/step": round(r.seconds_per_step, 2),
                "x baseline time": round(r.seconds_per_step / base.seconds_per_step, 2),
                "trainable": r.trainable,
                "note": r.note,
            }
        )
    return pd.DataFrame(out)
