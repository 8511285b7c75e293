"""Conversation: message order, trimming by token count with a visible note, errors."""

from __future__ import annotations

import pytest

from courselib.backends.base import Message
from courselib.backends.echo import EchoBackend
from courselib.chat.conversation import Conversation
from courselib.chat.vicuna import VICUNA_SYSTEM
from courselib.errors import CourseError


def test_messages_put_system_first_then_turns():
    conv = Conversation(system="Be brief.")
    conv.add_user("Hi")
    conv.add_assistant("Hello.")
    assert conv.messages() == [
        Message("system", "Be brief."),
        Message("user", "Hi"),
        Message("assistant", "Hello."),
    ]
    conv.clear()
    assert conv.messages() == [Message("system", "Be brief.")]
    assert Conversation().system == VICUNA_SYSTEM


def test_fit_keeps_everything_when_it_fits():
    conv = Conversation(system="s")
    conv.add_user("one two")
    result = conv.fit(EchoBackend(context_size=100), max_new_tokens=10)
    assert result.messages == conv.messages()
    assert (result.dropped_turns, result.note) == (0, None)


def test_fit_drops_oldest_pairs_and_says_so():
    # Echo counts one token per word: system 1 + 5 turns x 4 words = 21 tokens.
    conv = Conversation(system="sys")
    for i in range(2):
        conv.add_user(f"question {i} a b")
        conv.add_assistant(f"answer {i} c d")
    conv.add_user("last question e f")
    # 1 + 4 + 4 + 4 = 13 tokens fit 16 - 3; the whole 21 do not.
    result = conv.fit(EchoBackend(context_size=16), max_new_tokens=3)
    assert result.dropped_turns == 2
    assert [m.content for m in result.messages] == [
        "sys",
        "question 1 a b",
        "answer 1 c d",
        "last question e f",
    ]
    assert result.note == "2 old turns were dropped to fit the 16-token context."
    assert len(conv.turns) == 5, "fit must not change the transcript"


def test_fit_can_drop_everything_but_the_last_message():
    conv = Conversation(system="sys")
    conv.add_user("a b c d e f")
    conv.add_assistant("g h i j k l")
    conv.add_user("last")
    result = conv.fit(EchoBackend(context_size=6), max_new_tokens=4)
    assert result.messages == [Message("system", "sys"), Message("user", "last")]
    assert result.note == "2 old turns were dropped to fit the 6-token context."


def test_fit_raises_when_the_last_message_alone_is_too_long():
    conv = Conversation(system="sys")
    conv.add_user(" ".join(["word"] * 20))
    with pytest.raises(CourseError) as info:
        conv.fit(EchoBackend(context_size=16), max_new_tokens=4)
    text = str(info.value)
    assert "21 tokens" in text and "16-token context" in text
    assert "n_ctx" in info.value.hint and "max tokens" in info.value.hint


def test_fit_rejects_a_reply_budget_as_large_as_the_context():
    conv = Conversation()
    conv.add_user("hi")
    with pytest.raises(CourseError, match="max tokens"):
        conv.fit(EchoBackend(context_size=64), max_new_tokens=64)
