"""``python -m server_setup``: ops commands for the class's shared inference server.

Examples::

    python -m server_setup plan wizard-vicuna-13b --gpu-mem 40GiB --gpus 1
    python -m server_setup plan wizard-vicuna-13b --gpu-mem 40GiB --dtype awq
    python -m server_setup plan ~/models/llama-13b-hf --gpu-mem 80GiB --dtype fp16 --json
    python -m server_setup plan ~/models/llama-2-7b.Q4_K_M.gguf --ram 16GiB
    python -m server_setup plan llama-65b --gpu-mem 48GiB --dtype awq --max-seqs 2
    python -m server_setup init deployment.toml
    python -m server_setup render deployment.toml
    python -m server_setup render deployment.toml --engine triton --output-dir deploy-triton
    python -m server_setup up --model course-chat --max-model-len 512
    python -m server_setup keys issue roster.csv --out keys-to-hand-out.csv
    python -m server_setup keys revoke s017
    python -m server_setup keys engine --rotate
    python -m server_setup status
    python -m server_setup check http://127.0.0.1:8000/v1 --key sk-course-...
    python -m server_setup loadtest http://127.0.0.1:8000/v1 --keys keys.csv --students 30
    python -m server_setup down
    python -m server_setup dry-run

Exit status: 0 when the deployment fits (render: the files are written; up: it runs), 1 when
it does not (the message lists what would fit instead; nothing is rendered or started), 2 for
a mistake in the command or the settings (unknown model, size, dtype, setting) or a failed start.
check, loadtest and dry-run: 0 when every step passed and no request was lost, else 1.
"""

from __future__ import annotations

import argparse
import json
import sys

from courselib.errors import EXIT_MISTAKE, CourseError, run_command
from server_setup import cli_check, cli_local

_PLAN_HELP = """\
Check, before anything is loaded, that the model fits the server: weights at the served
dtype + KV cache for --max-seqs sequences of --max-model-len tokens + the engine's own
memory, against the GPU memory x --gpu-memory-utilization (vLLM's default 0.90). On a CPU
host the llama.cpp server runs a GGUF file in RAM, one request at a time.

MODEL is a shipped name (wizard-vicuna-13b, llama-13b, llama-65b, llama-3-8b ...), a
Hugging Face checkpoint folder (its config.json is read) or a .gguf file (its header).
"""


PLAN_SETTINGS = (
    "model", "gpu_mem", "gpus", "ram", "dtype", "max_seqs", "max_model_len",
    "gpu_memory_utilization",
)  # fmt: skip
"""The deployment settings plan reads: the same flags, env vars and file keys as render's."""


def _plan_parser(sub: argparse._SubParsersAction) -> None:
    from server_setup.settings import SCHEMA

    p = sub.add_parser(
        "plan",
        help="will the model fit the server? (exit 1 and what fits instead when not)",
        description=_PLAN_HELP,
        epilog="Examples:" + __doc__.split("Examples::", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model_arg",
        nargs="?",
        metavar="model",
        help="shipped name, checkpoint folder or .gguf file (or --model)",
    )
    p.add_argument(
        "--settings",
        metavar="FILE",
        help="a deployment's TOML settings file (render's), read for what is not given here",
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON (bytes)")
    # the same flags as render's and up's, so one command line works for all three
    SCHEMA.add_arguments(p, only=PLAN_SETTINGS, title="what plan reads")
    p.set_defaults(func=_run_plan)


def _run_plan(args: argparse.Namespace) -> int:
    from server_setup.render import plan_of
    from server_setup.report import refusal, table
    from server_setup.settings import SCHEMA, load

    def one_model(problem: str) -> CourseError:
        return CourseError(
            f"plan needs one model: {problem}",
            hint="Name it once: python -m server_setup plan wizard-vicuna-13b (or --model ...).",
        )

    if args.model_arg is not None and args.model is not None:
        raise one_model("it was given twice.")
    overrides = SCHEMA.flag_values(args)
    if args.model_arg is not None:
        overrides["model"] = args.model_arg
    d = load(args.settings, overrides=overrides)
    if not d.model:
        raise one_model("none was given.")
    result = plan_of(d)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(table(result))
        if not result.fits:
            print(refusal(result), file=sys.stderr)
    return 0 if result.fits else 1


_RENDER_HELP = """\
Plan, then write the deployable files into output_dir: the engine (vLLM's OpenAI server
with a Vicuna chat template, Triton with the vLLM backend, or llama.cpp's server on a CPU
host) as compose.yaml, a systemd unit, an Apptainer definition and a Slurm script, with a
README.txt, and the gateway (nginx.conf + njs) as a systemd unit and a compose service. The
engine's own key is written to the state dir's keys/ when missing (never into output_dir).
A deployment that does not fit is not rendered (exit 1).
"""


def _init_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="write a commented example settings file")
    p.add_argument("file", help="where to write it, e.g. deployment.toml")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=_run_init)


def _run_init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from server_setup.settings import example_toml

    path = Path(args.file)
    if path.exists() and not args.force:
        raise CourseError(f"{path} exists.", hint="Pass --force to overwrite it.")
    path.write_text(example_toml(), encoding="utf-8")
    print(f"wrote {path}: edit it, then `python -m server_setup render {path}`")
    return 0


def _render_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help="plan, then write compose/systemd/Apptainer/Slurm files for the engine",
        description=_RENDER_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from server_setup.settings import add_settings

    p.add_argument("settings", nargs="?", help="the deployment's TOML settings file")
    add_settings(p)
    p.set_defaults(func=_run_render)


def _run_render(args: argparse.Namespace) -> int:
    from pathlib import Path

    from server_setup.local import Local
    from server_setup.render import render, write
    from server_setup.report import refusal, table
    from server_setup.settings import load_settings

    d = load_settings(args)
    result = render(d)
    print(table(result.plan))
    if not result.plan.fits:
        print(refusal(result.plan), file=sys.stderr)
        print("Nothing rendered.", file=sys.stderr)
        return 1
    written = write(result, Path(d.output_dir))
    print(f"rendered {len(written)} files into {d.output_dir}/ (see README.txt there)")
    # the files name the engine's key file in the state dir: make it here when missing (it
    # is never in output_dir, which may be copied around; keys issue on the host makes it too)
    keys = Local.of(d).keys
    made = keys.ensure_engine_key()
    print(f"engine key: {keys.engine_env_file} ({'new' if made else 'kept'}, 0600)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m server_setup",
        description="Ops tooling for the class's shared inference server.",
        epilog="Examples:" + __doc__.split("Examples::", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _plan_parser(sub)
    _init_parser(sub)
    _render_parser(sub)
    cli_local.add_parsers(sub)
    cli_check.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_MISTAKE
    return run_command(lambda: args.func(args))
