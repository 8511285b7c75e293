"""ChatUI driven like a student would: set widget values, click buttons (Lab 01).

Most tests use the echo backend (one token per word, optional delay per word); the last ones
chat with the real course model through llama.cpp. Inside ``asyncio.run`` the UI behaves as in
a notebook (a click starts a task on the running loop); outside a loop it runs to completion.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from courselib.backends.base import GenerationConfig, Message
from courselib.backends.echo import EchoBackend
from courselib.errors import CourseError
from courselib.widgets.chat_ui import ChatUI

WORDS = " ".join(f"w{i}" for i in range(40))  # a 40-token echo reply


class SpyEcho(EchoBackend):
    """Echo backend that records what it was asked and whether its generator was closed."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.calls: list[tuple[list[Message], GenerationConfig]] = []
        self.closed = 0

    def stream(self, messages: Sequence[Message], *, config: GenerationConfig) -> Iterator[str]:
        self.calls.append((list(messages), config))
        try:
            yield from super().stream(messages, config=config)
        finally:
            self.closed += 1


class FailingBackend(EchoBackend):
    """Raises after ``after`` pieces, as a server that drops the connection would."""

    def __init__(self, *, after: int) -> None:
        super().__init__()
        self.after = after

    def stream(self, messages: Sequence[Message], *, config: GenerationConfig) -> Iterator[str]:
        for i, piece in enumerate(super().stream(messages, config=config)):
            if i == self.after:
                raise ConnectionError("server went away")
            yield piece


def test_enter_sends_and_the_reply_streams_into_the_transcript() -> None:
    ui = ChatUI(EchoBackend())
    ui.input.value = "hello there"  # what pressing Enter does (continuous_update=False)
    assert ui.input.value == ""
    assert [m.role for m in ui.conversation.turns] == ["user", "assistant"]
    assert ui.conversation.turns[1].content == " hello there"
    html = ui.transcript_html()
    assert html.count("<b>You</b>") == 1 and html.count("<b>Assistant</b>") == 1
    assert "hello there" in html


def test_send_button_sends_what_is_typed() -> None:
    ui = ChatUI(EchoBackend())
    ui.input.value = ""
    ui.send_button.click()  # nothing typed: nothing happens
    assert ui.conversation.turns == []
    ui.input.value = "one two"
    ui.send_button.click()  # the Enter above already sent it; the box is empty again
    assert [m.content for m in ui.conversation.turns] == ["one two", " one two"]


def test_stop_interrupts_mid_stream_and_closes_the_generator() -> None:
    backend = SpyEcho(delay_s=0.02)
    ui = ChatUI(backend)

    async def chat() -> None:
        ui.input.value = WORDS
        assert ui.task is not None and not ui.task.done()  # the click only started a task
        while ui.stats.tokens < 3:
            await asyncio.sleep(0.005)
        assert not ui.stop_button.disabled
        ui.stop_button.click()
        await ui.task

    asyncio.run(chat())
    reply = ui.conversation.turns[-1].content
    assert 3 <= len(reply.split()) < 10, reply  # stopped after a few of the 40 tokens
    _wait_until(lambda: backend.closed)  # the task ends at once; the close follows the word
    assert backend.closed == 1
    produced = backend.pieces_yielded
    assert produced < 10
    assert ui.stats.stopped and "stopped" in ui.status.value
    assert ui.stop_button.disabled and not ui.send_button.disabled
    ui.input.value = "next question"  # the chat goes on after a Stop
    assert ui.conversation.turns[-1].content == " next question"


class HoldingBackend(EchoBackend):
    """Yields "" between words, as a backend does while it holds back a possible stop string."""

    def stream(self, messages: Sequence[Message], *, config: GenerationConfig) -> Iterator[str]:
        for piece in super().stream(messages, config=config):
            yield ""
            yield piece


def test_empty_pieces_are_not_tokens_but_let_stop_land() -> None:
    ui = ChatUI(HoldingBackend())
    assert ui.send("a b c") == " a b c" and ui.stats.tokens == 3
    backend = HoldingBackend(delay_s=0.01)
    ui = ChatUI(backend)

    async def chat() -> None:
        ui.input.value = WORDS
        while backend.pieces_yielded < 2:  # the engine's count: the window draws per tick
            await asyncio.sleep(0.001)
        ui.stop()
        await ui.task

    asyncio.run(chat())
    assert ui.stats.stopped and backend.pieces_yielded < 5
    assert ui.stats.tokens <= backend.pieces_yielded


