"""The class server under a class: 30 students at once through the gateway, on this CPU.

Each part starts its own throwaway CPU deployment (``server_setup.dryrun``: llama-cpp-python's
server + the nginx gateway, temp state dir, free ports, 30 keys from a generated roster) and
stops it afterwards.

1. Load: 30 students at once, each with its own key, short course-chat questions
   (max_tokens 16, every 2nd request streamed), rate limit high enough that nobody is
   throttled. The same load goes to the gateway and straight to the engine (with the
   engine's own key, which the gateway sends for the students), taking turns
   round by round: sent / answered / lost, p50 / p95 latency (ms, from send to the whole
   answer), time to first token of streamed replies. The engine answers one request at a time,
   so a student's latency is mostly the queue of the other 29.
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

import statistics

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
    rounds, requests_each = (1, 2) if quick else (3, 4)
    short_rounds, long_rounds = (15, 6) if quick else (60, 30)

    # 6000 a minute with bursts of 100 per student: the load (and part 3's single client)
    # never meets the limit, so part 1 measures the engine and the gateway, not throttling
    with temporary_deployment(students=STUDENTS, rate_per_minute=6000, rate_burst=100) as server:
        runs: dict[str, list[LoadResult]] = {"gateway": [], "direct": []}
        for i in range(rounds):  # take turns, so the machine's drift hits both alike
            order = ("gateway", "direct") if i % 2 == 0 else ("direct", "gateway")
            for path in order:
                url, keys = (
                    (server.url, server.keys)
                    if path == "gateway"
                    else (server.engine_url, server.engine_keys)  # the engine wants its own key
                )
                runs[path].append(load_test(url, keys, requests_each=requests_each))
        merged = {path: _merge(results) for path, results in runs.items()}
        rows = [(path, r.summary()) for path, r in merged.items()]
        print(
            f"\n1. Load: {STUDENTS} students at once x {requests_each} requests (max_tokens 16, "
            f"every 2nd streamed), {rounds} round(s) per path, taking turns"
        )
        print(summary_table(rows))
        g, d = rows[0][1], rows[1][1]
        p50 = statistics.median(
            a.summary()["p50_ms"] / b.summary()["p50_ms"]
            for a, b in zip(runs["gateway"], runs["direct"], strict=True)
        )
        print(
            f"gateway / direct: p50 {p50:.3f} (median of rounds), p95 "
            f"{g['p95_ms'] / d['p95_ms']:.3f}: under load a request waits for the ones the "
            "engine takes before it (one at a time), so these compare queues; part 3 "
            "measures the gateway's own cost"
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
            model="course-bench",
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
