"""``check``: a smoke test of a running class server, through its gateway, with one key.

Each step is one request a student's client makes, judged PASS or FAIL:

- ``models``: ``GET /v1/models`` with the key lists the served model (``model``, else the first);
- ``chat``: one short chat completion (``max_tokens`` 8) answers with text;
- ``stream``: the same streamed: text chunks arrive, then a ``finish_reason`` and ``[DONE]``;
- ``no key`` / ``wrong key``: 401 (the gateway checks every request);
- ``unknown model``: 404 (the gateway refuses a model it does not serve, naming the served
  one; vLLM does too). A 200 fails: a student's typo in ``model`` would be answered by the
  served model and go unnoticed (llama.cpp's server does that without the gateway).

Each step passes on the one answer it tests for and fails on any other, a refusal for
another reason included (a 429 from the rate limit, a 503 while the engine loads).

Example::

    >>> report = check("http://127.0.0.1:8000/v1", key="sk-course-...")
    >>> print(report.table())
    step           result    ms  detail
    models         PASS     1.2  serves course-chat-Q4_K_M
    chat           PASS     9.8  ' The capital of France is Paris.'
    ...
    >>> report.ok
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import httpx

from server_setup.sse import stream_choices

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
NO_SUCH_MODEL = "no-such-model-courselab-check"
Result = Literal["PASS", "FAIL"]


@dataclass(frozen=True)
class Step:
    """One step's verdict; ``ms``: the request's wall time."""

    name: str
    result: Result
    ms: float
    detail: str


@dataclass
class Report:
    """The steps in order; ``ok`` when none failed."""

    url: str
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.result == "PASS" for s in self.steps)

    def table(self) -> str:
        lines = [f"{'step':<15}{'result':<7}{'ms':>7}  detail"]
        for s in self.steps:
            lines.append(f"{s.name:<15}{s.result:<7}{s.ms:>7.1f}  {s.detail}")
        passed = sum(s.result == "PASS" for s in self.steps)
        verdict = "PASS" if self.ok else "FAIL"
        lines.append(f"{verdict}: {passed}/{len(self.steps)} steps passed against {self.url}")
        return "\n".join(lines)


def _error_text(r: httpx.Response) -> str:
    """The OpenAI-shaped error message of a refusal, else the start of the body."""
    try:
        return str(r.json()["error"]["message"])[:70]
    except (ValueError, KeyError, TypeError):
        return r.text[:70]


def check(
    url: str,
    *,
    key: str,
    model: str | None = None,
    timeout_s: float = 60.0,
    transport: httpx.BaseTransport | None = None,
) -> Report:
    """Run the steps against ``url`` (the students' base URL, ending in /v1) with ``key``.

    ``model``: the name students are told to use (default: the first one ``/v1/models``
    lists). A step that cannot connect fails with the reason; the others still run.
    """
    url = url.rstrip("/")
    report = Report(url)
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(timeout=timeout_s, transport=transport) as http:

        def step(name: str, run: Callable[[], tuple[Result, str]]) -> None:
            start = time.perf_counter()
            try:
                result, detail = run()
            except httpx.HTTPError as exc:
                result, detail = "FAIL", f"{type(exc).__name__}: {exc}"[:90]
            report.steps.append(Step(name, result, (time.perf_counter() - start) * 1000, detail))

        served: list[str] = []

        def models() -> tuple[Result, str]:
            r = http.get(url + "/models", headers=auth)
            if r.status_code != 200:
                return "FAIL", f"HTTP {r.status_code}: {_error_text(r)}"
            served.extend(m["id"] for m in r.json().get("data", []))
            if not served:
                return "FAIL", "the list is empty"
            if model and model not in served:
                return "FAIL", f"{model!r} not served; the server lists {', '.join(served)}"
            return "PASS", f"serves {', '.join(served)}"

        step("models", models)
        name = model or (served[0] if served else "default")
        body = {"model": name, "messages": QUESTION, "max_tokens": 8, "temperature": 0.0}

        def chat() -> tuple[Result, str]:
            r = http.post(url + "/chat/completions", headers=auth, json=body)
            if r.status_code != 200:
                return "FAIL", f"HTTP {r.status_code}: {_error_text(r)}"
            text = r.json()["choices"][0]["message"]["content"] or ""
            return ("PASS", repr(text.strip()[:60])) if text.strip() else ("FAIL", "empty answer")

        def stream() -> tuple[Result, str]:
            pieces, finish, done = [], None, False
            with http.stream(
                "POST", url + "/chat/completions", headers=auth, json={**body, "stream": True}
            ) as r:
                if r.status_code != 200:
                    r.read()
                    return "FAIL", f"HTTP {r.status_code}: {_error_text(r)}"
                for choice in stream_choices(r.iter_lines()):
                    if choice is None:
                        done = True
                        break
                    pieces.append(choice.get("delta", {}).get("content") or "")
                    finish = choice.get("finish_reason") or finish
            text = "".join(pieces).strip()
            if not text or not done or not finish:
                return "FAIL", f"{len(pieces)} chunks, finish_reason {finish}, [DONE] {done}"
            return "PASS", f"{len([p for p in pieces if p])} text chunks, finish_reason {finish}"

        def refused(headers: dict[str, str]) -> Callable[[], tuple[Result, str]]:
            def run() -> tuple[Result, str]:
                r = http.get(url + "/models", headers=headers)
                if r.status_code == 401:
                    return "PASS", f"401: {_error_text(r)}"
                if r.status_code == 200:
                    return "FAIL", "HTTP 200, expected 401: anyone can use the server"
                return "FAIL", f"HTTP {r.status_code}, expected 401: {_error_text(r)}"

            return run

        def unknown_model() -> tuple[Result, str]:
            r = http.post(
                url + "/chat/completions",
                headers=auth,
                json={**body, "model": NO_SUCH_MODEL, "max_tokens": 1},
            )
            if r.status_code == 404:
                return "PASS", f"404: {_error_text(r)}"
            if r.status_code == 200:  # llama.cpp's server serves its one model under any name
                return "FAIL", f"answered by the served model ({name}): names are not checked"
            return "FAIL", f"HTTP {r.status_code}, expected 404: {_error_text(r)}"

        step("chat", chat)
        step("stream", stream)
        step("no key", refused({}))
        step("wrong key", refused({"Authorization": "Bearer sk-course-not-a-real-key"}))
        step("unknown model", unknown_model)
    return report
