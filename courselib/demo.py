"""``python -m courselib demo`` (``make demo``): the course end to end on the built-in models.

1. build (or reuse) the offline course models and list their files;
2. Lab 01: chat with the 4-bit GGUF through llama.cpp, streaming, with a custom system prompt;
3. Lab 03: the memory table for LLaMA 7B-65B, when the memory estimator is installed.

Nothing is downloaded; everything runs on the CPU.
"""

from __future__ import annotations

import argparse
import time

DEMO_QUESTIONS = [
    "What is the capital of Japan?",
    "How much is 4 + 5?",
    "한국의 수도는 어디입니까?",
    "What is Lab 3 about?",
]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="run the course end to end on the built-in models",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        default="course-chat:Q4_K_M",
        help="model to chat with (default: the 4-bit course model)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from courselib.backends import GenerationConfig, Message, open_backend
    from courselib.models.build import build_all

    print("== 1. The course models (built offline, cached) ==")
    build_all()
    from courselib.models.cli import print_models

    print_models()

    print(f"\n== 2. Lab 01: local 4-bit chat ({args.model}) ==")
    config = GenerationConfig(max_tokens=48, temperature=0.0)
    with open_backend(args.model) as backend:
        system = "You are the course assistant. Answer in one short sentence."
        for question in DEMO_QUESTIONS:
            messages = [Message("system", system), Message("user", question)]
            print(f"USER: {question}\nASSISTANT: ", end="", flush=True)
            start, pieces = time.perf_counter(), 0
            for piece in backend.stream(messages, config=config):
                print(piece, end="", flush=True)
                pieces += 1
            seconds = time.perf_counter() - start
            print(f"   [{pieces} tokens, {pieces / seconds:.0f} tokens/s]")

    from courselib.__main__ import main as course_cli

    print("\n== 3. Lab 03: what LLaMA models need in memory ==")
    status = course_cli(["memory", "--table"])
    print("\nWizardVicuna-13B served in fp16 with a 2048-token context:")
    return status or course_cli(
        ["memory", "--model", "llama-13b", "--dtype", "fp16", "--ctx", "2048"]
    )
