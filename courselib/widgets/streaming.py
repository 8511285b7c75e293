"""The thread plumbing of the chat window (Lab 01, Lab 02): the backend's engine thread and
the handoff of a reply's pieces to the task on the kernel's event loop.

Why an asyncio task: ipykernel 7 drops widget updates made from background threads, and a
click (Stop) is not processed while another click handler (Send) is still running. So a click
only starts a task on the kernel's event loop. A producer, on the backend's engine thread,
iterates the backend's generator (the engine runs in it) and hands the pieces over. The engine
thread is one long-lived thread per backend, so the engine's calls run one at a time even when
several windows share a backend (llama.cpp's context is not thread-safe). The task wakes for the first
piece, then at most once per redraw tick (``refresh_s``) and at the end, and draws every piece
that arrived meanwhile, on the loop's thread. Waking the loop once per token instead (one
worker-thread round trip per piece) halved tokens/s. Between ticks the loop handles the Stop
click: the producer stops after the piece it is waiting for and closes the generator in its
own thread (the only one that may: closing a running generator from another thread fails),
which stops the engine. The task ends at once, without waiting for a slow engine's next piece;
the next reply waits until the engine is free. Without a running loop (a script, a test,
:meth:`courselib.widgets.chat_ui.ChatUI.send`) the reply streams in the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import weakref
from collections.abc import Callable, Generator
from typing import Literal

from courselib.backends.base import Backend


class Handoff:
    """Pieces from the producer thread to the task on the event loop.

    The producer appends under a lock and wakes the task (``call_soon_threadsafe``) only when
    the task waits for what came: any piece (nothing new to draw, or a redraw is due), or only
    the end (the task waits out a redraw tick: pieces pile up without a wake-up each). Stop
    wakes the task in either case.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.cancelled = threading.Event()
        """Set by Stop: the producer stops after the piece it is waiting for."""
        self._lock = threading.Lock()
        self._pieces: list[str] = []
        self._ended = False
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._until: str = "tick"
        """What wakes the waiting task besides the end and Stop: 'piece', or nothing ('tick')."""

    def put(self, piece: str) -> None:
        """Producer: one more piece."""
        with self._lock:
            self._pieces.append(piece)
            waiter = self._take_waiter() if self._until == "piece" else None
        self._wake(waiter)

    def end(self, error: Exception | None) -> None:
        """Producer: the generator is closed (``error``: what ended it, if anything)."""
        with self._lock:
            self._ended, self._error = True, error
            waiter = self._take_waiter()
        self._wake(waiter)

    def cancel(self) -> None:
        """Stop, from any thread: the producer stops after its current piece; the task wakes."""
        self.cancelled.set()
        with self._lock:
            waiter = self._take_waiter()
        self._wake(waiter)

    async def wait(self, until: Literal["piece", "tick"], timeout: float | None = None) -> None:
        """Task: wait for the end, Stop, ``timeout`` or (``until='piece'``) a piece."""
        with self._lock:
            if self._ended or self.cancelled.is_set() or (until == "piece" and self._pieces):
                return
            waiter = self._waiter = self.loop.create_future()
            self._until = until
        timer = None if timeout is None else self.loop.call_later(timeout, _resolve, waiter)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            with self._lock:
                if self._waiter is waiter:
                    self._waiter = None

    def take(self) -> tuple[list[str], bool, Exception | None]:
        """Task: (the pieces that came since the last take, ended, the error that ended it)."""
        with self._lock:
            pieces, self._pieces = self._pieces, []
            return pieces, self._ended, self._error

    def _take_waiter(self) -> asyncio.Future[None] | None:
        waiter, self._waiter = self._waiter, None
        return waiter

    def _wake(self, waiter: asyncio.Future[None] | None) -> None:
        if waiter is None:
            return
        # RuntimeError: the loop is closed, so the task it ran is gone and nobody waits.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_resolve, waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class EngineThread:
    """One long-lived daemon thread per backend that runs its replies' producers in turn.

    Jobs run one at a time, in order: a reply stopped while the engine computes a token is
    closed before the next reply starts (llama.cpp's context is not thread-safe).
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], None], threading.Event] | None]
        self._jobs = queue.SimpleQueue()
        thread = threading.Thread(target=self._run, args=(self._jobs,), daemon=True)
        thread.name = "ChatUI-engine"
        thread.start()

    def submit(self, job: Callable[[], None]) -> threading.Event:
        """Queue ``job``; the returned event is set when it has run."""
        done = threading.Event()
        self._jobs.put((job, done))
        return done

    @staticmethod
    def _run(jobs: queue.SimpleQueue) -> None:
        while (item := jobs.get()) is not None:  # None: the backend is gone
            job, done = item
            try:
                job()
            finally:
                done.set()


_ENGINE_THREADS: weakref.WeakKeyDictionary[Backend, EngineThread] = weakref.WeakKeyDictionary()
_ENGINE_THREADS_LOCK = threading.Lock()


def engine_thread(backend: Backend) -> EngineThread:
    """The engine thread of ``backend``, started on first use; it ends with the backend."""
    with _ENGINE_THREADS_LOCK:
        engine = _ENGINE_THREADS.get(backend)
        if engine is None:
            engine = _ENGINE_THREADS[backend] = EngineThread()
            weakref.finalize(backend, engine._jobs.put, None)
        return engine


def produce(gen: Generator[str, None, None], handoff: Handoff) -> None:
    """The producer of one reply: iterate ``gen`` until it ends or Stop, then close it."""
    error: Exception | None = None
    try:
        if handoff.cancelled.is_set():
            return
        for piece in gen:
            if handoff.cancelled.is_set():  # Stop came while the engine computed this piece
                break
            if piece:  # a backend holding text back (a possible stop string) yields ""
                handoff.put(piece)
    except Exception as exc:  # the window shows it in the transcript: it must not die
        error = exc
    finally:
        try:
            gen.close()  # closing stops the engine; only this thread, which iterates it, may
        except Exception as exc:
            error = error or exc
        handoff.end(error)
