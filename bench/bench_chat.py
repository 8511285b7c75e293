"""Lab 01's claims, measured on course-bench (~150M params, random weights), side by side.

1. llama.cpp Q4_0 vs transformers fp32 on the same prompt and the same number of greedy
   tokens, each run in a fresh process: decode tokens/s and peak RSS (ratios).
2. Q4_0 decode as a fraction of the memory-bandwidth roofline: bytes of weights read per token
   vs the bandwidth measured in this run with decode's thread count (``memory_bandwidth``: a
   STREAM-like parallel read of >= 512 MiB, median of repeats). A fraction above 1 is not a
   result: the note printed under the table says why (weights served from cache, or the
   bandwidth under-measured on a busy machine).
3. ChatUI streaming overhead vs iterating the raw backend: time to first token and tokens/s,
   for the synchronous path (ui.send) and the notebook path (Enter starts an asyncio task on a
   running loop; the backend's long-lived engine thread pulls the tokens, the task draws them
   once per redraw tick), as ratios to raw and the first token's delay vs raw in ms; and raw
   from a new thread (the engine off the main thread, no UI). The paths take turns, one reply
   each per round; "vs raw" is the median over rounds of each round's ratio, so the machine's
   drift (on a shared VM, 2x between minutes) cancels. Every path runs llama.cpp on another
   thread of one process: what libgomp's per-thread teams cost is in docs/facts.md#openmp-teams.
4. llama.cpp decode on the main thread after a second, kept thread has decoded once (as a
   notebook cell and the ChatUI's engine thread do), with each thread's OpenMP team freed after
   every reply (``release_openmp_threads``, what the backend does) and kept (what libgomp does
   by itself), against decoding on one thread only (docs/facts.md#openmp-teams).

Run: ``python bench/run.py --only chat [--quick]``.
"""

from __future__ import annotations

import asyncio
import statistics
import textwrap
import threading
import time

from courselib import settings
from courselib.backends import GenerationConfig, Message, llamacpp, open_backend
from courselib.measure.speed import (
    DEFAULT_PROMPT,
    measure_gguf,
    measure_transformers,
    memory_bandwidth,
    roofline_note,
    weight_bytes_per_token,
)
from courselib.models import gguf_file, hf_dir
from courselib.widgets.chat_ui import ChatUI

MODEL = "course-bench"


def main(args) -> None:
    quick = getattr(args, "quick", False)
    engine_runs, ui_runs = (1, 3) if quick else (3, 7)
    max_tokens = 32 if quick else 64
    q4, hf = gguf_file(MODEL, "Q4_0"), hf_dir(MODEL)
    print(f"{MODEL}: {q4.name} vs {hf.name} (fp32), {max_tokens} greedy tokens, median of runs")

    gguf_runs, hf_runs = [], []
    for _ in range(engine_runs):  # interleaved, so machine noise hits both alike
        gguf_runs.append(measure_gguf(q4, max_tokens=max_tokens, label="llama.cpp Q4_0"))
        hf_runs.append(measure_transformers(hf, max_tokens=max_tokens))
    rows = [
        _engine_row(name, runs)
        for name, runs in [("llama.cpp Q4_0", gguf_runs), ("transformers fp32", hf_runs)]
    ]
    q4_tps, hf_tps = rows[0][1], rows[1][1]
    q4_rss, hf_rss = rows[0][2], rows[1][2]
    rows.append(
        [
            "ratio Q4 / fp32",
            q4_tps / hf_tps,
            q4_rss / hf_rss,
            rows[0][3] / rows[1][3],
            rows[0][4] / rows[1][4],
        ]
    )
    _table(
        f"1. Q4 llama.cpp vs fp32 transformers ({engine_runs} fresh process(es) each)",
        ["engine", "decode tok/s", "peak RSS MiB", "first token s", "load s"],
        rows,
    )

    threads = settings.resolve("threads")  # as measure_gguf decodes
    bandwidths = [memory_bandwidth(threads=threads) for _ in range(1 if quick else 3)]
    bandwidth = statistics.median(bandwidths)
    per_token = weight_bytes_per_token(q4)
    roofline = bandwidth / per_token
    _table(
        f"2. Q4 decode vs the memory-bandwidth roofline ({threads} threads read, as decode)",
        ["bandwidth GB/s", "MB read/token", "roofline tok/s", "measured tok/s", "fraction"],
        [[bandwidth / 1e9, per_token / 1e6, roofline, q4_tps, q4_tps / roofline]],
    )
    note = roofline_note(q4_tps / roofline, bytes_per_token=per_token)
    if note:
        print(textwrap.fill(note, width=96))

    backend = open_backend(str(q4), n_ctx=512)
    try:
        config = GenerationConfig(max_tokens=max_tokens, temperature=0.0)
        messages = [Message("system", "You are a benchmark."), Message("user", DEFAULT_PROMPT)]
        paths = {
            "raw backend.stream": lambda: _raw_stream(backend, messages, config),
            "raw, from a new thread": lambda: _raw_stream_in_thread(backend, messages, config),
            "ChatUI.send (sync)": lambda: _ui_sync(backend, config),
            "ChatUI click (asyncio task)": lambda: _ui_task(backend, config),
        }
        runs: dict[str, list[tuple[int, float, float]]] = {name: [] for name in paths}
        for _ in range(ui_runs):
            for name, run in paths.items():
                runs[name].append(run())
        raw = runs["raw backend.stream"]
        rows = []
        for name, measured in runs.items():  # each round's ratio to raw's run of that round
            row = _stream_row(name, measured)
            ratio = statistics.median(m[2] / r[2] for m, r in zip(measured, raw, strict=True))
            delay = statistics.median(m[1] - r[1] for m, r in zip(measured, raw, strict=True))
            rows.append([*row, ratio, delay * 1000])
        _table(
            f"3. ChatUI streaming overhead (llama.cpp Q4_0, {ui_runs} runs each, interleaved)",
            [
                "path",
                "tokens",
                "first token ms",
                "decode tok/s",
                "tok/s vs raw",
                "first token vs raw ms",
            ],
            rows,
        )
        speeds = {
            "one thread only": _decode_runs(backend, messages, config, ui_runs),
            "second thread, teams freed": _after_a_kept_thread(
                backend, messages, config, ui_runs, release=True
            ),
            "second thread, teams kept": _after_a_kept_thread(
                backend, messages, config, ui_runs, release=False
            ),
        }
        alone = speeds["one thread only"]
        _table(
            f"4. main-thread decode after another thread decoded ({ui_runs} runs each)",
            ["case", "decode tok/s", "vs one thread"],
            [[name, v, v / alone] for name, v in speeds.items()],
        )
    finally:
        backend.close()


