"""The choices of a streamed chat completion, read from its server-sent-event lines.

Used by ``check`` (the smoke test) and ``loadtest``: both read the stream as it arrives. Lab 02
asks students to write this parser themselves, so it lives here, not in courselib.

Example::

    >>> list(stream_choices(['data: {"choices":[{"delta":{"content":"Hi"}}]}', "", "data: [DONE]"]))
    [{'delta': {'content': 'Hi'}}, None]
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator


def stream_choices(lines: Iterable[str]) -> Iterator[dict | None]:
    """Each chunk's first choice, as it arrives; ``None`` last when the stream ends with
    ``data: [DONE]`` (a stream cut short ends without it). Comments and blank lines are
    skipped."""
    for line in lines:
        data = line.removeprefix("data:").strip()
        if not line.startswith("data:") or not data:
            continue
        if data == "[DONE]":
            yield None
            return
        yield json.loads(data)["choices"][0]
