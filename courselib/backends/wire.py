"""One chat request as it travels: the JSON body sent, the server-sent-event lines back (Lab 02).

The ``openai`` client (and :class:`~courselib.backends.openai_remote.OpenAIBackend` on it)
hides the wire. Lab 02 looks at it once: the student builds the request body and parses the
streamed lines, and :func:`stream_lines` carries one request between the two, with plain
``httpx`` (the HTTP library the ``openai`` client itself uses). Everything else in the course
talks to servers through the backend.

A streamed chat completion is a series of ``data: <json>`` lines separated by blank lines, each
JSON a chunk whose ``choices[0].delta`` holds the next piece of text, ending with
``data: [DONE]``; lines starting with ``:`` are comments (keep-alives).

Example (Lab 02, against the class gateway)::

    >>> body = {"model": "course-chat", "stream": True, "max_tokens": 8,
    ...         "messages": [{"role": "user", "content": "What is the capital of France?"}]}
    >>> stream_lines("http://127.0.0.1:8000/v1", body, api_key="sk-course-...")[:2]
    ['data: {"id":"chatcmpl-...","choices":[{"index":0,"delta":{"role":"assistant"}...}]}', '']
"""

from __future__ import annotations

from typing import Any

from courselib import settings
from courselib.errors import CourseError, require


def stream_lines(
    base_url: str | None,
    body: dict[str, Any],
    *,
    api_key: str | None = None,
    timeout_s: float = 30.0,
) -> list[str]:
    """POST ``body`` to ``<base_url>/chat/completions`` and return the reply's lines as sent.

    ``base_url`` and ``api_key`` default to the course settings (``COURSELAB_SERVER_URL``,
    ``COURSELAB_API_KEY``). A refusal (401, 429, the gateway's 400 for ``max_tokens``) is a
    :class:`CourseError` with the server's own message.
    """
    httpx = require("httpx", package="openai", extra="lab")
    url = settings.resolve("server_url", base_url).rstrip("/") + "/chat/completions"
    key = settings.resolve("api_key", api_key)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with httpx.stream("POST", url, json=body, headers=headers, timeout=timeout_s) as reply:
            if reply.status_code != 200:
                reply.read()
                raise CourseError(
                    f"{url} answered {reply.status_code}: {_message(reply)}",
                    hint="Check the URL, your key, and the body (model, max_tokens, messages).",
                )
            return list(reply.iter_lines())
    except httpx.TransportError as exc:
        raise CourseError(
            f"Cannot reach {url} ({type(exc).__name__}).",
            hint="Check that the server is running and the URL (it usually ends in /v1).",
        ) from None


def _message(reply) -> str:
    """The ``error.message`` of an OpenAI-style error body, else the body's text."""
    try:
        data = reply.json()
    except ValueError:
        return reply.text.strip()[:200]
    inner = data.get("error", data) if isinstance(data, dict) else {}
    return str(inner.get("message") or data) if isinstance(inner, dict) else str(data)
