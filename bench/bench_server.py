"""The class server under a class: 30 students at once through the gateway, on this CPU.

Each part starts its own throwaway CPU deployment (``server_setup.dryrun``: llama-cpp-python's
server + the nginx gateway, temp state dir, free ports, 30 keys from a generated roster) and
stops it afterwards.

1. Load: 30 students at once, each with its own key, short course-chat questions
   (max_tokens 16, every 2nd request streamed), rate limit high enough that nobody is
   throttled. The same load goes to the gateway and straight to the engine (with the
   engine's own key, which the gateway sends for the students), taking turns round by round
   (each path first in half the rounds, after one unmeasured round each): sent / answered /
   lost, p50 / p95 latency (ms, from send to the whole answer), time to first token of
   streamed replies. The engine answers one request at a time, so a student's latency is
   mostly the queue of the other 29. The ratios are medians of per-round ratios, with their
   range: the clients, the engine and nginx share this machine's CPU with whatever else runs
   on it (printed: its CPU use during part 1), and a round that slows moves that round's p95
   by more than the gateway does.
2. Rate limit: the same class against a gateway allowing 60 requests a minute with no burst:
   429s with Retry-After, counted by the clients and in the gateway's log (the two must agree),
   each retried after Retry-After, nothing lost.
3. The gateway's own cost: one client, the same request to the gateway and to the engine,
   interleaved (the order flips each round), median latency and the median per-round ratio;
   on course-chat with max_tokens 16 (a few ms a request, so nginx's fixed cost is a visible
   share) and on course-bench (~150M parameters) with max_tokens 64, a request of realistic
   length for this CPU, where it is not.

Run: ``python bench/run.py --only server [--quick]``.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from server_setup.dryrun import temporary_deployment
from server_setup.gateway import usage
from server_setup.loadtest import (
    LoadResult,
    load_test,
    overhead,
    overhead_table,
    summary_table,
)
from server_setup.local import Local

STUDENTS = 30
GOAL = 1.05  # the gateway may add at most 5% to a request's latency


def main(args) -> None:
    quick = getattr(args, "quick", False)
    rounds, requests_each = (2, 2) if quick else (4, 4)
    short_rounds, long_rounds = (15, 6) if quick else (60, 30)

    # 6000 a minute with bursts of 100 per student: the load (and part 3's single client)
    # never meets the limit, so part 1 measures the engine and the gateway, not throttling
    with temporary_deployment(students=STUDENTS, rate_per_minute=6000, rate_burst=100) as server:
        targets = {
            "gateway": (server.url, server.keys),
            "direct": (server.engine_url, server.engine_keys),  # the engine wants its own key
        }
        for url, keys in targets.values():  # unmeasured: the first round after up is slower
            load_test(url, keys, requests_each=1)
        runs: dict[str, list[LoadResult]] = {"gateway": [], "direct": []}
        nginx = [server.running.gateway_pid, *_children(server.running.gateway_pid)]
        before = _cpu_now([server.running.engine_pid, *nginx])
        for i in range(rounds):  # take turns, so the machine's drift hits both alike
            order = ("gateway", "direct") if i % 2 == 0 else ("direct", "gateway")
            for path in order:
                runs[path].append(load_test(*targets[path], requests_each=requests_each))
        cpu = _cpu_used(before, _cpu_now([server.running.engine_pid, *nginx]), nginx)
        merged = {path: _merge(results) for path, results in runs.items()}
        rows = [(path, r.summary()) for path, r in merged.items()]
        print(
            f"\n1. Load: {STUDENTS} students at once x {requests_each} requests (max_tokens 16, "
            f"every 2nd streamed), {rounds} round(s) per path, taking turns"
        )
        print(summary_table(rows))
        ratios = {
            name: sorted(
                a.summary()[key] / b.summary()[key]
                for a, b in zip(runs["gateway"], runs["direct"], strict=True)
            )
            for name, key in (("p50", "p50_ms"), ("p95", "p95_ms"))
        }
        print(
            "gateway / direct, median of the rounds' ratios (their range): "
            + ", ".join(
                f"{name} {statistics.median(r):.3f} ({r[0]:.2f}-{r[-1]:.2f})"
                for name, r in ratios.items()
            )
        )
        print(
            "under load a request waits for the ones the engine takes before it (one at a "
            "time), so these compare queues; on this machine the gateway's CPU also comes "
            "out of the cores the engine and the clients use; part 3 measures its own cost"
        )
        if cpu:
            sent = sum(r.summary()["sent"] for r in runs["gateway"])
            print(
                f"CPU during part 1 ({cpu['wall_s']:.0f} s): other processes on this machine "
                f"used {cpu['others_cores']:.2f} of its {os.cpu_count()} cores on average; "
                f"nginx {cpu['nginx_s'] / sent * 1000:.2f} ms per gateway request"
            )
        _print_losses(merged)
        short = overhead(
            server.url,
            server.engine_url,
            key=server.keys["s001"],
            engine_key=server.engine_key,
            rounds=short_rounds,
        )

    with temporary_deployment(students=STUDENTS, rate_per_minute=60, rate_burst=0) as server:
        limited = load_test(server.url, server.keys, requests_each=3)
        log = usage.usage(usage.read_log(Local.of(server.deployment).gateway.access_log))
        logged = sum(u.rate_limited for u in log)
        s = limited.summary()
        print(
            f"\n2. Rate limit 60 a minute per student, no burst: {STUDENTS} students x 3 requests "
            "at once, each 429 retried after its Retry-After"
        )
        print(summary_table([("gateway", s)]))
        print(
            f"429s counted by the clients {s['rate_limited_429']}, in the gateway's log {logged}; "
            f"429s without Retry-After {s['retry_after_missing']}"
        )
        _print_losses({"gateway": limited})

    with temporary_deployment(model="course-bench", students=1, rate_per_minute=6000) as server:
        long = overhead(
            server.url,
            server.engine_url,
            key=server.keys["s001"],
            engine_key=server.engine_key,
            rounds=long_rounds,
            max_tokens=64,
        )
    print("\n3. The gateway's own cost: one client, the same request both ways, interleaved")
    print(
        overhead_table(
            [("course-chat, max_tokens 16", short), ("course-bench, max_tokens 64", long)]
        )
    )
    for name, o in (("course-chat", short), ("course-bench", long)):
        if o.ratio <= GOAL:
            verdict = "meets"
        elif o.ratio_iqr[0] <= GOAL:  # a quarter of the rounds or more are under the goal
            verdict = "misses, within this run's round-to-round spread,"
        else:
            verdict = "misses"
        print(
            f"{name}: the gateway adds {o.added_ms:.2f} ms to {o.direct_ms:.1f} ms "
            f"({(o.ratio - 1) * 100:+.1f}%): {verdict} the <= {(GOAL - 1) * 100:.0f}% goal"
        )


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (nginx's workers), from /proc; none elsewhere."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(entry.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _cpu_now(pids: list[int]) -> dict | None:
    """CPU seconds so far: the machine's busy time (all cores), each pid's, this process's;
    None without Linux's /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0]
        fields = [int(v) for v in first.split()[1:]]
        per_pid = {}
        for pid in pids:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            per_pid[pid] = (int(stat[11]) + int(stat[12])) / tick  # utime + stime
    except (OSError, ValueError, IndexError):
        return None
    # user nice system idle iowait irq softirq steal (guest time is inside user)
    busy = (sum(fields[:8]) - fields[3] - fields[4]) / tick
    return {"t": time.perf_counter(), "busy": busy, "pids": per_pid, "self": time.process_time()}


def _cpu_used(before: dict | None, after: dict | None, nginx: list[int]) -> dict | None:
    """Between two :func:`_cpu_now`: the other processes' average cores, nginx's CPU seconds."""
    if not before or not after:
        return None
    wall = after["t"] - before["t"]
    mine = sum(after["pids"][p] - before["pids"][p] for p in before["pids"])
    mine += after["self"] - before["self"]
    return {
        "wall_s": wall,
        "others_cores": max(after["busy"] - before["busy"] - mine, 0.0) / wall,
        "nginx_s": sum(after["pids"][p] - before["pids"][p] for p in nginx),
    }


def _merge(results: list[LoadResult]) -> LoadResult:
    """The rounds of one path as one result (percentiles over all their requests)."""
    return LoadResult(
        [o for r in results for o in r.outcomes],
        results[0].students,
        sum(r.wall_s for r in results),
    )


def _print_losses(results: dict[str, LoadResult]) -> None:
    for path, r in results.items():
        for reason, count in r.losses().items():
            print(f"LOST ({path}): {count} x {reason}")