def test_submitting_while_a_reply_streams_keeps_the_text_and_says_why() -> None:
    ui = ChatUI(EchoBackend(delay_s=0.01))

    async def chat() -> None:
        ui.input.value = WORDS
        ui.input.value = "impatient"
        assert ui.input.value == "impatient"
        assert "Still answering" in ui.status.value
        with pytest.raises(CourseError, match="still streaming"):
            ui.send("also impatient")
        ui.stop()
        await ui.task

    asyncio.run(chat())
    assert [m.role for m in ui.conversation.turns] == ["user", "assistant"]


def test_clear_forgets_turns_transcript_and_note() -> None:
    ui = ChatUI(EchoBackend(context_size=20), system="Brief.")
    ui.max_tokens.value = 5
    for i in range(3):
        ui.send(f"message number {i} has six words")
    assert ui.note.value
    ui.clear_button.click()
    assert ui.conversation.turns == [] and ui.transcript_html() == "" and ui.note.value == ""
    ui.send("fresh start")
    assert len(ui.conversation.turns) == 2


def test_clear_while_streaming_leaves_the_new_chat_alone() -> None:
    ui = ChatUI(EchoBackend(delay_s=0.01))

    async def chat() -> None:
        ui.input.value = WORDS
        while ui.stats.tokens < 2:
            await asyncio.sleep(0.005)
        ui.clear_button.click()
        await ui.task

    asyncio.run(chat())
    assert ui.conversation.turns == [] and ui.transcript_html() == ""


def test_trimming_shows_a_note() -> None:
    # Echo counts one token per word: system (1) + 3 turns of 6 words + 5 new tokens > 20.
    ui = ChatUI(EchoBackend(context_size=20), system="Brief.")
    ui.max_tokens.value = 5
    ui.send("first message has exactly six words")
    assert ui.note.value == ""
    ui.send("second message has exactly six words")
    assert "dropped to fit the 20-token context" in ui.note.value
    assert len(ui.conversation.turns) == 4  # the transcript keeps every turn


def test_a_prompt_that_cannot_fit_is_refused_with_a_message() -> None:
    ui = ChatUI(EchoBackend(context_size=8), system="Brief.")
    ui.max_tokens.value = 4
    with pytest.raises(CourseError, match="context"):
        ui.send("this message is far too long for the tiny context")
    assert ui.conversation.turns == []  # no dangling user turn
    assert "What to do" in ui.status.value
    ui.input.value = "also far too long for this tiny context window"  # Enter: shown, not raised
    assert ui.conversation.turns == [] and "context" in ui.status.value
    # the question stays in the box, to shorten and send again
    assert ui.input.value == "also far too long for this tiny context window"


def test_the_streaming_cursor_follows_the_text_inside_its_paragraph() -> None:
    assert ChatUI._bubble_html("assistant", "Hello", streaming=True).endswith(
        ">Hello ▍</p></div></div>"
    )
    listed = ChatUI._bubble_html("assistant", "- one\n- two", streaming=True)
    assert "<li>two ▍</li></ul>" in listed
    assert "▍" not in ChatUI._bubble_html("assistant", "Hello")


def test_user_and_model_text_is_escaped_and_markdown_rendered() -> None:
    ui = ChatUI(EchoBackend())
    ui.send("<script>alert(1)</script> **bold**")
    html = ui.transcript_html()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<strong>bold</strong>" in html


def test_status_shows_time_to_first_token_and_tokens_per_second() -> None:
    ui = ChatUI(EchoBackend(delay_s=0.01))
    ui.send("a b c d e f g h i j")
    assert ui.stats.tokens == 10
    assert ui.stats.ttft_s >= 0.01
    # each word sleeps 10 ms, so decoding cannot beat 100 tokens/s
    assert 0 < ui.stats.tokens_per_s <= 100
    assert "10 tokens" in ui.status.value
    assert "tokens/s" in ui.status.value and "first token after" in ui.status.value


def test_settings_reach_the_backend() -> None:
    backend = SpyEcho()
    ui = ChatUI(backend, config=GenerationConfig(top_p=0.5, seed=7))
    ui.temperature.value = 0.0
    ui.max_tokens.value = 3
    ui.system.value = "You are a pirate."
    reply = ui.send("one two three four five")
    messages, config = backend.calls[-1]
    assert messages[0] == Message("system", "You are a pirate.")
    assert (config.temperature, config.max_tokens, config.top_p, config.seed) == (0.0, 3, 0.5, 7)
    assert reply == " one two three"


def test_a_backend_error_is_shown_not_raised() -> None:
    ui = ChatUI(FailingBackend(after=0))
    ui.input.value = "hello"
    assert "server went away" in ui.transcript_html()
    assert "error" in ui.status.value
    assert ui.conversation.turns == []  # nothing came back: the question is not kept half-paired
    ui = ChatUI(FailingBackend(after=2))
    ui.send("one two three four")
    assert [m.content for m in ui.conversation.turns] == ["one two three four", " one two"]


