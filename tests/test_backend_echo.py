"""EchoBackend: the offline backend the chat UI tests use."""

from __future__ import annotations

import time

from courselib.backends import open_backend
from courselib.backends.base import GenerationConfig, Message
from courselib.backends.echo import EchoBackend


def test_streams_the_last_user_message_word_by_word():
    backend = EchoBackend()
    messages = [Message("system", "s"), Message("user", "old"), Message("user", "hello big world")]
    pieces = list(backend.stream(messages, config=GenerationConfig()))
    assert pieces == [" hello", " big", " world"]
    assert backend.complete(messages, config=GenerationConfig(max_tokens=2)) == " hello big"


def test_counts_words_and_reports_its_context():
    backend = open_backend("echo", n_ctx=99)
    assert isinstance(backend, EchoBackend)
    assert backend.context_size == 99
    assert backend.count_tokens([Message("system", "a b"), Message("user", "c d e")]) == 5


def test_closing_the_stream_stops_it_at_once():
    backend = EchoBackend(delay_s=0.01)
    gen = backend.stream([Message("user", " ".join(["w"] * 100))], config=GenerationConfig())
    assert [next(gen) for _ in range(3)] == [" w"] * 3
    gen.close()
    time.sleep(0.05)
    assert backend.pieces_yielded == 3
