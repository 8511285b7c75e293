"""How big and how fast a model is on this machine: size, RAM, load, first token, tokens/s.

Used by Lab 01 (F16 vs Q8_0 vs Q4 on the student's own machine) and bench/bench_chat.py.
Every measurement runs in a fresh process (:func:`courselib.measure.run_isolated`), so its peak
RSS is that model's alone. Decoding is greedy and never stops early: exactly ``max_tokens``
tokens are generated, so two engines or two quantizations are timed on the same work.

Why 4-bit matters: generating one token reads every weight once, so on a CPU decoding is
memory-bound and ``tokens/s <= bandwidth / weight bytes``. :func:`memory_bandwidth` measures
the bandwidth, :func:`weight_bytes_per_token` the bytes; their ratio is the roofline.

Example::

    >>> r = measure_gguf(gguf_file("course-chat", "Q4_K_M"), max_tokens=32)
    >>> r.decode_tokens_per_s, r.peak_rss_bytes / 2**20          # doctest: +SKIP
    (812.4, 61.2)
    >>> speed_table([r])                                          # a pandas DataFrame
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from courselib import settings
from courselib.chat.vicuna import render_vicuna
from courselib.errors import CourseError, require
from courselib.measure.runner import run_isolated

if TYPE_CHECKING:
    import pandas

DEFAULT_PROMPT = render_vicuna([("user", "Tell me about the labs of this course.")])


@dataclass(frozen=True)
class SpeedResult:
    """One model measured in its own process (sizes in bytes, times in seconds)."""

    label: str
    """What was measured, e.g. 'Q4_K_M' or 'transformers fp32'."""
    file_bytes: int
    """Size of the weights on disk (a GGUF file, or a checkpoint folder's files)."""
    load_s: float
    peak_rss_bytes: int
    """Peak resident memory of the measuring process (Python and the engine included)."""
    added_rss_bytes: int
    """Peak RSS minus the process's RSS before loading: what the model itself needed."""
    prompt_tokens: int
    ttft_s: float
    """Prompt processing plus the first generated token."""
    tokens: int
    decode_tokens_per_s: float
    """Generated tokens after the first, per second after the first."""


def measure_gguf(
    path: str | os.PathLike[str],
    *,
    prompt: str = DEFAULT_PROMPT,
    max_tokens: int = 32,
    threads: int | None = None,
    n_ctx: int = 512,
    label: str | None = None,
) -> SpeedResult:
    """Load a GGUF with llama.cpp in a fresh process and time ``max_tokens`` greedy tokens.

    Example: ``measure_gguf("model-Q4_K_M.gguf", max_tokens=64, threads=4)``.
    """
    path = _existing(path)
    iso = run_isolated(
        "courselib.measure.speed:_gguf_child",
        imports=["llama_cpp"],  # the engine's code is the process's, not the model's RAM
        path=str(path),
        prompt=prompt,
        max_tokens=max_tokens,
        threads=settings.resolve("threads", threads),
        n_ctx=n_ctx,
    )
    return _result(label or path.stem, path.stat().st_size, iso)


def measure_transformers(
    path: str | os.PathLike[str],
    *,
    prompt: str = DEFAULT_PROMPT,
    max_tokens: int = 32,
    threads: int | None = None,
    label: str = "transformers fp32",
) -> SpeedResult:
    """Load a Hugging Face checkpoint folder in fp32 in a fresh process; time greedy tokens.

    Example: ``measure_transformers(hf_dir("course-bench"), max_tokens=64)``.
    """
    path = _existing(path)
    size = sum(f.stat().st_size for f in path.iterdir() if f.suffix in (".safetensors", ".bin"))
    iso = run_isolated(
        "courselib.measure.speed:_transformers_child",
        imports=["torch", "transformers"],  # the engine's code is not the model's RAM
        path=str(path),
        prompt=prompt,
        max_tokens=max_tokens,
        threads=settings.resolve("threads", threads),
    )
    return _result(label, size, iso)


def speed_table(results: list[SpeedResult]) -> pandas.DataFrame:
    """One row per result, in MB / MiB, seconds and tokens/s (for a notebook or a bench)."""
    pd = require("pandas", extra="lab")
    rows = [
        {
            "model": r.label,
            "file MB": r.file_bytes / 1e6,
            "peak RAM MiB": r.peak_rss_bytes / 2**20,
            "model RAM MiB": r.added_rss_bytes / 2**20,
            "load s": r.load_s,
            "first token s": r.ttft_s,
            "tokens/s": r.decode_tokens_per_s,
        }
        for r in results
    ]
    return pd.DataFrame(rows).set_index("model").round(3)


def memory_bandwidth(
    *, threads: int | None = None, n_bytes: int | None = None, repeats: int = 7
) -> float:
    """Bytes per second this machine reads from RAM with ``threads`` threads, as decode does.

    llama.cpp decodes on ``threads`` threads (the ``threads`` setting, as :func:`measure_gguf`),
    each reading its share of every weight matrix, and one core alone cannot saturate the
    memory of most machines: on a 2-core AMD EPYC one thread read 17 GB/s, two 28 GB/s, and
    decoding with two threads read weights at 22.8 GB/s, above the one-thread "ceiling".
    So, STREAM-like: one buffer far larger than the last-level cache (at least 512 MiB and 8x
    that cache, see :func:`last_level_cache_bytes`) of int64 ones is cut into one contiguous
    chunk per thread; each thread sums its chunk (numpy releases the GIL in reductions, and
    one SIMD integer add per 8 bytes is limited by memory, not arithmetic), and the whole
    parallel read is timed. Writing the ones touches every page first; the first read (thread
    start) is not timed; the result is the median of ``repeats``.
    Example: ``memory_bandwidth(threads=2)`` -> ``2.8e10`` (28 GB/s).
    """
    np = require("numpy", extra="models")
    threads = settings.resolve("threads", threads)
    if n_bytes is None:
        n_bytes = _bandwidth_buffer_bytes(last_level_cache_bytes())
    data = np.ones(n_bytes // 8, dtype=np.int64)  # written: no lazily mapped zero pages
    chunks = np.array_split(data, threads)
    with ThreadPoolExecutor(max_workers=threads) as pool:

        def read_all() -> float:
            start = time.perf_counter()
            total = sum(pool.map(np.sum, chunks))  # waits for every thread
            assert total == data.size  # every chunk was read, once
            return time.perf_counter() - start

        read_all()  # warm-up: thread start, not bandwidth
        seconds = sorted(read_all() for _ in range(repeats))
    return data.nbytes / seconds[len(seconds) // 2]


def _bandwidth_buffer_bytes(cache_bytes: int | None) -> int:
    """512 MiB, or 8x the last-level cache where that is more (capped at 4 GiB of RAM)."""
    return min(max(512 * 2**20, 8 * (cache_bytes or 0)), 4 * 2**30)


def last_level_cache_bytes() -> int | None:
    """Size of the CPU's largest cache (usually L3) in bytes, or None where it is unknown.

    Read from Linux's ``/sys/devices/system/cpu/cpu0/cache/index*/{level,size}`` (the same
    numbers ``lscpu`` prints; a virtual machine sees what its hypervisor reports). A buffer
    much larger than this cache is read from RAM; a model smaller than it partly is not.
    """
    best: tuple[int, int] | None = None
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = int((index / "level").read_text())
            size = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        try:
            n = int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
        except ValueError:
            continue
        if best is None or (level, n) > best:
            best = (level, n)
    return best[1] if best else None


def roofline_note(fraction: float, *, bytes_per_token: float | None = None) -> str:
    """Why a measured decode speed exceeds its roofline, or ``""`` when it does not.

    ``fraction`` is measured tokens/s divided by the roofline (bandwidth / bytes per token).
    Above 1 the roofline did not bound this measurement, and printing it as a result would
    teach something false. Reading every weight from RAM cannot beat the bandwidth, so either
    part of the weights came from the CPU's caches (a model of a few MB decodes from cache
    entirely; with ``bytes_per_token`` the note compares it with the last-level cache), or the
    bandwidth was under-measured (another program busy during the measurement, or a CPU whose
    RAM one numpy reduction per thread cannot saturate). Example: ``roofline_note(1.27)``.
    """
    if not fraction > 1:  # also "" for NaN: no claim either way
        return ""
    cache = last_level_cache_bytes()
    if cache and bytes_per_token:
        share = min(1.0, cache / bytes_per_token)
        where = (
            f"this CPU's {cache / 2**20:.0f} MiB last-level cache can hold up to {share:.0%} of "
            f"the {bytes_per_token / 1e6:.0f} MB read per token"
        )
    else:
        where = "the smaller the model, the more of its weights stay in the CPU's caches"
    return (
        f"Note: decoding ran at {fraction:.2f}x the roofline, so here the roofline is not a "
        "ceiling. Reading every weight from RAM cannot beat the memory bandwidth, so either "
        f"part of the weights was read from cache instead of RAM ({where}), or the bandwidth "
        "was measured too low (another program busy during the measurement: measure again on "
        "an idle machine). For a model of several GB, far larger than any cache, decoding "
        "stays below the roofline."
    )


def weight_bytes_per_token(path: str | os.PathLike[str]) -> int:
    """Bytes of a GGUF's tensors that decoding one token reads.

    Every tensor is read once per token except the token embedding, of which one row is read
    (a GGUF lists its shape as ``[n_embd, n_vocab]``), unless the model has tied embeddings
    (no ``output.weight``): llama.cpp then multiplies by the whole embedding as the output
    matrix, so all of it is read. The KV cache, also read per token and growing with the
    context, is not counted: a roofline from these bytes is an upper bound.
    Example: a 13B LLaMA in Q4_K_M reads about 7.3e9 bytes per token.
    """
    gguf = require("gguf", extra="models")
    tensors = gguf.GGUFReader(str(_existing(path))).tensors
    tied = not any(t.name == "output.weight" for t in tensors)
    total = 0
    for tensor in tensors:
        if tensor.name == "token_embd.weight" and not tied:
            total += int(tensor.n_bytes) // int(tensor.shape[-1])  # one of n_vocab rows
        else:
            total += int(tensor.n_bytes)
    return total


# -- the measuring processes ----------------------------------------------------------------


def _existing(path: str | os.PathLike[str]) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise CourseError(
            f"{path} does not exist.",
            hint="Build the course models with `python -m courselib models build`, or pass "
            "the path of a model you have.",
        )
    return path


def _result(label: str, file_bytes: int, iso) -> SpeedResult:
    v = iso.value
    return SpeedResult(
        label=label,
        file_bytes=file_bytes,
        load_s=v["load_s"],
        peak_rss_bytes=iso.peak_rss_bytes,
        added_rss_bytes=iso.added_bytes,
        prompt_tokens=v["prompt_tokens"],
        ttft_s=v["ttft_s"],
        tokens=v["tokens"],
        decode_tokens_per_s=v["decode_tokens_per_s"],
    )


def _timings(load_s: float, prompt_tokens: int, start: float, stamps: list[float]) -> dict:
    """From the time each token arrived to the numbers a SpeedResult holds."""
    decode = stamps[-1] - stamps[0]
    return {
        "load_s": load_s,
        "prompt_tokens": prompt_tokens,
        "ttft_s": stamps[0] - start,
        "tokens": len(stamps),
        "decode_tokens_per_s": (len(stamps) - 1) / decode if decode > 0 else float("nan"),
    }


def _gguf_child(path: str, prompt: str, max_tokens: int, threads: int, n_ctx: int) -> dict:
    from courselib.gguf.runtime import ensure_llama_runs, load_llama

    ensure_llama_runs(path)  # before the clock starts: load_s times the load alone
    start = time.perf_counter()
    llm = load_llama(path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads)
    load_s = time.perf_counter() - start
    tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    stamps: list[float] = []
    start = time.perf_counter()
    # generate() samples forever (stopping at EOS is create_completion's job): exactly
    # max_tokens greedy tokens, whatever the model says.
    for _token in llm.generate(tokens, temp=0.0, top_k=1, repeat_penalty=1.0):
        stamps.append(time.perf_counter())
        if len(stamps) == max_tokens:
            break
    return _timings(load_s, len(tokens), start, stamps)


def _transformers_child(path: str, prompt: str, max_tokens: int, threads: int) -> dict:
    torch = require("torch", extra="models")
    transformers = require("transformers", extra="models")
    torch.set_num_threads(threads)
    start = time.perf_counter()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    load_s = time.perf_counter() - start
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    if tokenizer.bos_token_id is not None and ids[0, 0].item() != tokenizer.bos_token_id:
        ids = torch.cat([torch.tensor([[tokenizer.bos_token_id]]), ids], dim=1)  # as llama.cpp
    stamps: list[float] = []
    start = time.perf_counter()
    with torch.inference_mode():
        out = model(ids, use_cache=True)  # prompt: (1, T) -> logits (1, T, vocab)
        while True:
            token = out.logits[:, -1].argmax(dim=-1, keepdim=True)  # (1, 1) greedy
            stamps.append(time.perf_counter())
            if len(stamps) == max_tokens:
                break
            out = model(token, past_key_values=out.past_key_values, use_cache=True)
    return _timings(load_s, ids.shape[1], start, stamps)