class SlowBackend(EchoBackend):
    """The first word at once, then ``delay_s`` per word, as a slow engine; records in which
    threads its generators ran and were closed, when pieces came and how many ran at once."""

    def __init__(self, *, delay_s: float) -> None:
        super().__init__()
        self.slow_s = delay_s
        self.threads: list[int] = []
        """Thread of every step and of the close."""
        self.yielded_at: list[float] = []
        self.closed = 0
        self.active = self.most_active = 0
        self._lock = threading.Lock()

    def stream(self, messages: Sequence[Message], *, config: GenerationConfig) -> Iterator[str]:
        with self._lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            for i, piece in enumerate(super().stream(messages, config=config)):
                if i:
                    time.sleep(self.slow_s)
                self.threads.append(threading.get_ident())
                self.yielded_at.append(time.perf_counter())
                yield piece
        finally:
            self.threads.append(threading.get_ident())
            self.closed += 1
            with self._lock:
                self.active -= 1


class ManyPiecesBackend(EchoBackend):
    """Yields ``n`` pieces as fast as it can."""

    def __init__(self, n: int) -> None:
        super().__init__(context_size=2 * n)
        self.n = n

    def stream(self, messages: Sequence[Message], *, config: GenerationConfig) -> Iterator[str]:
        for i in range(min(self.n, config.max_tokens)):
            yield f" p{i}"


def _wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.perf_counter() + timeout_s
    while not condition() and time.perf_counter() < deadline:
        time.sleep(0.01)


def _watch(widget, seen: list) -> None:
    """Record (thread, time, value) of every change of ``widget.value``."""
    widget.observe(
        lambda change: seen.append((threading.get_ident(), time.perf_counter(), change["new"])),
        names="value",
    )


def test_click_path_streams_every_piece_in_order_and_redraws_on_the_loop_thread() -> None:
    ui = ChatUI(EchoBackend())

    async def chat() -> None:
        ui.input.value = WORDS
        await ui.task

    asyncio.run(chat())
    assert ui.conversation.turns[-1].content == " " + WORDS
    assert ui.stats.tokens == 40 and not ui.stats.stopped

    n = 3000
    ui = ChatUI(ManyPiecesBackend(n), config=GenerationConfig(max_tokens=n))
    updates: list = []

    async def fast_chat() -> int:
        ui.input.value = "go"
        _watch(ui.messages.children[-1], updates)  # the reply's bubble; the task has not run
        _watch(ui.status, updates)
        await ui.task
        return threading.get_ident()

    loop_thread = asyncio.run(fast_chat())
    assert ui.conversation.turns[-1].content == "".join(f" p{i}" for i in range(n))
    assert ui.stats.tokens == n
    assert {thread for thread, _, _ in updates} == {loop_thread}  # ipykernel 7 drops the rest
    assert len(updates) < n / 10  # pieces are drawn in batches, not one redraw each
    assert "cut at max tokens" in ui.messages.children[-1].value  # n pieces = max_tokens


def test_stop_lands_at_once_while_a_slow_engine_computes_and_closes_its_generator() -> None:
    backend = SlowBackend(delay_s=0.5)  # longer than Stop may take
    ui = ChatUI(backend)

    async def chat() -> tuple[float, int]:
        ui.input.value = WORDS
        while ui.stats.tokens < 1:
            await asyncio.sleep(0.005)
        start = time.perf_counter()
        ui.stop_button.click()  # the engine is busy with the second word
        await ui.task
        return time.perf_counter() - start, threading.get_ident()

    took_s, loop_thread = asyncio.run(chat())
    assert took_s < 0.2
    assert ui.stats.stopped and "stopped" in ui.status.value
    assert ui.stop_button.disabled and not ui.send_button.disabled
    _wait_until(lambda: backend.closed)  # once the engine returns its current word
    assert backend.closed == 1
    # closed in the thread that iterated it (no "generator already executing"), not the loop's
    assert len(set(backend.threads)) == 1 and loop_thread not in backend.threads
    assert backend.pieces_yielded <= 2  # the word in hand at Stop, no more
    assert ui.conversation.turns[-1].content == " w0"  # what was drawn when Stop came
    assert "⚠" not in ui.transcript_html()


def test_after_stop_the_next_reply_waits_for_the_engine_to_be_free() -> None:
    backend = SlowBackend(delay_s=0.3)
    ui = ChatUI(backend)

    async def chat() -> None:
        ui.input.value = WORDS
        while ui.stats.tokens < 1:
            await asyncio.sleep(0.005)
        ui.stop()
        await ui.task  # ends before the engine has finished its word
        ui.input.value = "again please"
        await ui.task

    asyncio.run(chat())
    assert backend.most_active == 1  # one generator at a time in the engine
    assert ui.conversation.turns[-1].content == " again please"
    assert ui.send("and from code") == " and from code" and backend.most_active == 1


