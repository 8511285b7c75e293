"""`make bench`: run every bench/bench_*.py and print its tables.

Each bench module exposes ``main(args) -> None`` and prints its own tables of medians and
ratios, measured side by side in this one run. ``--only NAME`` runs one module
(e.g. ``--only models``); ``--quick`` asks each for fewer repetitions.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", action="append", default=[], help="run only bench_NAME.py (repeatable)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (noisier medians)")
    args = parser.parse_args()
    modules = sorted(HERE.glob("bench_*.py"))
    if args.only:
        modules = [m for m in modules if m.stem.removeprefix("bench_") in args.only]
    failed = []
    for path in modules:
        print(f"\n=== {path.stem} " + "=" * (70 - len(path.stem)), flush=True)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        start = time.perf_counter()
        try:
            spec.loader.exec_module(module)
            module.main(args)
        except Exception as exc:  # one broken benchmark must not hide the others' numbers
            failed.append(path.stem)
            print(f"FAILED: {type(exc).__name__}: {exc}", flush=True)
        print(f"({path.stem}: {time.perf_counter() - start:.0f} s)", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
