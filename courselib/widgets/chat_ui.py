"""ChatUI: a chat window in a notebook, in front of any backend (Lab 01, Lab 02).

The UI knows only the :class:`~courselib.backends.base.Backend` interface, so the same window
chats with a local GGUF, an in-process transformers model, the class server or the echo
backend. Enter (or Send) sends; tokens appear as they stream; Stop interrupts; Clear forgets;
temperature, max tokens and the system prompt sit under "Settings"; the status line shows time
to first token and tokens/s live; a note says when old turns were trimmed to fit the context.

How the reply gets from the engine to the window without blocking the kernel (Stop works
while tokens stream): :mod:`courselib.widgets.streaming`.

Example::

    >>> from courselib.backends import open_backend
    >>> ui = ChatUI(open_backend("course-chat"))
    >>> ui                                    # in a notebook: the chat window
    >>> ui.send("What is the capital of France?")   # also from code: runs to completion
    ' The capital of France is Paris.'
"""

from __future__ import annotations

import asyncio
import html
import re
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from typing import Any

from courselib.backends.base import Backend, GenerationConfig, Message
from courselib.chat.conversation import Conversation
from courselib.chat.vicuna import VICUNA_SYSTEM
from courselib.errors import CourseError, require
from courselib.widgets.safe_markdown import to_html
from courselib.widgets.streaming import Handoff, engine_thread, produce

widgets = require("ipywidgets", extra="lab")

_BUBBLE = "margin:4px 0;padding:6px 10px;border-radius:8px;background:{bg};color:#111"
_STYLES = {"user": ("You", "#e3edff"), "assistant": ("Assistant", "#f3f3f3")}
_CLOSING_TAGS = re.compile(r"(</\w+>)+$")


@dataclass
class StreamStats:
    """Timing of one reply. ``tokens`` counts streamed pieces (backends yield ~1 token each)."""

    tokens: int = 0
    ttft_s: float | None = None
    """Seconds from sending to the first piece (prompt processing + first token)."""
    total_s: float = 0.0
    decode_s: float = 0.0
    """Seconds from the first piece to the last."""
    stopped: bool = False

    @property
    def tokens_per_s(self) -> float | None:
        """Decode speed: pieces after the first per second after the first (None until 2)."""
        if self.tokens < 2 or self.decode_s <= 0:
            return None
        return (self.tokens - 1) / self.decode_s

    def describe(self) -> str:
        """E.g. '24 tokens in 0.61 s · 41.2 tokens/s · first token after 52 ms'."""
        parts = [f"{self.tokens} tokens in {_duration(self.total_s)}"]
        if self.tokens_per_s is not None:
            parts.append(f"{self.tokens_per_s:.1f} tokens/s")
        if self.ttft_s is not None:
            parts.append(f"first token after {_duration(self.ttft_s)}")
        return " · ".join(parts) + (" · stopped" if self.stopped else "")


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


@dataclass
class _Reply:
    """The reply being streamed: its bubble, pieces so far and timing."""

    bubble: Any
    """The ipywidgets.HTML the reply is drawn into."""
    started: float
    max_tokens: int
    stats: StreamStats = field(default_factory=StreamStats)
    pieces: list[str] = field(default_factory=list)
    last_redraw: float = 0.0


