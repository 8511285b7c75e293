"""``loadtest``: simulated students on a running class server, and the gateway's own cost.

:func:`load_test` runs one thread per student, each with its own key and keep-alive
connection (every reply, streamed or not, is read to its end, so the connection is reused),
as a class does: all start together, each sends ``requests_each`` short chat
requests (every ``stream_every``-th streamed, as the ChatUI does) with a think time between
them. A 429 is counted and retried after its ``Retry-After``, as a well-behaved client does
(courselib's remote backend). Nothing may be lost: every request ends answered (HTTP 200, and a
streamed reply with its ``finish_reason``), else it is counted under ``lost`` with the reason.

:func:`overhead` sends the same request to the gateway and straight to the engine, one at a
time, interleaved (the order flips each round so neither always goes first), and reports the
medians and the median of the per-round ratios: what the gateway adds, with machine drift
cancelled.

Example::

    >>> result = load_test("http://127.0.0.1:8000/v1", keys, requests_each=3, max_tokens=16)
    >>> s = result.summary()
    >>> s["sent"], s["answered"], s["lost"]
    (90, 90, 0)
    >>> o = overhead("http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1", key=key,
    ...              engine_key=engine_key, rounds=40)
    >>> round(o.ratio, 2)
    1.04
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from courselib.errors import CourseError
from server_setup.sse import stream_choices

# Short questions course-chat answers (Lab 01's family), one per request, varied per student.
PROMPTS = (
    "What is the capital of France?",
    "What is Lab {n} about?",
    "How much is {n} + {m}?",
    "What is the capital of Japan?",
)
RETRY_AFTER_CAP_S = 30.0  # a client never sleeps longer on one 429


@dataclass(frozen=True)
class Outcome:
    """One student request, from its first send to its answer (or to giving up).

    ``latency_s`` includes the waits after each 429; ``attempt_s`` is the answered attempt
    alone; ``ttft_s`` the first text chunk of a streamed reply.
    """

    student: str
    stream: bool
    status: int
    """The last HTTP status (0: no response: connection error or timeout)."""
    latency_s: float
    attempt_s: float
    ttft_s: float | None
    rate_limited: int
    """429s this request got before its answer."""
    retry_after_missing: int
    """429s without a Retry-After header (the gateway must always send one)."""
    tokens: int
    lost: str
    """Why the request was not answered ('' when it was)."""


@dataclass(frozen=True)
class LoadResult:
    outcomes: list[Outcome]
    students: int
    wall_s: float

    def summary(self) -> dict[str, float | int]:
        """Counts, latency percentiles (ms) over answered requests, tokens/s over the run."""
        answered = [o for o in self.outcomes if not o.lost]
        latencies = [o.latency_s * 1000 for o in answered]
        ttfts = [o.ttft_s * 1000 for o in answered if o.ttft_s is not None]
        tokens = sum(o.tokens for o in answered)
        return {
            "students": self.students,
            "sent": len(self.outcomes),
            "answered": len(answered),
            "rate_limited_429": sum(o.rate_limited for o in self.outcomes),
            "retried_answered": sum(1 for o in answered if o.rate_limited),
            "retry_after_missing": sum(o.retry_after_missing for o in self.outcomes),
            "lost": len(self.outcomes) - len(answered),
            "p50_ms": percentile(latencies, 50),
            "p95_ms": percentile(latencies, 95),
            "ttft_p50_ms": percentile(ttfts, 50),
            "tokens_per_s": tokens / self.wall_s if self.wall_s else 0.0,
            "wall_s": self.wall_s,
        }

    def losses(self) -> dict[str, int]:
        """Why requests were lost, counted (empty when nothing was)."""
        reasons: dict[str, int] = {}
        for o in self.outcomes:
            if o.lost:
                reasons[o.lost] = reasons.get(o.lost, 0) + 1
        return reasons


def served_model(url: str, key: str, *, timeout_s: float = 30.0) -> str:
    """The first model ``GET {url}/models`` lists: what a student's client asks for when it
    is told no name (the gateway answers only the names it serves)."""
    try:
        r = httpx.get(
            url.rstrip("/") + "/models",
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout_s,
        )
        listed = r.json().get("data") if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        raise CourseError(
            f"{url}/models did not answer ({type(exc).__name__}): nothing was sent.",
            hint="Check the URL, and that the server is up: python -m server_setup check URL",
        ) from None
    if not listed:
        raise CourseError(
            f"{url}/models lists no model (HTTP {r.status_code}): nothing was sent.",
            hint="Check the key and the server with: python -m server_setup check URL --key KEY",
        )
    return str(listed[0]["id"])


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile, linear between ranks (numpy's default); NaN for no values.

    Example: percentile([1, 2, 3, 4], 50) -> 2.5; percentile([1, 2, 3, 4], 95) -> 3.85.
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def prompt(student: int, request: int) -> list[dict[str, str]]:
    """The ``request``-th question of student number ``student`` (the same in every run)."""
    text = PROMPTS[(student + request) % len(PROMPTS)].format(n=1 + student % 4, m=request + 2)
    return [{"role": "user", "content": text}]


def _send(
    http: httpx.Client, url: str, body: dict, headers: dict[str, str]
) -> tuple[int, float | None, int, bool, str | None]:
    """One attempt: (status, ttft s or None, tokens, finished, Retry-After header or None)."""
    start = time.perf_counter()
    if not body.get("stream"):
        r = http.post(url + "/chat/completions", json=body, headers=headers)
        if r.status_code != 200:
            return r.status_code, None, 0, False, r.headers.get("Retry-After")
        data = r.json()
        finished = bool(data["choices"][0].get("finish_reason"))
        return 200, None, int(data.get("usage", {}).get("completion_tokens", 0)), finished, None
    ttft, tokens, finish, done = None, 0, None, False
    with http.stream("POST", url + "/chat/completions", json=body, headers=headers) as r:
        if r.status_code != 200:
            r.read()
            return r.status_code, None, 0, False, r.headers.get("Retry-After")
        lines = r.iter_lines()
        for choice in stream_choices(lines):
            if choice is None:
                done = True
                break
            if choice.get("delta", {}).get("content"):
                tokens += 1  # llama-cpp-python streams one token per chunk
                ttft = ttft if ttft is not None else time.perf_counter() - start
            finish = choice.get("finish_reason") or finish
        # read the reply to its end (after [DONE], the chunked body's last chunk), as the
        # openai client does: httpx closes a connection whose response was left unread, so
        # stopping at [DONE] made every streamed request cost the student a new connection
        for _ in lines:
            pass
    return 200, ttft, tokens, bool(finish and done), None


def _student(
    url: str,
    name: str,
    key: str,
    number: int,
    *,
    requests_each: int,
    max_tokens: int,
    model: str,
    stream_every: int,
    think_s: float,
    max_retries: int,
    timeout_s: float,
    start: threading.Barrier,
    out: list[Outcome],
) -> None:
    rng = random.Random(number)  # the same think times in every run
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=timeout_s) as http:
        start.wait()
        for i in range(requests_each):
            if i and think_s:
                time.sleep(rng.uniform(0, 2 * think_s))  # mean think_s
            stream = bool(stream_every) and i % stream_every == stream_every - 1
            body = {
                "model": model,
                "messages": prompt(number, i),
                "max_tokens": max_tokens,
                "temperature": 0.0,
                "stream": stream,
            }
            first = time.perf_counter()
            limited = missing = 0
            status, ttft, tokens, finished, lost = 0, None, 0, False, ""
            while True:
                attempt = time.perf_counter()
                try:
                    status, ttft, tokens, finished, retry_after = _send(http, url, body, headers)
                except httpx.HTTPError as exc:
                    status, lost = 0, type(exc).__name__
                    break
                if status != 429:
                    break
                limited += 1
                missing += retry_after is None
                if limited > max_retries:
                    lost = f"429 after {max_retries} retries"
                    break
                time.sleep(min(float(retry_after or 1), RETRY_AFTER_CAP_S))
            end = time.perf_counter()
            if not lost and status != 200:
                lost = f"HTTP {status}"
            elif not lost and not finished:
                lost = "stream cut short" if stream else "no finish_reason"
            out.append(
                Outcome(
                    student=name,
                    stream=stream,
                    status=status,
                    latency_s=end - first,
                    attempt_s=end - attempt,
                    ttft_s=ttft,
                    rate_limited=limited,
                    retry_after_missing=missing,
                    tokens=tokens,
                    lost=lost,
                )
            )


def load_test(
    url: str,
    keys: Mapping[str, str],
    *,
    requests_each: int = 3,
    max_tokens: int = 16,
    model: str | None = None,
    stream_every: int = 2,
    think_s: float = 0.0,
    max_retries: int = 10,
    timeout_s: float = 120.0,
) -> LoadResult:
    """One thread per student in ``keys`` (student id -> API key), all started together.

    ``stream_every``: every n-th request of a student is streamed (0: none);
    ``think_s``: mean pause between a student's requests (uniform on 0..2x, seeded).
    ``url`` may be the engine itself, with the engine's key for every student
    (``TemporaryServer.engine_keys``): the same requests, no gateway. ``model``: the name
    sent (default: the first the server lists).
    """
    url = url.rstrip("/")
    if model is None:
        model = served_model(url, next(iter(keys.values())))
    out: list[Outcome] = []  # list.append is atomic under the GIL
    start = threading.Barrier(len(keys) + 1)
    threads = [
        threading.Thread(
            target=_student,
            args=(url, name, key, number),
            kwargs=dict(
                requests_each=requests_each,
                max_tokens=max_tokens,
                model=model,
                stream_every=stream_every,
                think_s=think_s,
                max_retries=max_retries,
                timeout_s=timeout_s,
                start=start,
                out=out,
            ),
            daemon=True,
        )
        for number, (name, key) in enumerate(keys.items())
    ]
    for t in threads:
        t.start()
    start.wait()  # every client is ready: the clock starts with the first request
    began = time.perf_counter()
    for t in threads:
        t.join()
    return LoadResult(out, len(keys), time.perf_counter() - began)


SUMMARY_COLUMNS = (
    ("students", "students", "{:d}"),
    ("sent", "sent", "{:d}"),
    ("answered", "answered", "{:d}"),
    ("429", "rate_limited_429", "{:d}"),
    ("retried ok", "retried_answered", "{:d}"),
    ("lost", "lost", "{:d}"),
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p95 ms", "p95_ms", "{:.1f}"),
    ("ttft p50 ms", "ttft_p50_ms", "{:.1f}"),
    ("tok/s", "tokens_per_s", "{:.0f}"),
)


def summary_table(rows: list[tuple[str, dict]]) -> str:
    """Load-test summaries side by side, one row each (``LoadResult.summary()``)."""
    header = ["path"] + [title for title, _, _ in SUMMARY_COLUMNS]
    cells = [[name] + [fmt.format(s[key]) for _, key, fmt in SUMMARY_COLUMNS] for name, s in rows]
    return _columns(header, cells)


def _columns(header: list[str], cells: list[list[str]]) -> str:
    """A fixed-width table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]

    def line(values: list[str]) -> str:
        pairs = enumerate(zip(values, widths, strict=True))
        return "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in pairs)

    return "\n".join([line(header), *(line(r) for r in cells)])


