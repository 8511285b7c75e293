"""Any OpenAI-compatible server (vLLM, llama.cpp's servers, the class server) (Lab 01, Lab 02).

Chat goes through ``chat.completions`` with the messages themselves, so the server applies the
model's chat template. What the backend learns from the server:

- the model: the one you name (checked against ``GET /models``: llama-cpp-python's server would
  silently answer with its default model), else the first listed;
- the context size: ``max_model_len`` in ``/models`` (vLLM), ``/props`` (llama.cpp's
  llama-server), else the ``context_size`` argument (default 2048, llama-cpp-python's n_ctx);
- token counts: exact from vLLM's ``POST /tokenize`` (it renders the chat template); otherwise
  an estimate: the messages rendered as Vicuna v1.1 (the course's format; other templates
  differ by a few marker tokens per message), tokenized by the server's ``POST
  /extras/tokenize`` (llama-cpp-python) when there is one, else 4 characters per token.

Busy servers: a 429 (the class gateway's per-student rate limit) or a 503 (engine busy or
restarting) is retried, after the server's ``Retry-After`` when it sends one, else after an
exponential backoff (0.5 s, 1 s, 2 s ... at most 8 s), each wait stretched by up to a fifth at
random so a class that was refused together does not come back together. At most
``max_retries`` retries and ``max_wait_s`` seconds of waiting in all; then a CourseError says
the server is busy and what to do.

Every predictable failure (server down, wrong key, unknown model, rate limit, max_tokens over
the server's cap, prompt too long) is a :class:`CourseError` that names the URL and what to
check.

Example::

    >>> backend = OpenAIBackend("http://127.0.0.1:8000/v1", api_key="sk-course")
    >>> backend.complete([Message("user", "What is 3 plus 4?")],
    ...                  config=GenerationConfig(temperature=0))
    '7.'
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from courselib import settings
from courselib.backends.base import Backend, GenerationConfig, Message
from courselib.backends.stops import StopFilter
from courselib.chat.template import vicuna_template
from courselib.errors import CourseError, require

DEFAULT_CONTEXT = 2048
"""Context assumed when the server does not report one (llama-cpp-python's default n_ctx)."""
CHARS_PER_TOKEN = 4
"""Rough English average, used only when the server has no tokenize endpoint."""

RETRY_STATUSES = (429, 503)
"""Busy, not broken: the gateway's rate limit and an engine that is (re)starting or full."""
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.5, 8.0
"""Waits without a Retry-After: 0.5 s, 1 s, 2 s ... capped at 8 s."""
JITTER = 0.2
"""Each wait is stretched by up to this fraction at random (never shortened)."""

TokenCounter = Literal["vllm", "llama-cpp-python", "estimate"]
T = TypeVar("T")


def retry_delay(headers: Mapping[str, str], attempt: int, *, now: float | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (0 = the first), before jitter.

    The server's ``Retry-After`` (seconds, or an HTTP date) when it sends one, else the
    backoff 0.5 s x 2**attempt, at most 8 s.

    Example (Lab 02: the class gateway answers 429 with ``Retry-After: 1``)::

        >>> retry_delay({"retry-after": "1"}, 0), retry_delay({}, 0), retry_delay({}, 3)
        (1.0, 0.5, 4.0)
        >>> retry_delay({"retry-after": "Wed, 21 Oct 2015 07:28:05 GMT"}, 0, now=1445412480.0)
        5.0
    """
    backoff = min(BACKOFF_FIRST_S * 2**attempt, BACKOFF_MAX_S)
    raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if raw is None:
        return backoff
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw).timestamp()
    except (TypeError, ValueError):
        return backoff  # unreadable: as if the server had not said
    return max(0.0, when - (time.time() if now is None else now))


class OpenAIBackend(Backend):
    """A model behind an OpenAI-compatible HTTP API at ``base_url`` (e.g. '.../v1')."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        model: str | None = None,
        context_size: int | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 4,
        max_wait_s: float = 30.0,
    ) -> None:
        """``timeout_s``: per HTTP read (a streamed reply may take longer in all);
        ``max_retries`` / ``max_wait_s``: the bound on retrying a busy server (429/503)."""
        openai = require("openai", extra="lab")
        httpx = require("httpx", package="openai", extra="lab")
        base_url = settings.resolve("server_url", base_url).rstrip("/")
        if urlsplit(base_url).path in ("", "/"):
            base_url += "/v1"  # 'http://host:8000' -> the OpenAI routes under /v1
        self.base_url = base_url
        self.root_url = base_url.removesuffix("/v1")
        # The client refuses an empty key; servers started without --api-key ignore it.
        key = settings.resolve("api_key", api_key) or "no-key"
        self.max_retries = max_retries
        self.max_wait_s = max_wait_s
        # max_retries=0: the client's own retries would not be bounded in time nor say why;
        # _retrying does it
        self.client = openai.OpenAI(
            base_url=base_url, api_key=key, timeout=timeout_s, max_retries=0
        )
        self._httpx = httpx
        self.http = httpx.Client(
            base_url=self.root_url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout_s,
        )
        with self._server_errors():
            listed = list(self._retrying(lambda: self.client.models.list().data))
        ids = [m.id for m in listed]
        if not ids:
            raise CourseError(
                f"The server at {base_url} serves no model.",
                hint="Ask whoever runs it, or start it with a --model.",
            )
        if model is None:
            model = ids[0]
        elif model not in ids:
            raise CourseError(
                f"The server at {base_url} has no model {model!r}; it serves: {', '.join(ids)}.",
                hint="Pass one of those names (--model-name / model=...).",
            )
        self.model = model
        self.name = f"remote {model} @ {base_url}"
        info = listed[ids.index(model)].model_extra or {}
        self.context_size = self._server_context(info) or context_size or DEFAULT_CONTEXT
        self._counter: TokenCounter | None = None

    # -- what the server says about itself ------------------------------------------------

    def _server_context(self, info: dict) -> int | None:
        """max_model_len (vLLM) or llama-server's /props n_ctx; None when the server is silent."""
        if info.get("max_model_len"):
            return int(info["max_model_len"])
        props = self._root("GET", "/props") or {}
        settings_ = props.get("default_generation_settings")
        n_ctx = settings_.get("n_ctx") if isinstance(settings_, dict) else None
        return int(n_ctx) if n_ctx else None

    def _root(self, method: str, path: str, body: dict | None = None) -> dict | None:
        """JSON from a route outside /v1, or None when the server has no such route."""
        try:
            reply = self.http.request(method, path, json=body)
        except self._httpx.TransportError:
            raise CourseError(
                f"Cannot reach the inference server at {self.base_url} (no connection).",
                hint="Check that the server is still running and the URL.",
            ) from None
        if reply.status_code == 401:
            raise CourseError(
                f"The server at {self.base_url} refused the API key (401 Unauthorized).",
                hint="Check your key: --api-key, the COURSELAB_API_KEY environment variable or "
                "api_key in the course config file.",
            )
        if reply.status_code != 200:
            return None
        try:
            data = reply.json()
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Exact with vLLM's /tokenize; an estimate otherwise (see the module docstring)."""
        if self._counter in (None, "vllm"):
            payload = [{"role": m.role, "content": m.content} for m in messages]
            body = {"model": self.model, "messages": payload, "add_generation_prompt": True}
            reply = self._root("POST", "/tokenize", body) or {}
            if "count" in reply:
                self._counter = "vllm"
                return int(reply["count"])
        # Estimate: the prompt in the course's Vicuna v1.1 layout (exact for a server that uses
        # it), counted by the server's own tokenizer.
        text = vicuna_template().render(messages)
        if self._counter in (None, "llama-cpp-python"):
            reply = self._root("POST", "/extras/tokenize", {"input": text}) or {}
            if "tokens" in reply:
                self._counter = "llama-cpp-python"
                return len(reply["tokens"])
        self._counter = "estimate"
        return len(text) // CHARS_PER_TOKEN + 1

    # -- generation -----------------------------------------------------------------------

    def stream(
        self, messages: Sequence[Message], *, config: GenerationConfig
    ) -> Generator[str, None, None]:
        """Yield the server's streamed deltas; closing the generator closes the connection,
        which makes the server stop generating."""
        request = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": config.max_tokens,
            "temperature": config.temperature,
            "top_p": config.top_p,
            "stop": list(config.stop) or None,
            "seed": config.seed,
        }
        openai = require("openai", extra="lab")
        with self._server_errors():
            chunks = self._retrying(
                lambda: self.client.chat.completions.create(**request, stream=True)
            )
        clean = StopFilter([])  # the server cuts stop strings; this drops leading spaces
        finished = False
        try:
            for chunk in chunks:
                if not chunk.choices:
                    continue
                finished = finished or chunk.choices[0].finish_reason is not None
                piece, _ = clean.feed(chunk.choices[0].delta.content or "")
                if piece:
                    yield piece
        except openai.APIConnectionError:
            pass  # the stream broke off: diagnosed below
        finally:
            chunks.close()
        if not finished:
            # llama-cpp-python's server answers 200, then drops a stream that failed (e.g. a
            # prompt longer than its context): ask once without streaming to get the real
            # error, which _server_errors turns into a CourseError.
            with self._server_errors():
                # A retry: the server reset the pooled connection the broken stream used.
                retrying = self.client.with_options(max_retries=2)
                retrying.chat.completions.create(**{**request, "max_tokens": 1})
            raise CourseError(
                f"The server at {self.base_url} broke off the reply without saying why.",
                hint="Try again; if it persists, check the server's log.",
            )

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()
        self.http.close()

    def _retrying(self, call: Callable[[], T]) -> T:
        """``call()``, retried while the server answers 429 or 503 (see the module docstring)."""
        openai = require("openai", extra="lab")
        waited = 0.0
        attempt = 0
        while True:
            try:
                return call()
            except openai.APIStatusError as exc:
                if exc.status_code not in RETRY_STATUSES:
                    raise
                wait = retry_delay(exc.response.headers, attempt)
                wait *= 1 + JITTER * random.random()
                if attempt >= self.max_retries or waited + wait > self.max_wait_s:
                    raise self._busy(exc, retries=attempt, waited_s=waited) from None
            time.sleep(wait)
            waited += wait
            attempt += 1

    def _busy(self, exc, *, retries: int, waited_s: float) -> CourseError:
        """The CourseError for a server still busy after the retries."""
        what = (
            "rate limit (429 Too Many Requests)"
            if exc.status_code == 429
            else "overloaded (503 Service Unavailable)"
        )
        tried = f"after {retries} retries in {waited_s:.1f} s" if retries else "(no retries)"
        return CourseError(
            f"The server at {self.base_url} is busy: {what}, still {tried}: {_server_message(exc)}",
            hint="Wait a minute and try again, with fewer requests at a time (the class shares "
            "one server); ask your instructor if it lasts.",
        )

    @contextmanager
    def _server_errors(self) -> Iterator[None]:
        """Turn the openai client's exceptions into CourseErrors that say what to check."""
        openai = require("openai", extra="lab")
        url = self.base_url
        try:
            yield
        except openai.AuthenticationError:
            raise CourseError(
                f"The server at {url} refused the API key (401 Unauthorized).",
                hint="Check your key: --api-key, the COURSELAB_API_KEY environment variable or "
                "api_key in the course config file.",
            ) from None
        except openai.APIConnectionError as exc:
            reason = "timed out" if isinstance(exc, openai.APITimeoutError) else "no connection"
            raise CourseError(
                f"Cannot reach the inference server at {url} ({reason}).",
                hint="Check the URL (host, port, and the /v1 path), that the server is running "
                "(python -m llama_cpp.server --model M for a local one), and VPN or firewall.",
            ) from None
        except openai.BadRequestError as exc:
            message = _server_message(exc)
            if "context" in message.lower() and "length" in message.lower():
                # "This model's maximum context length is 512 tokens" (OpenAI, vLLM, llama.cpp):
                # the server's context, which /models may not have said; later fits use it.
                if found := re.search(r"context length is (\d+)", message):
                    self.context_size = int(found.group(1))
                raise CourseError(
                    f"The prompt does not fit the model's context: {message}",
                    hint="Shorten the prompt or the system prompt, drop old turns "
                    "(Conversation.fit does), or lower max tokens.",
                ) from None
            if _server_code(exc) == "max_tokens_too_large":  # the class gateway's cap
                cap = re.search(r"limit of (\d+) tokens", message)
                raise CourseError(
                    f"The server at {url} caps the reply length: {message}",
                    hint=f"Ask for at most {cap.group(1) if cap else 'that many'} tokens: "
                    "GenerationConfig(max_tokens=...), or the chat window's answer length.",
                ) from None
            raise CourseError(
                f"The server at {url} rejected the request: {message}",
                hint="Check the generation options (max tokens, temperature) and the messages.",
            ) from None
        except openai.NotFoundError as exc:
            message = _server_message(exc)
            if "model" in message.lower():
                # vLLM: "The model `x` does not exist." (the model was listed, then unloaded)
                raise CourseError(
                    f"The server at {url} has no model {getattr(self, 'model', '?')!r} "
                    f"(404): {message}",
                    hint="Pass a model it serves: open_backend(url, model=...) lists them "
                    "when the name is wrong.",
                ) from None
            raise CourseError(
                f"The server at {url} answered 404 Not Found: that is not an OpenAI API URL.",
                hint="The base URL usually ends in /v1, e.g. http://127.0.0.1:8000/v1.",
            ) from None
        except openai.APIStatusError as exc:
            raise CourseError(
                f"The server at {url} answered {exc.status_code}: {_server_message(exc)}",
                hint="Try again; if it persists, tell whoever runs the server.",
            ) from None


def _server_code(exc) -> str:
    """The ``code`` of an OpenAI-style error body ('' when there is none)."""
    body = getattr(exc, "body", None)
    inner = body.get("error", body) if isinstance(body, dict) else None
    return str(inner.get("code") or "") if isinstance(inner, dict) else ""


def _server_message(exc) -> str:
    """The human part of an OpenAI-style error body, else the exception's text."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(body.get("detail"), str):
            return body["detail"]
    return str(exc)
