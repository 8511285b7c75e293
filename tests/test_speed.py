"""courselib.measure.speed's roofline parts: multi-threaded bandwidth, bytes read per token, the note.

No assertion depends on how fast this machine is: the numbers only have to be real.
"""

from __future__ import annotations

import math

import pytest
from memory_tiny import TINY, write_tiny_gguf

from courselib.measure.speed import (
    _bandwidth_buffer_bytes,
    last_level_cache_bytes,
    memory_bandwidth,
    roofline_note,
    weight_bytes_per_token,
)


@pytest.mark.parametrize("threads", [1, 2])
def test_bandwidth_is_a_positive_finite_rate_with_any_thread_count(threads) -> None:
    rate = memory_bandwidth(threads=threads, n_bytes=64 * 2**20, repeats=3)
    assert math.isfinite(rate) and rate > 0


def test_bandwidth_threads_default_to_the_decode_setting(monkeypatch) -> None:
    monkeypatch.setenv("COURSELAB_THREADS", "2")  # the thread count llama.cpp decodes with
    seen = []
    import courselib.measure.speed as speed

    class Pool(speed.ThreadPoolExecutor):
        def __init__(self, max_workers):
            seen.append(max_workers)
            super().__init__(max_workers=max_workers)

    monkeypatch.setattr(speed, "ThreadPoolExecutor", Pool)
    assert memory_bandwidth(n_bytes=16 * 2**20, repeats=1) > 0
    assert seen == [2]


def test_the_default_buffer_dwarfs_the_last_level_cache() -> None:
    assert _bandwidth_buffer_bytes(None) == 512 * 2**20
    assert _bandwidth_buffer_bytes(32 * 2**20) == 512 * 2**20  # 16x a 32 MiB L3
    assert _bandwidth_buffer_bytes(256 * 2**20) == 2 * 2**30  # 8x
    assert _bandwidth_buffer_bytes(2**30) == 4 * 2**30  # capped
    cache = last_level_cache_bytes()
    assert cache is None or _bandwidth_buffer_bytes(cache) >= 8 * min(cache, 2**29)


def test_last_level_cache_is_a_size_or_unknown() -> None:
    cache = last_level_cache_bytes()
    assert cache is None or cache >= 2**16


@pytest.mark.parametrize("fraction", [0.0, 0.43, 1.0, float("nan")])
def test_no_note_while_decode_stays_under_the_roofline(fraction) -> None:
    assert roofline_note(fraction) == ""
    assert roofline_note(fraction, bytes_per_token=87.7e6) == ""


@pytest.mark.parametrize("fraction", [1.001, 1.27, 9.0])
def test_a_note_says_why_when_decode_beats_the_roofline(fraction) -> None:
    note = roofline_note(fraction, bytes_per_token=87.7e6)
    assert f"{fraction:.2f}x the roofline" in note
    assert "cache" in note and "bandwidth" in note
    if last_level_cache_bytes():
        assert "88 MB read per token" in note
    assert "cache" in roofline_note(fraction)  # without the bytes, too


def test_bytes_per_token_count_every_tensor_once_and_one_embedding_row(tmp_path) -> None:
    gguf = pytest.importorskip("gguf")
    path = write_tiny_gguf(tmp_path / "tiny.gguf", file_type="Q8_0")
    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    embd = tensors["token_embd.weight"]
    all_bytes = sum(int(t.n_bytes) for t in tensors.values())
    row = TINY["hidden_size"] * 34 // 32  # one row of hidden_size weights in Q8_0: 34 B per 32
    assert int(embd.n_bytes) == TINY["vocab_size"] * row
    assert "output.weight" in tensors  # untied: the output matrix is read in full
    assert weight_bytes_per_token(path) == all_bytes - int(embd.n_bytes) + row


def test_tied_embeddings_are_read_in_full_as_the_output_matrix(tmp_path) -> None:
    gguf = pytest.importorskip("gguf")
    config = {**TINY, "tie_word_embeddings": True}
    path = write_tiny_gguf(tmp_path / "tied.gguf", file_type="Q8_0", config=config)
    tensors = gguf.GGUFReader(str(path)).tensors
    assert "output.weight" not in {t.name for t in tensors}
    assert weight_bytes_per_token(path) == sum(int(t.n_bytes) for t in tensors)