def _decode_runs(backend, messages, config, runs: int) -> float:
    return statistics.median(_raw_stream(backend, messages, config)[2] for _ in range(runs))


def _after_a_kept_thread(backend, messages, config, runs: int, *, release: bool) -> float:
    """Median main-thread decode tok/s while a second thread that decoded once stays alive;
    ``release=False`` keeps every thread's OpenMP team (the backend's release switched off)."""
    saved = llamacpp.release_openmp_threads
    if not release:
        llamacpp.release_openmp_threads = lambda: None
    go, done = threading.Event(), threading.Event()

    def kept() -> None:
        _raw_stream(backend, messages, config)
        done.set()
        go.wait()  # alive (with its team, unless released) while the main thread decodes

    thread = threading.Thread(target=kept)
    thread.start()
    try:
        done.wait()
        return _decode_runs(backend, messages, config, runs)
    finally:
        go.set()
        thread.join()  # a thread's team ends with it
        llamacpp.release_openmp_threads = saved


def _engine_row(name: str, runs: list) -> list:
    med = statistics.median
    return [
        name,
        med(r.decode_tokens_per_s for r in runs),
        med(r.peak_rss_bytes for r in runs) / 2**20,
        med(r.ttft_s for r in runs),
        med(r.load_s for r in runs),
    ]


def _raw_stream(backend, messages, config) -> tuple[int, float, float]:
    """(tokens, time to first token s, decode tokens/s) of iterating the backend directly.

    Counts pieces as ChatUI's stats do: the "" a backend yields for a token that is half a
    character or a possible stop string is not a piece (random weights yield many)."""
    start = time.perf_counter()
    stamps = [time.perf_counter() for piece in backend.stream(messages, config=config) if piece]
    return len(stamps), stamps[0] - start, (len(stamps) - 1) / (stamps[-1] - stamps[0])


def _raw_stream_in_thread(backend, messages, config) -> tuple[int, float, float]:
    """_raw_stream from a new thread, as the click path drives the engine: llama.cpp can run at
    another speed off the main thread (its OpenMP workers), which is not the UI's cost."""
    result = []
    thread = threading.Thread(target=lambda: result.append(_raw_stream(backend, messages, config)))
    thread.start()
    thread.join()
    return result[0]


def _ui_sync(backend, config) -> tuple[int, float, float]:
    ui = ChatUI(backend, system="You are a benchmark.", config=config)
    ui.send(DEFAULT_PROMPT)
    return ui.stats.tokens, ui.stats.ttft_s, ui.stats.tokens_per_s


def _ui_task(backend, config) -> tuple[int, float, float]:
    """As a notebook runs it: Enter starts the reply's task on a running loop, which draws it."""
    ui = ChatUI(backend, system="You are a benchmark.", config=config)

    async def chat() -> None:
        ui.input.value = DEFAULT_PROMPT  # Enter: starts the task on this running loop
        await ui.task

    asyncio.run(chat())
    return ui.stats.tokens, ui.stats.ttft_s, ui.stats.tokens_per_s


def _stream_row(name: str, runs: list[tuple[int, float, float]]) -> list:
    med = statistics.median
    return [name, med(r[0] for r in runs), med(r[1] for r in runs) * 1000, med(r[2] for r in runs)]


def _table(title: str, header: list[str], rows: list[list]) -> None:
    cells = [[f"{v:.3g}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print(
        "  ".join(
            h.rjust(w) if i else h.ljust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    )
    for row in cells:
        print(
            "  ".join(
                v.rjust(w) if i else v.ljust(w)
                for i, (v, w) in enumerate(zip(row, widths, strict=True))
            )
        )
