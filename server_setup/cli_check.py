"""The commands that try a running server as students would: ``check``, ``loadtest``, ``dry-run``.

``check`` and ``loadtest`` take the students' URL (the gateway, ending in /v1) and keys, so
they work on any deployment, here or on the class host; ``dry-run`` starts its own.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

from courselib.errors import CourseError

KEY_ENV = "COURSELAB_API_KEY"  # what the students' courselib reads too
ENGINE_KEY_ENV = "COURSELAB_ENGINE_KEY"

_CHECK_HELP = f"""\
Smoke test of a running deployment through its gateway, with one student key (--key, else
${KEY_ENV}): /v1/models lists the served model, a chat completion and a streamed one answer,
no key and a wrong key get 401, an unknown model name gets 404. Each step passes only on the
answer it tests for (a 429 or a 503 fails it). Prints a PASS/FAIL table; exit 0 when nothing
failed, 1 otherwise.
"""

_LOADTEST_HELP = """\
Simulated students, all at once, each with its own key from the hand-out CSV of `keys issue
--out` (student_id,name,email,api_key): short chat requests (every --stream-every-th streamed),
a think time between them, 429s retried after Retry-After. Prints sent / answered / 429 /
lost, p50/p95 latency, time to first token and tokens/s. With --direct ENGINE_URL (on the
host: the engine's loopback port) the same load goes to the engine too, after the gateway's,
and then one client sends the same request both ways, interleaved, for the gateway's own cost
(medians, ratio). The engine wants its own key: --engine-key, else $COURSELAB_ENGINE_KEY, else
the one in the state dir's keys/engine.env (--state-dir, else the default state dir).
Exit 1 when a request was lost.
"""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="smoke test of a running server: models, chat, streaming, 401s (PASS/FAIL)",
        description=_CHECK_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", help="the students' base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--key", help=f"a student's API key (default: ${KEY_ENV})")
    p.add_argument("--model", help="the model name students use (default: the first listed)")
    p.set_defaults(func=_run_check)

    p = sub.add_parser(
        "loadtest",
        help="simulated students at once: nothing lost, p50/p95 latency, gateway overhead",
        description=_LOADTEST_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", help="the students' base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--keys", required=True, metavar="CSV", help="keys from `keys issue --out`")
    p.add_argument("--students", type=int, help="how many students (default: every key in the CSV)")
    p.add_argument("--requests", type=int, default=3, help="requests per student (default 3)")
    p.add_argument("--max-tokens", type=int, default=16, help="per request (default 16)")
    p.add_argument("--model", help="model name sent (default: the first the server lists)")
    p.add_argument(
        "--stream-every", type=int, default=2, help="stream every n-th request (0: none)"
    )
    p.add_argument("--think", type=float, default=0.0, help="mean seconds between requests")
    p.add_argument("--direct", metavar="ENGINE_URL", help="also send them to the engine itself")
    p.add_argument(
        "--rounds", type=int, default=30, help="with --direct: overhead rounds (default 30)"
    )
    p.add_argument(
        "--engine-key",
        help=f"with --direct: the engine's key (default: ${ENGINE_KEY_ENV}, else the state dir's)",
    )
    p.add_argument("--state-dir", help="with --direct: where the engine's key is kept")
    p.set_defaults(func=_run_loadtest)

    p = sub.add_parser(
        "dry-run",
        help="up a throwaway CPU deployment, check, load test, status, down (make demo)",
    )
    p.add_argument("--model", default="course-chat", help="course model or .gguf")
    p.add_argument("--students", type=int, default=10, help="simulated students (default 10)")
    p.add_argument("--requests", type=int, default=2, help="requests each (default 2)")
    p.add_argument("--plot", metavar="PNG", help="where to keep status's usage plot")
    p.set_defaults(func=_run_dry_run)


def _run_check(args: argparse.Namespace) -> int:
    from server_setup.check import check

    key = args.key or os.environ.get(KEY_ENV, "")
    if not key:
        raise CourseError(
            "check needs a student key.", hint=f"Pass --key sk-course-... or set {KEY_ENV}."
        )
    report = check(args.url, key=key, model=args.model)
    print(report.table())
    return 0 if report.ok else 1


def read_keys(path: Path) -> dict[str, str]:
    """Student id -> key from a hand-out CSV (``keys issue --out``)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            keys = {row["student_id"]: row["api_key"] for row in csv.DictReader(f)}
    except FileNotFoundError:
        raise CourseError(
            f"{path} does not exist.", hint="Write it with keys issue --out."
        ) from None
    except KeyError:
        raise CourseError(
            f"{path} has no student_id and api_key columns.",
            hint="Give the CSV that `python -m server_setup keys issue --out` wrote.",
        ) from None
    if not keys:
        raise CourseError(f"{path} holds no keys.", hint="Issue keys from the roster first.")
    return keys


def _run_loadtest(args: argparse.Namespace) -> int:
    from server_setup.loadtest import load_test, overhead, overhead_table, summary_table

    keys = read_keys(Path(args.keys))
    if args.students:
        if args.students > len(keys):
            raise CourseError(
                f"{args.students} students asked, {args.keys} has {len(keys)} keys.",
                hint="Issue more keys (a generated roster will do) or ask for fewer students.",
            )
        keys = dict(list(keys.items())[: args.students])
    options = dict(
        requests_each=args.requests,
        max_tokens=args.max_tokens,
        model=args.model,
        stream_every=args.stream_every,
        think_s=args.think,
    )
    rows = [("gateway", load_test(args.url, keys, **options))]
    if args.direct:
        engine_key = _engine_key(args)
        direct = dict.fromkeys(keys, engine_key)  # the same students, straight to the engine
        rows.append(("direct", load_test(args.direct, direct, **options)))
    print(summary_table([(name, r.summary()) for name, r in rows]))
    if args.direct:
        key = next(iter(keys.values()))
        cost = overhead(
            args.url,
            args.direct,
            key=key,
            engine_key=engine_key,
            model=args.model,
            max_tokens=args.max_tokens,
            rounds=args.rounds,
        )
        print()
        print(overhead_table([(f"max_tokens {args.max_tokens}", cost)]))
    lost = 0
    for name, r in rows:
        for reason, count in r.losses().items():
            print(f"{name}: lost {count} x {reason}", file=sys.stderr)
            lost += count
    return 1 if lost else 0


def _engine_key(args: argparse.Namespace) -> str:
    """--engine-key, else $COURSELAB_ENGINE_KEY, else the state dir's keys/engine.env."""
    if args.engine_key or os.environ.get(ENGINE_KEY_ENV):
        return args.engine_key or os.environ[ENGINE_KEY_ENV]
    from server_setup.local import Local
    from server_setup.settings import load

    return Local.of(load(None, overrides={"state_dir": args.state_dir})).keys.engine_key()


def _run_dry_run(args: argparse.Namespace) -> int:
    from server_setup.dryrun import dry_run

    return dry_run(
        model=args.model,
        students=args.students,
        requests_each=args.requests,
        plot=Path(args.plot) if args.plot else None,
    )