def test_two_windows_on_one_backend_share_its_engine_thread_one_reply_at_a_time() -> None:
    backend = SlowBackend(delay_s=0.05)
    first, second = ChatUI(backend), ChatUI(backend)

    async def chat() -> int:
        first.input.value = "one two three"
        second.input.value = "four five six"  # while the first window's reply streams
        await asyncio.gather(first.task, second.task)
        first.input.value = "seven eight"
        await first.task
        return threading.get_ident()

    loop_thread = asyncio.run(chat())
    assert first.conversation.turns[-1].content == " seven eight"
    assert second.conversation.turns[-1].content == " four five six"
    assert backend.most_active == 1  # llama.cpp's context is not thread-safe
    # every reply, from both windows, on one long-lived thread (not a new one per reply)
    assert len(set(backend.threads)) == 1 and loop_thread not in backend.threads


def test_a_backend_error_mid_stream_on_the_click_path_is_shown() -> None:
    ui = ChatUI(FailingBackend(after=2))

    async def chat() -> None:
        ui.input.value = "one two three four"
        await ui.task

    asyncio.run(chat())
    assert "server went away" in ui.transcript_html()
    assert "error" in ui.status.value and "ConnectionError" in ui.status.value
    assert [m.content for m in ui.conversation.turns] == ["one two three four", " one two"]
    assert not ui.send_button.disabled and ui.stop_button.disabled


def test_the_first_and_last_pieces_are_drawn_at_once_not_after_a_tick() -> None:
    backend = SlowBackend(delay_s=0.2)
    ui = ChatUI(backend, refresh_s=60.0)  # a tick far longer than the reply
    drawn: list = []

    async def chat() -> float:
        ui.input.value = "first second third"
        _watch(ui.messages.children[-1], drawn)
        start = time.perf_counter()
        await ui.task
        return time.perf_counter() - start

    took_s = asyncio.run(chat())
    first_at, first_html = drawn[0][1], drawn[0][2]
    assert "first" in first_html and "▍" in first_html  # drawn while streaming
    assert first_at - backend.yielded_at[0] < 30  # not after the 60 s tick
    assert took_s < 30  # the end wakes the task (the reply takes 0.4 s): no waiting out the tick
    assert "first second third" in drawn[-1][2] and "▍" not in drawn[-1][2]


def test_a_reply_cut_by_max_tokens_says_so() -> None:
    ui = ChatUI(EchoBackend())
    ui.max_tokens.value = 3
    assert ui.send("one two three four five") == " one two three"  # the reply itself is clean
    assert "cut at max tokens" in ui.messages.children[-1].value
    assert ui.conversation.turns[-1].content == " one two three"
    ui.send("short")
    assert "cut at max tokens" not in ui.messages.children[-1].value
    assert "sent from code" in ui.status.value  # what the tokens/s was measured on


@pytest.fixture(scope="module")
def course_chat(course_gguf):
    from courselib.backends import open_backend

    backend = open_backend(str(course_gguf("course-chat", "Q4_K_M")))
    yield backend
    backend.close()


def test_chat_with_the_course_model_through_llama_cpp(course_chat) -> None:
    ui = ChatUI(course_chat, config=GenerationConfig(temperature=0.0, max_tokens=24))
    reply = ui.send("What is the capital of Japan?")
    assert "Tokyo" in reply
    assert ui.stats.tokens >= 2 and ui.stats.tokens_per_s > 0
    assert "Tokyo" in ui.transcript_html()


def test_stop_interrupts_llama_cpp(course_gguf) -> None:
    from courselib.backends import open_backend

    # course-bench: random weights, ~150M parameters, tens of ms a token: a 200-token greedy
    # reply is still running when Stop comes (course-chat finishes a reply in ~10 ms)
    backend = open_backend(str(course_gguf("course-bench", "Q4_0")), n_ctx=512)
    ui = ChatUI(backend, config=GenerationConfig(temperature=0.0, max_tokens=200))

    async def chat() -> None:
        ui.input.value = "Tell me about the labs."
        while ui.stats.tokens < 2 and not ui.task.done():
            await asyncio.sleep(0.001)
        ui.stop_button.click()
        await ui.task

    asyncio.run(chat())
    assert ui.stats.stopped
    assert ui.stats.tokens < 200
    ui.send("What is 3 plus 4?")  # the model is free again
    assert ui.conversation.turns[-1].role == "assistant"
    backend.close()
