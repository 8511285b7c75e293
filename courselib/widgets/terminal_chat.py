"""``python -m courselib chat``: chat with a model in the terminal, or get one answer (Lab 01).

Examples::

    python -m courselib chat                                   # course-chat, 4-bit GGUF
    python -m courselib chat --model ~/models/wizard-vicuna-13b.Q4_K_M.gguf --n-ctx 2048
    python -m courselib chat --model http://gpu-host:8000/v1 --api-key sk-...
    python -m courselib chat --prompt "What is the capital of France?" --temperature 0

In a chat, ``/clear`` forgets the conversation, ``/system TEXT`` sets the system prompt,
``/quit`` (or Ctrl-D) leaves, and Ctrl-C stops a reply without leaving. With ``--prompt`` only
the answer goes to stdout; notes (trimmed turns, the model's name) go to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TextIO

from courselib.backends.base import Backend, GenerationConfig
from courselib.chat.conversation import Conversation
from courselib.chat.vicuna import VICUNA_SYSTEM
from courselib.errors import CourseError

HELP = "/clear forgets the conversation, /system TEXT sets the system prompt, /quit leaves."


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``chat`` subcommand."""
    parser = subparsers.add_parser(
        "chat",
        help="chat with a model in the terminal (GGUF, HF checkpoint or server URL)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        default="course-chat",
        metavar="PATH_OR_URL",
        help="a .gguf file, a Hugging Face checkpoint folder, a course model "
        "('course-chat', 'course-chat:Q8_0', 'course-chat:hf'), an OpenAI-compatible server "
        "URL ('http://host:8000/v1'), or 'echo' (default: %(default)s)",
    )
    parser.add_argument("--prompt", help="answer this one message and exit ('-': read stdin)")
    parser.add_argument("--system", default=VICUNA_SYSTEM, help="system prompt (default: Vicuna's)")
    parser.add_argument("--temperature", type=float, default=0.7, help="0 = greedy (default 0.7)")
    parser.add_argument("--max-tokens", type=int, default=256, help="reply length limit (256)")
    parser.add_argument("--seed", type=int, help="sampling seed, for repeatable answers")
    parser.add_argument("--n-ctx", type=int, help="context size in tokens (default: the model's)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: setting 'threads')")
    parser.add_argument(
        "--dtype",
        choices=["fp32", "fp16", "nf4"],
        default="fp32",
        help="weights of a Hugging Face checkpoint: fp32, fp16 or 4-bit nf4 (default fp32)",
    )
    parser.add_argument(
        "--template",
        choices=["auto", "model", "vicuna"],
        default="auto",
        help="chat template of a local model: its own if it has one, else Vicuna (auto)",
    )
    parser.add_argument("--api-key", help="key for a server URL (default: setting 'api_key')")
    parser.add_argument("--model-name", help="which model of a server URL (default: its first)")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Open the backend, then answer ``--prompt`` or run the chat loop."""
    from courselib.backends import open_backend

    config = GenerationConfig(
        max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed
    )
    conversation = Conversation(system=args.system)
    with open_backend(
        args.model,
        n_ctx=args.n_ctx,
        threads=args.threads,
        dtype=args.dtype,
        api_key=args.api_key,
        model=args.model_name,
        template=args.template,
    ) as backend:
        if args.prompt is not None:
            prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
            conversation.add_user(prompt.strip())
            reply(backend, conversation, config, out=sys.stdout)
            return 0
        print(f"{backend.name}, {backend.context_size}-token context. {HELP}", file=sys.stderr)
        print("Ctrl-C stops a reply.", file=sys.stderr)
        chat_loop(backend, conversation, config)
    return 0


def reply(
    backend: Backend,
    conversation: Conversation,
    config: GenerationConfig,
    *,
    out: TextIO,
    prefix: str = "",
) -> str:
    """Stream the answer to the conversation's last user message into ``out`` and record it.

    Ctrl-C stops the reply (the generator is closed, so the engine stops) and keeps what was
    written so far.
    """
    fit = conversation.fit(backend, max_new_tokens=config.max_tokens)
    if fit.note:
        print(f"[{fit.note}]", file=sys.stderr)
    out.write(prefix)
    text = ""
    pieces = backend.stream(fit.messages, config=config)
    try:
        for piece in pieces:
            piece = piece if text else piece.lstrip()
            text += piece
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:
        print("\n[stopped]", file=sys.stderr)
    finally:
        pieces.close()
    out.write("\n")
    out.flush()
    conversation.add_assistant(text)
    return text


def chat_loop(
    backend: Backend,
    conversation: Conversation,
    config: GenerationConfig,
    *,
    read: Callable[[str], str] = input,
    out: TextIO | None = None,
) -> None:
    """Read a line, answer it, repeat, until /quit, Ctrl-D or Ctrl-C at the prompt."""
    out = out or sys.stdout
    while True:
        try:
            line = read("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            out.write("\n")
            return
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return
        if line == "/clear":
            conversation.clear()
            print("[conversation cleared]", file=sys.stderr)
            continue
        if line.startswith("/system"):
            conversation.system = line.removeprefix("/system").strip() or VICUNA_SYSTEM
            print(f"[system prompt: {conversation.system}]", file=sys.stderr)
            continue
        if line.startswith("/"):
            print(f"[unknown command {line.split()[0]}; {HELP}]", file=sys.stderr)
            continue
        conversation.add_user(line)
        try:
            reply(backend, conversation, config, out=out, prefix="assistant> ")
        except CourseError as exc:  # e.g. a message longer than the context: say so, go on
            conversation.turns.pop()
            print(f"error: {exc}", file=sys.stderr)
