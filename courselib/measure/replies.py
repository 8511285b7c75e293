"""Clock streamed replies of any backend: when each was sent and when each piece came (Lab 02).

Lab 02 times the class server and a local 4-bit model on the same questions and computes the
medians itself (time to first token, tokens per second) from these timestamps: this module
only records them, on one clock (:func:`time.perf_counter`), one request at a time.

Example::

    >>> timed = time_replies(backend, ["What is 3 plus 4?"], config=GenerationConfig(max_tokens=16))
    >>> t = timed[0]
    >>> t.token_times[0] - t.sent        # seconds to the first token      # doctest: +SKIP
    0.041
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from courselib.backends.base import Backend, GenerationConfig, Message


@dataclass(frozen=True)
class TimedReply:
    """One streamed reply: times in seconds on :func:`time.perf_counter`'s clock."""

    question: str
    sent: float
    """When the request left (just before the backend was asked)."""
    token_times: list[float]
    """When each streamed piece (about one token) arrived, in order."""
    text: str

    def as_run(self) -> tuple[float, list[float]]:
        """``(sent, token_times)``: the plain numbers Lab 02's ``speed_summary`` takes."""
        return self.sent, list(self.token_times)


def time_replies(
    backend: Backend,
    questions: Sequence[str],
    *,
    config: GenerationConfig,
    system: str | None = None,
) -> list[TimedReply]:
    """Ask each question alone (no history), one after another, and clock its stream."""
    timed = []
    for question in questions:
        messages = [Message("system", system)] if system else []
        messages.append(Message("user", question))
        pieces: list[str] = []
        times: list[float] = []
        sent = time.perf_counter()
        for piece in backend.stream(messages, config=config):
            times.append(time.perf_counter())
            pieces.append(piece)
        timed.append(TimedReply(question, sent, times, "".join(pieces)))
    return timed
