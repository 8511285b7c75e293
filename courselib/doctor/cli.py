"""``python -m courselib doctor [--for ROLE] [--only NAME ...]``: the checks as PASS/FAIL lines."""

from __future__ import annotations

import argparse

from courselib.doctor.checks import BY_NAME, ROLES, checks_for, run_checks


def register(sub: argparse._SubParsersAction) -> None:
    lines = "\n".join(f"  {c.name:<15} ({c.role}) {c.what}" for c in BY_NAME.values())
    parser = sub.add_parser(
        "doctor",
        help="check that this machine can run the course (one PASS/FAIL line each)",
        description="Check, each in its own process, what the course needs on this machine; a "
        "failure says what to do. Exit status 1 when a check fails.\n\nchecks (role):\n" + lines,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--for",
        dest="role",
        choices=ROLES,
        default="student",
        help="whose checks: student (the labs), instructor (+ grading sandbox), ops (+ gateway), "
        "dev (+ browser tests); default student",
    )
    parser.add_argument(
        "--only", action="append", choices=list(BY_NAME), help="run only this check (repeatable)"
    )
    parser.set_defaults(func=_doctor)


def _doctor(args) -> int:
    names = args.only or [c.name for c in checks_for(args.role)]
    failed = 0
    for outcome in run_checks(names):
        print(outcome.line(), flush=True)
        failed += outcome.status != "PASS"
    if len(names) > 1:
        print(f"{len(names) - failed} of {len(names)} checks passed.")
    return 1 if failed else 0
