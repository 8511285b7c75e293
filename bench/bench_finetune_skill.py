"""Lab 04's skill fine-tune over several seeds: base vs tuned, and what the course keeps.

For each training seed: course-chat with the recipe's LoRA adapters
(:data:`courselib.finetune.skill.RECIPE`) is trained on the skill (animal sounds) and scored
on the held-out test phrasings, and on the held-out course questions before and after. The
base model is the same for every seed (adapters start at zero), so it is scored once. Prints
one row per seed, the medians and the worst seed (the smallest uplift); then the same for
QLoRA (4-bit base) on the first seed. ``--quick``: one seed, no QLoRA.

Training runs on 1 thread: on 2 shared cores one torch thread was 5-20x faster per step than
two (two OpenMP threads wait on each other whenever another process takes a core).
"""

from __future__ import annotations

import statistics
from typing import NamedTuple

SEEDS = (0, 1, 2)
THREADS = 1


class Row(NamedTuple):  # not a dataclass: bench/run.py loads this file outside sys.modules
    seed: int
    method: str
    base: float
    tuned: float
    course_before: float
    course_after: float
    unknown_after: float
    train_s: float

    @property
    def uplift(self) -> float:
        return self.tuned - self.base


def measure(seeds=SEEDS, *, method: str = "lora") -> list[Row]:
    """One fine-tune per seed; the rows."""
    import torch

    from courselib.finetune import skill
    from courselib.finetune.data import load_tokenizer
    from courselib.finetune.evaluate import course_families_accuracy
    from courselib.finetune.methods import load_for_training
    from courselib.models import hf_dir
    from courselib.models.build import build_all

    build_all(["course-chat"], log=lambda *_: None)
    torch.set_num_threads(THREADS)
    chat = hf_dir("course-chat")
    tokenizer = load_tokenizer(chat)
    rows, base, course_before = [], None, None
    for seed in seeds:
        model = load_for_training(chat, method=method, lora=skill.RECIPE.lora, seed=seed)
        if base is None:  # untrained adapters: the base model
            base = skill.skill_accuracy(model, tokenizer)
            course_before = course_families_accuracy(model, tokenizer)
        result = skill.finetune_skill(model, tokenizer, seed=seed, threads=THREADS)
        tuned = skill.skill_accuracy(model, tokenizer)
        after = course_families_accuracy(model, tokenizer)
        rows.append(
            Row(seed, method, base.rate, tuned.rate, course_before.rate, after.rate,
                after.by_family.get("unknown", 0.0), result.seconds)
        )  # fmt: skip
        print_row(rows[-1], flush=True)
    return rows


HEADER = (
    f"{'method':<6} {'seed':>4} {'skill base':>10} {'tuned':>6} {'uplift':>7} "
    f"{'course before':>13} {'after':>6} {'unknown after':>13} {'train s':>8}"
)


def print_row(row: Row, *, label: str | None = None, flush: bool = False) -> None:
    seed = label if label is not None else str(row.seed)
    print(
        f"{row.method:<6} {seed:>4} {row.base:>10.0%} {row.tuned:>6.0%} {row.uplift:>+7.0%} "
        f"{row.course_before:>13.0%} {row.course_after:>6.0%} {row.unknown_after:>13.0%} "
        f"{row.train_s:>8.1f}",
        flush=flush,
    )


def summarise(rows: list[Row]) -> None:
    med = Row(
        -1, rows[0].method,
        statistics.median(r.base for r in rows), statistics.median(r.tuned for r in rows),
        statistics.median(r.course_before for r in rows),
        statistics.median(r.course_after for r in rows),
        statistics.median(r.unknown_after for r in rows),
        statistics.median(r.train_s for r in rows),
    )  # fmt: skip
    print_row(med, label="med")
    worst = min(rows, key=lambda r: (r.uplift, r.course_after))
    print(
        f"worst seed {worst.seed}: uplift {worst.uplift:+.0%} (tuned {worst.tuned:.0%}), "
        f"course {worst.course_before:.0%} -> {worst.course_after:.0%}; "
        f"largest course drop {max(r.course_before - r.course_after for r in rows):.0%}"
    )


def main(args) -> None:
    from courselib.finetune import skill

    recipe = skill.RECIPE
    print(
        f"course-chat, LoRA r={recipe.lora.r} alpha={recipe.lora.alpha} on "
        f"{len(recipe.lora.target_modules)} matrices per block, lr {recipe.lora.lr}, "
        f"{recipe.steps} steps of {recipe.batch_size}, replay {recipe.replay:.0%}, "
        f"{THREADS} thread; held-out test phrasings"
    )
    print(HEADER)
    rows = measure(SEEDS[:1] if args.quick else SEEDS)
    summarise(rows)
    if args.quick:
        return
    from courselib.errors import CourseError

    try:
        qlora = measure(SEEDS[:1], method="qlora")
    except CourseError as exc:  # no AVX2 or no bitsandbytes: LoRA's numbers stand alone
        print(f"qlora: not measured ({exc})")
        return
    lora_s = statistics.median(r.train_s for r in rows)
    print(f"qlora/lora training time: {qlora[0].train_s / lora_s:.2f}x")
