"""The one interface in front of every inference engine (Lab 01, Lab 02).

The chat UI, the terminal chat and the labs know only :class:`Backend`. A backend turns a list
of :class:`Message` into streamed text pieces; it also counts the tokens those messages render
to and says how large its context window is, so a conversation can be trimmed to fit.

Example::

    with open_backend("echo") as backend:           # see courselib.backends
        for piece in backend.stream([Message("user", "hi")], config=GenerationConfig()):
            print(piece, end="")

Stopping: a consumer stops generation by closing the generator that :meth:`Backend.stream`
returned (``gen.close()``, or leaving a ``for`` loop and dropping it). Every backend must stop
its engine promptly when that happens.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

from courselib.chat.messages import Message
from courselib.errors import CourseError

__all__ = ["Backend", "GenerationConfig", "Message"]


@dataclass
class GenerationConfig:
    """Sampling options shared by every backend."""

    max_tokens: int = 256
    """Upper bound on generated tokens."""
    temperature: float = 0.7
    """0 means greedy decoding."""
    top_p: float = 0.95
    stop: list[str] = field(default_factory=list)
    """Extra stop strings, on top of the template's own (e.g. Vicuna's '</s>')."""
    seed: int | None = None
    """Fixed seed for reproducible sampling, where the engine supports one."""


class Backend(ABC):
    """An inference engine behind one small interface."""

    name: str
    """Human-readable, e.g. 'llama.cpp course-chat-Q4_K_M.gguf'."""
    context_size: int
    """Context window in tokens (prompt + generated)."""

    @abstractmethod
    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens of the prompt these messages render to (with the generation prompt)."""

    @abstractmethod
    def stream(
        self, messages: Sequence[Message], *, config: GenerationConfig
    ) -> Generator[str, None, None]:
        """Yield the reply as text pieces (about one token each) as they are generated."""

    def prompt_text(self, messages: Sequence[Message]) -> str:
        """The prompt this backend feeds its engine for ``messages``, BOS left out (Lab 01
        compares it with the student's own Vicuna formatter).

        Local backends render it with the model's chat template; a remote server renders
        prompts itself, so its backend raises :class:`CourseError`.
        """
        raise CourseError(
            f"{self.name} does not render prompts itself: its server does.",
            hint="Compare prompts with a local model (a .gguf file or a checkpoint folder).",
        )

    def complete(self, messages: Sequence[Message], *, config: GenerationConfig) -> str:
        """The whole reply as one string."""
        return "".join(self.stream(messages, config=config))

    def close(self) -> None:  # noqa: B027 - optional hook: most backends hold nothing to free
        """Free the engine's memory or connections."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
