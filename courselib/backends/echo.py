"""A backend that repeats the last user message: offline tests of the chat UI (Lab 01).

It needs no model, streams at a chosen pace and counts one token per whitespace-separated
word, so trimming, Stop and the token/s display can be tested in milliseconds.

Example::

    >>> from courselib.backends.base import GenerationConfig, Message
    >>> list(EchoBackend().stream([Message("user", "hello big world")],
    ...                           config=GenerationConfig(max_tokens=2)))
    [' hello', ' big']
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence

from courselib.backends.base import Backend, GenerationConfig, Message


class EchoBackend(Backend):
    """Streams the last user message back word by word, ``delay_s`` seconds per word."""

    def __init__(self, *, delay_s: float = 0.0, context_size: int = 2048) -> None:
        self.name = "echo"
        self.context_size = context_size
        self.delay_s = delay_s
        self.pieces_yielded = 0
        """Pieces produced since creation: tests check that a closed stream produced no more."""

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """One token per whitespace-separated word of every message."""
        return sum(len(m.content.split()) for m in messages)

    def stream(
        self, messages: Sequence[Message], *, config: GenerationConfig
    ) -> Generator[str, None, None]:
        """Yield the words of the last user message, each with a leading space (as SPM pieces)."""
        last = next((m.content for m in reversed(messages) if m.role == "user"), "")
        for word in last.split()[: config.max_tokens]:
            if self.delay_s:
                time.sleep(self.delay_s)
            self.pieces_yielded += 1
            yield " " + word
