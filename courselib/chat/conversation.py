"""A conversation: a system prompt and the turns so far, trimmed to fit a context (Lab 01).

The chat UI and the terminal chat keep one :class:`Conversation` each. Before every reply they
call :meth:`Conversation.fit`, which drops the oldest user/assistant pairs until the prompt plus
the reply budget fits the backend's context window, and says so in a sentence to show.

Example::

    >>> from courselib.backends.echo import EchoBackend
    >>> conv = Conversation(system="Be brief.")
    >>> conv.add_user("What is the capital of France?")
    >>> fit = conv.fit(EchoBackend(context_size=2048), max_new_tokens=64)
    >>> [m.role for m in fit.messages], fit.dropped_turns, fit.note
    (['system', 'user'], 0, None)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from courselib.chat.messages import Message
from courselib.chat.vicuna import VICUNA_SYSTEM
from courselib.errors import CourseError


class TokenCounter(Protocol):
    """What trimming needs of a backend (every :class:`courselib.backends.base.Backend` is one)."""

    context_size: int

    def count_tokens(self, messages: Sequence[Message]) -> int: ...


@dataclass(frozen=True)
class FitResult:
    """The messages to send, and what trimming cost."""

    messages: list[Message]
    """System message first, then the turns that still fit."""
    dropped_turns: int
    """How many old messages (user or assistant) were left out; 0 when all fit."""
    note: str | None
    """A sentence to show the user when turns were dropped, else None."""


@dataclass(init=False)
class Conversation:
    """A system prompt and the user/assistant turns, oldest first.

    ``fit`` never changes ``turns``: the transcript keeps every turn, only the prompt is trimmed.
    """

    system: str
    turns: list[Message]

    def __init__(self, *, system: str = VICUNA_SYSTEM) -> None:
        self.system = system
        self.turns = []

    def add_user(self, text: str) -> None:
        """Append a user message."""
        self.turns.append(Message("user", text))

    def add_assistant(self, text: str) -> None:
        """Append an assistant reply."""
        self.turns.append(Message("assistant", text))

    def clear(self) -> None:
        """Forget every turn; the system prompt stays."""
        self.turns.clear()

    def messages(self) -> list[Message]:
        """The system message, then every turn."""
        return [Message("system", self.system), *self.turns]

    def fit(self, backend: TokenCounter, *, max_new_tokens: int) -> FitResult:
        """The messages that fit ``backend.context_size`` with room for ``max_new_tokens``.

        Drops the oldest user message together with the assistant reply after it, one pair at
        a time, until ``backend.count_tokens(messages) + max_new_tokens <= context_size``.
        Raises :class:`CourseError` when even the system prompt and the last message do not fit.

        Example: context 512, 10 turns of ~60 tokens, max_new_tokens 128 -> the oldest 6 turns
        are dropped and ``note`` reads "6 old turns were dropped to fit the 512-token context."
        """
        context = backend.context_size
        if max_new_tokens >= context:
            raise CourseError(
                f"max tokens ({max_new_tokens}) leaves no room for the prompt in the "
                f"{context}-token context.",
                hint="Lower max tokens (a few hundred is plenty) or load the model with a "
                "larger context (n_ctx).",
            )
        system = Message("system", self.system)
        turns = list(self.turns)
        dropped = 0
        while True:
            messages = [system, *turns]
            prompt_tokens = backend.count_tokens(messages)
            if prompt_tokens + max_new_tokens <= context:
                break
            if len(turns) <= 1:
                raise CourseError(
                    f"The prompt is {prompt_tokens} tokens (system prompt and your last "
                    f"message), and with {max_new_tokens} max new tokens that is more than "
                    f"the {context}-token context.",
                    hint="Shorten your message or the system prompt, load the model with a "
                    "larger context (n_ctx), or lower max tokens.",
                )
            # Drop the oldest user message and the reply that answered it, never the last turn.
            cut = 1
            while cut < len(turns) - 1 and turns[cut].role != "user":
                cut += 1
            turns = turns[cut:]
            dropped += cut
        note = None
        if dropped:
            noun = "turn was" if dropped == 1 else "turns were"
            note = f"{dropped} old {noun} dropped to fit the {context}-token context."
        return FitResult(messages=messages, dropped_turns=dropped, note=note)