@dataclass(frozen=True)
class Overhead:
    """Gateway vs engine on the same requests: medians (ms) and the median per-round ratio."""

    rounds: int
    max_tokens: int
    tokens: float
    """Median completion tokens per request (the same on both paths: greedy decoding)."""
    gateway_ms: float
    direct_ms: float
    ratio: float
    ratio_iqr: tuple[float, float]
    """The per-round ratios' 25th and 75th percentiles: how far one round's noise reaches."""
    added_ms: float
    """Median per-round difference, gateway - direct."""


def overhead(
    gateway_url: str,
    engine_url: str,
    *,
    key: str,
    engine_key: str | None = None,
    rounds: int = 30,
    max_tokens: int = 16,
    model: str | None = None,
    warmup: int = 3,
) -> Overhead:
    """One client, one request at a time: each round sends the same request both ways.

    ``key`` is a student's (the gateway), ``engine_key`` the engine's own (default: ``key``,
    for an engine that takes none). A 429 from the gateway (a class server's own limit) is
    waited out and the request sent again; only the answered attempt is timed. ``model``: the
    name sent both ways (default: the first the gateway lists).
    """
    if model is None:
        model = served_model(gateway_url, key)
    body = {
        "model": model,
        "messages": prompt(0, 0),
        "max_tokens": max_tokens,
        "temperature": 0.0,
    }
    headers = {
        "gateway": {"Authorization": f"Bearer {key}"},
        "direct": {"Authorization": f"Bearer {engine_key or key}"},
    }
    times: dict[str, list[float]] = {"gateway": [], "direct": []}
    tokens: list[int] = []
    urls = {"gateway": gateway_url.rstrip("/"), "direct": engine_url.rstrip("/")}
    with httpx.Client(timeout=120.0) as gw, httpx.Client(timeout=120.0) as direct:
        clients = {"gateway": gw, "direct": direct}

        def once(path: str) -> float:
            """Seconds of the answered attempt (a 429 is waited out, not timed)."""
            while True:
                start = time.perf_counter()
                r = clients[path].post(
                    urls[path] + "/chat/completions", json=body, headers=headers[path]
                )
                seconds = time.perf_counter() - start
                if r.status_code != 429:
                    break
                time.sleep(min(float(r.headers.get("Retry-After", 1)), RETRY_AFTER_CAP_S))
            r.raise_for_status()
            tokens.append(int(r.json()["usage"]["completion_tokens"]))
            return seconds

        for _ in range(warmup):  # connections open, the prompt cached alike on both paths
            once("gateway")
            once("direct")
        for i in range(rounds):
            order = ("gateway", "direct") if i % 2 == 0 else ("direct", "gateway")
            for path in order:
                times[path].append(once(path))
    g, d = times["gateway"], times["direct"]
    ratios = [a / b for a, b in zip(g, d, strict=True)]
    med = statistics.median
    return Overhead(
        rounds=rounds,
        max_tokens=max_tokens,
        tokens=med(tokens),
        gateway_ms=med(g) * 1000,
        direct_ms=med(d) * 1000,
        ratio=med(ratios),
        ratio_iqr=(percentile(ratios, 25), percentile(ratios, 75)),
        added_ms=med(a - b for a, b in zip(g, d, strict=True)) * 1000,
    )


def overhead_table(rows: list[tuple[str, Overhead]]) -> str:
    """Overhead measurements side by side, one row each, with the share the gateway adds."""
    header = [
        "requests",
        "rounds",
        "tokens",
        "gateway ms",
        "direct ms",
        "added ms",
        "ratio",
        "ratio p25-p75",
    ]
    cells = [
        [
            name,
            str(o.rounds),
            f"{o.tokens:.0f}",
            f"{o.gateway_ms:.2f}",
            f"{o.direct_ms:.2f}",
            f"{o.added_ms:.2f}",
            f"{o.ratio:.3f}",
            f"{o.ratio_iqr[0]:.3f}-{o.ratio_iqr[1]:.3f}",
        ]
        for name, o in rows
    ]
    return _columns(header, cells)