class ChatUI:
    """A chat window: transcript, input, Send/Stop/Clear, settings and live speed.

    Widgets tests and labs may drive: ``input`` (Text), ``send_button``, ``stop_button``,
    ``clear_button``, ``temperature``, ``max_tokens``, ``system``; read ``transcript_html()``,
    ``status.value``, ``note.value`` and ``stats`` (the last reply's :class:`StreamStats`).
    ``task`` is the running asyncio task while a reply streams inside an event loop.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        system: str = VICUNA_SYSTEM,
        config: GenerationConfig | None = None,
        refresh_s: float = 0.05,
    ) -> None:
        self.backend = backend
        self.conversation = Conversation(system=system)
        self.config = config or GenerationConfig()
        self.refresh_s = refresh_s
        """At most one redraw of the streaming reply per ``refresh_s`` seconds (and at the end)."""
        self.stats = StreamStats()
        self.task: asyncio.Task | None = None
        self._busy = False
        self._stop_requested = False
        self._handoff: Handoff | None = None
        """The streaming reply's handoff while a task pulls it (Stop cancels it)."""
        self._produced: threading.Event | None = None
        """Set when the last notebook reply's producer is done (send() waits for it)."""

        W = widgets
        # The outer box scrolls; flex-direction column-reverse around one child that never
        # shrinks keeps the scroll pinned to the newest turn while tokens stream in.
        self.messages = W.VBox([], layout=W.Layout(flex="0 0 auto", overflow="visible"))
        self.transcript = W.Box(
            [self.messages],
            layout=W.Layout(
                flex_flow="column-reverse",
                overflow_y="auto",
                max_height="420px",
                min_height="120px",
                border="1px solid #ddd",
                padding="4px",
            ),
        )
        self.note = W.HTML("")
        self.status = W.HTML(self._small(html.escape(f"{backend.name} · ready")))
        self.input = W.Text(
            placeholder="Type a message, press Enter",
            continuous_update=False,  # value arrives on Enter (ipywidgets 8: on_submit is gone)
            layout=W.Layout(flex="1 1 auto", width="auto"),
        )
        self.send_button = W.Button(description="Send", button_style="primary", icon="paper-plane")
        self.stop_button = W.Button(description="Stop", icon="stop", disabled=True)
        self.clear_button = W.Button(description="Clear", icon="trash")
        for b in (self.send_button, self.stop_button, self.clear_button):
            b.layout.width = "90px"
        self.temperature = W.FloatSlider(
            value=self.config.temperature,
            min=0.0,
            max=2.0,
            step=0.05,
            description="temperature",
            style={"description_width": "90px"},
        )
        self.max_tokens = W.IntSlider(
            value=self.config.max_tokens,
            min=1,
            max=max(self.config.max_tokens, backend.context_size - 1),
            description="max tokens",
            style={"description_width": "90px"},
        )
        self.system = W.Textarea(
            value=system,
            description="system",
            style={"description_width": "90px"},
            layout=W.Layout(width="95%", height="70px"),
        )
        settings = W.Accordion(children=[W.VBox([self.temperature, self.max_tokens, self.system])])
        settings.set_title(0, "Settings")
        self.widget = W.VBox(
            [
                self.transcript,
                self.note,
                W.HBox([self.input, self.send_button, self.stop_button, self.clear_button]),
                self.status,
                settings,
            ]
        )
        self.input.observe(self._on_input, names="value")
        self.send_button.on_click(lambda _b: self._submit())
        self.stop_button.on_click(lambda _b: self.stop())
        self.clear_button.on_click(lambda _b: self.clear())

    # -- public ---------------------------------------------------------------------------

    def send(self, text: str) -> str:
        """Send ``text`` and stream the reply into the window; return it when it is complete.

        Runs in the caller (blocking) even inside a notebook, so a cell or a script can chat.
        Raises :class:`CourseError` when the prompt cannot fit the context or a reply is running.
        """
        if self._busy:
            raise CourseError(
                "A reply is still streaming.", hint="Press Stop, or wait until it finishes."
            )
        messages, config, reply = self._begin(text)
        gen = self.backend.stream(messages, config=config)
        return self._finish(reply, self._pull_sync(gen, reply), sent_from_code=True)

    def stop(self) -> None:
        """Interrupt the reply that is streaming (its generator is closed after this piece)."""
        if self._busy:
            self._stop_requested = True
            self.stop_button.disabled = True
            handoff = self._handoff
            if handoff is not None:
                handoff.cancel()

    def clear(self) -> None:
        """Stop any reply, forget every turn and empty the transcript (the settings stay)."""
        self.stop()  # a reply still finishing sees its bubble gone and leaves the new chat alone
        self.conversation.clear()
        self.messages.children = ()
        self.note.value = ""
        self.stats = StreamStats()
        self._set_status(f"{self.backend.name} · cleared")

    def transcript_html(self) -> str:
        """The HTML of every turn shown, oldest first (what tests inspect)."""
        return "\n".join(child.value for child in self.messages.children)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # -- events ---------------------------------------------------------------------------

    def _on_input(self, change: dict) -> None:
        if change["new"].strip():
            self._submit()

    def _submit(self) -> None:
        """Enter or Send: start a reply as a task on the running loop, else run it here."""
        text = self.input.value.strip()
        if not text:
            return
        if self._busy:
            self._set_status("Still answering: press Stop or wait, then press Send.")
            return
        try:
            messages, config, reply = self._begin(text)
        except CourseError:
            return  # _begin showed the message; the question stays in the box to shorten
        self.input.value = ""  # fires _on_input with "", which is ignored
        gen = self.backend.stream(messages, config=config)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._finish(reply, self._pull_sync(gen, reply))
            return
        self.task = loop.create_task(self._pull_async(gen, reply))

    # -- one reply --------------------------------------------------------------------------

    def _begin(self, text: str) -> tuple[list[Message], GenerationConfig, _Reply]:
        """Add the user turn, trim to fit, show both bubbles; mark the UI busy."""
        self.conversation.system = self.system.value
        self.conversation.add_user(text)
        config = replace(
            self.config, temperature=float(self.temperature.value), max_tokens=self.max_tokens.value
        )
        try:
            fit = self.conversation.fit(self.backend, max_new_tokens=config.max_tokens)
        except CourseError as exc:
            self.conversation.turns.pop()
            self._set_status(f"⚠ {exc.message} What to do: {exc.hint}")
            raise
        self.note.value = (
            self._small(f"✂ {html.escape(fit.note)}", color="#8a5a00") if fit.note else ""
        )
        self._add_bubble("user", text)
        bubble = self._add_bubble("assistant", "", streaming=True)
        reply = _Reply(bubble, time.perf_counter(), max_tokens=config.max_tokens)
        self.stats = reply.stats
        self._busy, self._stop_requested = True, False
        self.send_button.disabled, self.stop_button.disabled = True, False
        self._set_status("waiting for the first token…")
        return fit.messages, config, reply

    def _pull_sync(self, gen: Generator[str, None, None], reply: _Reply) -> Exception | None:
        """Stream the reply in the caller; returns the error that ended it, if any."""
        if self._produced is not None:
            self._produced.wait()  # a notebook reply's producer may still be closing its stream
        try:
            for piece in gen:
                self._on_piece(piece, reply)
                if self._stop_requested:  # set by stop() from another thread
                    break
        except Exception as exc:  # shown in the transcript: a chat window must not die
            return exc
        finally:
            gen.close()
        return None

    async def _pull_async(self, gen: Generator[str, None, None], reply: _Reply) -> str:
        """Stream the reply as a task: the engine thread pulls, this task draws on the loop."""
        handoff = self._handoff = Handoff(asyncio.get_running_loop())
        self._produced = engine_thread(self.backend).submit(lambda: produce(gen, handoff))
        error: Exception | None = None
        ended = False
        next_redraw = 0.0  # the first piece is drawn as soon as it arrives
        try:
            while not ended and not handoff.cancelled.is_set():
                wait_s = next_redraw - time.perf_counter()
                if wait_s > 0:
                    # A redraw tick: pieces pile up without waking the loop for each; the end
                    # and Stop wake it early (the last piece is drawn as soon as it comes).
                    await handoff.wait("tick", timeout=wait_s)
                else:
                    await handoff.wait("piece")
                pieces, ended, error = handoff.take()
                if pieces:
                    self._add_pieces(pieces, reply)
                    if not ended:  # _finish draws the last time
                        self._redraw(reply)
                        next_redraw = reply.last_redraw + self.refresh_s
            if not ended:
                # Stop: keep what came before it and end now. The producer closes the generator
                # once the engine returns its current piece; the next reply waits for that.
                pieces, _ended, _error = handoff.take()
                self._add_pieces(pieces, reply)
        except asyncio.CancelledError:  # the task was cancelled (kernel shutdown): stop too
            handoff.cancel()
            self._stop_requested = True
            self._finish(reply, None)
            raise
        finally:
            self._handoff = None
        return self._finish(reply, error)

    def _on_piece(self, piece: str, reply: _Reply) -> None:
        """One piece in the caller's thread (send): count it, redraw at most every refresh_s."""
        if not piece:  # a backend holding text back (a possible stop string) yields ""
            return
        self._add_pieces([piece], reply)
        if reply.stats.tokens == 1 or time.perf_counter() - reply.last_redraw >= self.refresh_s:
            self._redraw(reply)

    def _add_pieces(self, pieces: list[str], reply: _Reply) -> None:
        """Count pieces as they are drawn: the stats time what the window shows."""
        if not pieces:
            return
        now = time.perf_counter()
        stats = reply.stats
        if stats.ttft_s is None:
            stats.ttft_s = now - reply.started
        reply.pieces.extend(pieces)
        stats.tokens += len(pieces)
        stats.total_s = now - reply.started
        stats.decode_s = stats.total_s - stats.ttft_s

    def _redraw(self, reply: _Reply) -> None:
        reply.last_redraw = time.perf_counter()
        text = "".join(reply.pieces)
        reply.bubble.value = self._bubble_html("assistant", text, streaming=True)
        if reply.bubble in self.messages.children:
            self._set_status("answering… " + reply.stats.describe())

    def _finish(
        self, reply: _Reply, error: Exception | None, *, sent_from_code: bool = False
    ) -> str:
        """Final redraw, record the reply in the conversation, re-enable the buttons."""
        text, stats, bubble = "".join(reply.pieces), reply.stats, reply.bubble
        stats.stopped = self._stop_requested
        stats.total_s = time.perf_counter() - reply.started
        self._busy = self._stop_requested = False
        self.send_button.disabled, self.stop_button.disabled = False, True
        if error is not None:
            message = (
                str(error) if isinstance(error, CourseError) else f"{type(error).__name__}: {error}"
            )
            bubble.value = self._bubble_html("assistant", text) + self._small(
                html.escape(f"⚠ {message}"), color="#b00020"
            )
        else:
            suffix = " *(stopped)*" if stats.stopped else ""
            if not stats.stopped and stats.tokens >= reply.max_tokens:
                # Backends do not say why a stream ended; a piece is about one token, so
                # max_tokens pieces means the budget was spent (the model did not end it).
                suffix = " *(cut at max tokens)*"
            bubble.value = self._bubble_html("assistant", text + suffix)
        if bubble not in self.messages.children:  # Clear was pressed while it streamed
            return text
        if error is not None:
            self._set_status(f"error: {message}")
        else:  # send() streams in the caller: its speed has no event loop in between
            self._set_status(stats.describe() + (" · sent from code" if sent_from_code else ""))
        if text or error is None:
            self.conversation.add_assistant(text)
        else:  # nothing came back: forget the question so the turns stay paired
            self.conversation.turns.pop()
        return text

    # -- rendering ------------------------------------------------------------------------

    def _add_bubble(self, role: str, text: str, *, streaming: bool = False) -> object:
        bubble = widgets.HTML(self._bubble_html(role, text, streaming=streaming))
        self.messages.children = (*self.messages.children, bubble)
        return bubble

    @staticmethod
    def _bubble_html(role: str, text: str, *, streaming: bool = False) -> str:
        label, bg = _STYLES[role]
        body = to_html(text.strip())
        if streaming:  # the cursor goes inside the last block, after its text, not under it
            at = _CLOSING_TAGS.search(body)
            body = body[: at.start()] + " ▍" + body[at.start() :] if at else body + " ▍"
        body = body.replace("<p>", '<p style="margin:0.3em 0">')  # the page's margins are wide
        return f'<div style="{_BUBBLE.format(bg=bg)}"><b>{label}</b><div>{body}</div></div>'

    def _set_status(self, text: str) -> None:
        self.status.value = self._small(html.escape(text))

    @staticmethod
    def _small(text: str, *, color: str = "#555") -> str:
        return f'<span style="font-size:0.9em;color:{color}">{text}</span>'
