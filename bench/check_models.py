"""`make check-models`: does every build of course-chat clear the tests' floors?

Every machine runs the shipped course-chat, but training from scratch stays a path students
take (`python -m courselib models train`) and how the shipped checkpoint is made; another CPU,
seed or thread count takes training down another trajectory. This trains course-chat from
scratch for several seeds x thread counts (each in its own process and temporary folder,
nothing published) and prints, per build: training steps and gate rounds, held-out accuracy per question family
(Q4_K_M, greedy, through llama.cpp), accuracy after 4 earlier exchanges, and whether it clears
``courselib.models.evaluate.FLOORS``. The last line names the worst build. Exit status 1 when
any build misses a floor or fails its gate.

Builds run side by side while their threads fit the cores (two 1-thread builds at once on 2
cores). A build takes 8-18 minutes on 2 cores (a 1-thread build beside another: 13-18): the
default 3 seeds x (1, 2) threads took 58 minutes on a 2-core AMD EPYC.

Run: ``python bench/check_models.py [--seeds 0 1 2] [--threads 1 2] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # seed threads out
    args = parser.parse_args()
    if args.one:
        seed, threads, out = args.one
        _build_one(int(seed), int(threads), Path(out))
        return 0

    jobs = [(s, t) for t in sorted(args.threads, reverse=True) for s in args.seeds]
    results = _run_all(jobs, cores=args.cores)
    _print(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    return 0 if all(r.get("ok") for r in results) else 1


def _run_all(jobs: list[tuple[int, int]], *, cores: int) -> list[dict]:
    """Run one process per build, as many at once as their threads fit ``cores``."""
    pending, running, results = list(jobs), [], []
    with tempfile.TemporaryDirectory() as tmp:
        while pending or running:
            busy = sum(t for _, t, _, _ in running)
            while pending and (not running or busy + pending[0][1] <= cores):
                seed, threads = pending.pop(0)
                out = Path(tmp) / f"seed{seed}-t{threads}.json"
                log = open(Path(tmp) / f"seed{seed}-t{threads}.log", "w")  # noqa: SIM115
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--one",
                        str(seed),
                        str(threads),
                        str(out),
                    ],  # fmt: skip
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "COURSELAB_THREADS": str(threads), "TQDM_DISABLE": "1"},
                )
                running.append((seed, threads, proc, out))
                busy += threads
                print(f"building seed {seed} on {threads} thread(s) ...", flush=True)
            time.sleep(2)
            for job in [j for j in running if j[2].poll() is not None]:
                seed, threads, proc, out = job
                running.remove(job)
                if out.exists():
                    result = json.loads(out.read_text())
                else:
                    tail = (Path(tmp) / f"seed{seed}-t{threads}.log").read_text()[-600:]
                    result = {"seed": seed, "threads": threads, "ok": False, "error": tail}
                print(f"  seed {seed}, {threads} thread(s): {_verdict(result)}", flush=True)
                results.append(result)
    return sorted(results, key=lambda r: (r["seed"], r["threads"]))


def _build_one(seed: int, threads: int, out: Path) -> None:
    """Child process: train course-chat from scratch with this seed into a temp dir (one seed,
    no fallback: the margin of each seed is what is measured); write the results."""
    from courselib.errors import CourseError
    from courselib.models import COURSE_MODELS
    from courselib.models.evaluate import heldout_accuracy
    from courselib.models.scratch import train_checkpoint

    base = COURSE_MODELS["course-chat"]
    spec = dataclasses.replace(base, seed=seed, train=dataclasses.replace(base.train, seed=seed))
    result: dict = {"seed": seed, "threads": threads}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "course-chat"
        try:
            manifest = train_checkpoint(spec, root, threads=threads, tries=1, log=lambda *_: None)
        except CourseError as exc:
            result.update(ok=False, error=exc.message, minutes=(time.perf_counter() - start) / 60)
            out.write_text(json.dumps(result))
            return
        q4 = root / "course-chat-Q4_K_M.gguf"
        acc = heldout_accuracy(q4)
        later = heldout_accuracy(q4, history=4)
        misses = acc.below_floors() + later.below_floors(history=True)
        result.update(
            ok=not misses,
            misses=misses,
            minutes=manifest["training"]["minutes"],
            steps=manifest["training"]["steps"],
            gate_rounds=len(manifest["training"]["gate"]),
            heldout=acc.rate,
            by_family=acc.by_family,
            after_history=later.rate,
            failures=acc.failures[:8],
        )
    out.write_text(json.dumps(result, ensure_ascii=False))


def _verdict(r: dict) -> str:
    if "error" in r:
        return f"FAILED: {r['error'].strip().splitlines()[-1] if r['error'].strip() else '?'}"
    return "clears every floor" if r["ok"] else "MISSES " + ", ".join(r["misses"])


def _print(results: list[dict]) -> None:
    families = list(dict.fromkeys(f for r in results for f in r.get("by_family", {})))
    head = f"{'seed':>4} {'thr':>3} {'steps':>5} {'min':>5} {'held-out':>8} {'hist4':>6} "
    print("\n" + head + " ".join(f"{f[:10]:>10}" for f in families) + "  verdict")
    for r in results:
        if "error" in r:
            print(f"{r['seed']:>4} {r['threads']:>3}  {_verdict(r)}")
            continue
        cells = " ".join(f"{r['by_family'].get(f, float('nan')):>10.0%}" for f in families)
        print(
            f"{r['seed']:>4} {r['threads']:>3} {r['steps']:>5} {r['minutes']:>5.1f} "
            f"{r['heldout']:>8.1%} {r['after_history']:>6.1%} {cells}  {_verdict(r)}"
        )
    built = [r for r in results if "error" not in r]
    if built:
        worst = min(built, key=lambda r: (min(r["by_family"].values()), r["heldout"]))
        low = min(worst["by_family"], key=worst["by_family"].get)
        print(
            f"\nworst build: seed {worst['seed']}, {worst['threads']} thread(s): held-out "
            f"{worst['heldout']:.1%}, lowest family {low} {worst['by_family'][low]:.0%}, "
            f"after 4 exchanges {worst['after_history']:.1%}"
        )
    failed = [r for r in results if not r.get("ok")]
    print(f"{len(results) - len(failed)} of {len(results)} builds clear every floor.")


if __name__ == "__main__":
    sys.exit(main())
