"""A chat message: the unit every prompt format, conversation and backend passes around.

Example::

    >>> Message("user", "What is the capital of Japan?").role
    'user'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MessageRole = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    """One chat message. ``role`` is 'system', 'user' or 'assistant'."""

    role: MessageRole
    content: str
