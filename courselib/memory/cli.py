"""``python -m courselib memory``: the memory estimator in a terminal (Lab 03).

Examples::

    python -m courselib memory --model llama-13b --dtype fp16 --ctx 2048
    python -m courselib memory --model llama-65b --method qlora --precision bf16 \\
        --optimizer paged-adamw-32bit --lora-rank 64 --lora-targets all-linear --grad-ckpt
    python -m courselib memory --model ~/models/llama-2-13b.Q4_K_M.gguf --ctx 4096 --json
    python -m courselib memory --table          # the 7B-65B weights table
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import get_args

from courselib.memory.estimate import COMPONENTS, Estimate


def register(subparsers) -> None:
    """Add the ``memory`` subcommand to the course CLI."""
    from courselib.memory.training import Optimizer

    p = subparsers.add_parser(
        "memory",
        help="estimate the memory a model needs (inference, full fine-tune, LoRA, QLoRA)",
        description=(
            "Estimate how much memory a model needs: weights at a precision, KV cache, "
            "and for training gradients, optimizer states and activations. Nothing is "
            "loaded: only the config (shipped shape, checkpoint config.json or GGUF header)."
        ),
        epilog=__doc__.split("Examples::", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        default="llama-7b",
        help="shipped shape (llama-7b ... llama-65b, llama-2-70b, llama-3-8b, wizard-vicuna-13b, "
        "course-chat, course-bench; see --list), a checkpoint folder, config.json or .gguf "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--dtype",
        default=None,
        help="weights: fp32, fp16, bf16, int8, nf4, nf4-dq, fp4, awq, gptq, or a GGUF type (Q8_0, "
        "Q6_K, Q4_K_M, IQ4_XS, F16 ...); default: the checkpoint's dtype (QLoRA: nf4-dq)",
    )
    p.add_argument("--ctx", type=int, default=2048, help="context length in tokens (default: 2048)")
    p.add_argument("--batch", type=int, default=1, help="sequences at once (default: 1)")
    p.add_argument("--kv-dtype", default=None, help="KV cache type (default: fp16 / compute dtype)")
    p.add_argument(
        "--method",
        choices=["inference", "full", "lora", "qlora"],
        default="inference",
        help="what to estimate (default: inference)",
    )
    train = p.add_argument_group("training (--method full / lora / qlora)")
    train.add_argument(
        "--precision",
        choices=["fp32", "mixed", "bf16"],
        default="mixed",
        help="fp32, mixed (16-bit compute + fp32 master weights) or bf16 (default: mixed)",
    )
    train.add_argument("--optimizer", choices=get_args(Optimizer), default="adamw")
    train.add_argument(
        "--seq-len", type=int, default=None, help="training sequence length (default: --ctx)"
    )
    train.add_argument("--lora-rank", type=int, default=8, help="LoRA rank r (default: 8)")
    train.add_argument(
        "--lora-targets",
        default="q_proj,v_proj",
        help="comma-separated matrices, or all-linear (default: q_proj,v_proj as alpaca-lora)",
    )
    train.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing")
    out = p.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print JSON (bytes) for scripts")
    out.add_argument("--unit", choices=["GB", "GiB", "MB", "MiB"], default="GB")
    out.add_argument("--table", action="store_true", help="print the 7B-65B weights table")
    out.add_argument("--list", action="store_true", help="list the shipped model shapes")
    p.set_defaults(func=main)


def estimate_from_args(args: argparse.Namespace) -> Estimate:
    """The estimate the command line asks for."""
    if args.method == "inference":
        from courselib.memory.estimate import estimate_inference

        return estimate_inference(
            args.model,
            precision=args.dtype,
            n_ctx=args.ctx,
            batch=args.batch,
            kv_dtype=args.kv_dtype,
        )
    from courselib.memory.training import estimate_training

    return estimate_training(
        args.model,
        method=args.method,
        precision=args.precision,
        optimizer=args.optimizer,
        lora_rank=args.lora_rank,
        lora_targets=args.lora_targets,
        quant=args.dtype or "nf4-dq",
        batch=args.batch,
        seq_len=args.seq_len or args.ctx,
        gradient_checkpointing=args.grad_ckpt,
    )


def format_estimate(e: Estimate, *, unit: str = "GB") -> str:
    """Plain-text breakdown of an estimate."""
    from courselib.memory.table import UNITS

    scale = UNITS[unit]
    lines = [f"{e.model}  {e.method}  {e.precision}", f"  {'parameters':<22}{e.params:>16,}"]
    if e.trainable_params:
        lines.append(f"  {'trainable':<22}{e.trainable_params:>16,}")
    for c in COMPONENTS:
        if getattr(e, c):
            lines.append(f"  {c.replace('_', ' '):<22}{getattr(e, c) / scale:>13.2f} {unit}")
    if e.overlap:
        lines.append(
            f"  {'- overlap':<22}{-e.overlap / scale:>13.2f} {unit}  (activations freed into gradients)"
        )
    lines.append(f"  {'total (peak)':<22}{e.total / scale:>13.2f} {unit}")
    lines += [f"  note: {n}" for n in e.notes]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args.list:
        from courselib.memory.configs import shipped_models

        print("\n".join(shipped_models()))
        return 0
    if args.table:
        from courselib.memory.table import llama_table

        table = llama_table(unit=args.unit)
        print(table.to_json(orient="index") if args.json else table.to_string())
        return 0
    estimate = estimate_from_args(args)
    if args.json:
        json.dump(estimate.as_dict(), sys.stdout, indent=2)
        print()
    else:
        print(format_estimate(estimate, unit=args.unit))
    return 0
