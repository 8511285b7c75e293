"""`server_setup check`: each step passes only on the answer it tests for.

A fake server (httpx.MockTransport) answers every step as a good gateway does, except the step
under test, which gets another refusal (a 429 from the rate limit, a 503 while the engine
loads, the wrong status): that step, and only that one, must fail. The real gateway is checked
in test_gateway (nginx in front of llama.cpp's server) and test_server_setup_vllm.
"""

from __future__ import annotations

import json

import httpx
import pytest

from server_setup.check import NO_SUCH_MODEL, check

KEY = "sk-course-good"
CHUNK = {"choices": [{"delta": {"content": "Paris"}, "finish_reason": None}]}
LAST = {"choices": [{"delta": {}, "finish_reason": "stop"}]}


def _error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": f"refused: {code}", "code": code}})


def _good(request: httpx.Request) -> tuple[str, httpx.Response]:
    """(the step this request belongs to, a good gateway's answer)."""
    auth = request.headers.get("Authorization", "")
    if request.url.path.endswith("/models"):
        if not auth:
            return "no key", _error(401, "missing_api_key")
        if auth != f"Bearer {KEY}":
            return "wrong key", _error(401, "invalid_api_key")
        return "models", httpx.Response(200, json={"data": [{"id": "course-chat"}]})
    body = json.loads(request.content)
    if body["model"] == NO_SUCH_MODEL:
        return "unknown model", _error(404, "model_not_found")
    if body.get("stream"):
        events = "".join(f"data: {json.dumps(e)}\n\n" for e in (CHUNK, LAST)) + "data: [DONE]\n\n"
        return "stream", httpx.Response(
            200, content=events.encode(), headers={"Content-Type": "text/event-stream"}
        )
    answer = {"choices": [{"message": {"content": "Paris."}}]}
    return "chat", httpx.Response(200, json=answer)


def _server(wrong_step: str | None, wrong: httpx.Response | None) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        step, answer = _good(request)
        return wrong if step == wrong_step and wrong is not None else answer

    return httpx.MockTransport(handle)


def _results(transport: httpx.MockTransport) -> dict[str, str]:
    report = check("http://gateway.test/v1", key=KEY, transport=transport)
    return {s.name: s.result for s in report.steps}


def test_a_good_gateway_passes_every_step() -> None:
    results = _results(_server(None, None))
    assert results == dict.fromkeys(
        ["models", "chat", "stream", "no key", "wrong key", "unknown model"], "PASS"
    )


@pytest.mark.parametrize(
    ("step", "wrong"),
    [
        ("models", _error(429, "rate_limit_exceeded")),
        ("chat", _error(503, "engine_unavailable")),
        ("stream", _error(429, "rate_limit_exceeded")),
        ("no key", _error(429, "rate_limit_exceeded")),
        ("no key", httpx.Response(200, json={"data": [{"id": "course-chat"}]})),
        ("wrong key", _error(403, "forbidden")),
        ("unknown model", _error(429, "rate_limit_exceeded")),  # a refusal, but not this one
        ("unknown model", _error(503, "engine_unavailable")),
        ("unknown model", _error(400, "invalid_json")),
        # llama.cpp's server alone: any model name is answered by the one it serves
        ("unknown model", httpx.Response(200, json={"choices": [{"message": {"content": "x"}}]})),
    ],
    ids=lambda v: v if isinstance(v, str) else str(v.status_code),
)
def test_each_step_fails_on_any_other_answer(step: str, wrong: httpx.Response) -> None:
    results = _results(_server(step, wrong))
    failed = {name for name, result in results.items() if result != "PASS"}
    assert failed == {step}, results
