"""``python -m server_setup``: ops commands for the class's shared inference server.

Examples::

    python -m server_setup plan wizard-vicuna-13b --gpu-mem 40GiB --gpus 1
    python -m server_setup plan wizard-vicuna-13b --gpu-mem 40GiB --dtype awq
    python -m server_setup plan ~/models/llama-13b-hf --gpu-mem 80GiB --dtype fp16 --json
    python -m server_setup plan ~/models/llama-2-7b.Q4_K_M.gguf --ram 16GiB
    python -m server_setup plan llama-65b --gpu-mem 48GiB --dtype awq --max-seqs 2

Exit status: 0 when the deployment fits, 1 when it does not (the message lists what would
fit instead), 2 for a mistake in the command (unknown model, size, dtype).
"""

from __future__ import annotations

import argparse
import json
import sys

from courselib.errors import CourseError

_PLAN_HELP = """\
Check, before anything is loaded, that the model fits the server: weights at the served
dtype + KV cache for --max-seqs sequences of --max-model-len tokens + the engine's own
memory, against the GPU memory x --gpu-memory-utilization (vLLM's default 0.90). On a CPU
host the llama.cpp server runs a GGUF file in RAM, one request at a time.

MODEL is a shipped name (wizard-vicuna-13b, llama-13b, llama-65b, llama-3-8b ...), a
Hugging Face checkpoint folder (its config.json is read) or a .gguf file (its header).
"""


def _plan_parser(sub: argparse._SubParsersAction) -> None:
    from server_setup.plan import DEFAULT_MAX_MODEL_LEN, DEFAULT_MAX_SEQS, DEFAULT_UTILIZATION

    p = sub.add_parser(
        "plan",
        help="will the model fit the server? (exit 1 and what fits instead when not)",
        description=_PLAN_HELP,
        epilog="Examples:" + __doc__.split("Examples::", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="shipped name, checkpoint folder or .gguf file")
    hw = p.add_argument_group("the host (default: the GPUs torch/nvidia-smi find, else RAM)")
    hw.add_argument("--gpu-mem", metavar="SIZE", help="memory of one GPU, e.g. 40GiB, 80GB")
    hw.add_argument(
        "--gpus", type=int, metavar="N", help="GPUs to use (tensor parallel, default 1)"
    )
    hw.add_argument("--ram", metavar="SIZE", help="a CPU host's RAM, e.g. 16GiB (llama.cpp)")
    serve = p.add_argument_group("what is served")
    serve.add_argument(
        "--dtype",
        default=None,
        help="fp16, bf16, fp32, awq, gptq (vLLM) or a GGUF type: Q4_K_M, Q8_0, IQ4_XS, F16 ... "
        "(llama.cpp); default: the checkpoint's dtype on a GPU, Q4_K_M on a CPU host",
    )
    serve.add_argument(
        "--max-seqs",
        type=int,
        default=DEFAULT_MAX_SEQS,
        help="sequences served at once (vLLM --max-num-seqs; default: %(default)s)",
    )
    serve.add_argument(
        "--max-model-len",
        type=int,
        default=DEFAULT_MAX_MODEL_LEN,
        help="context per sequence, prompt + answer (default: %(default)s)",
    )
    serve.add_argument(
        "--gpu-memory-utilization",
        "--utilization",
        type=float,
        default=DEFAULT_UTILIZATION,
        help="share of each GPU (or of RAM) the engine may take (default: %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON (bytes)")
    p.set_defaults(func=_run_plan)


def _run_plan(args: argparse.Namespace) -> int:
    from server_setup.plan import plan
    from server_setup.report import refusal, table

    result = plan(
        args.model,
        gpu_mem=args.gpu_mem,
        gpus=args.gpus,
        ram=args.ram,
        dtype=args.dtype,
        max_seqs=args.max_seqs,
        max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
    )
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(table(result))
        if not result.fits:
            print(refusal(result), file=sys.stderr)
    return 0 if result.fits else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m server_setup",
        description="Ops tooling for the class's shared inference server.",
        epilog="Examples:" + __doc__.split("Examples::", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _plan_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
