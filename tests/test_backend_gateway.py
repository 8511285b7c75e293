"""courselib's remote backend through the real class gateway (nginx + llama-cpp-python's
server on course-chat, started by ``server_setup up``: conftest's ``server`` fixture).

What a student meets on the class server: streaming through the gateway, a bad key, the
max_tokens cap, the rate limit (retried after Retry-After, then a clear message), a prompt
longer than the context. Generations are short (max_tokens <= 16): two shared cores.
"""

from __future__ import annotations

import time

import httpx
import pytest
from servers import BURST, CAP

from courselib.backends import open_backend
from courselib.backends.base import GenerationConfig, Message
from courselib.backends.openai_remote import OpenAIBackend
from courselib.errors import CourseError

SHORT = GenerationConfig(temperature=0, max_tokens=CAP)
QUESTION = [Message("user", "What is the capital of France?")]


def _drain(server, student: str) -> None:
    """Spend ``student``'s burst until the gateway answers 429."""
    headers = {"Authorization": f"Bearer {server['keys'][student]}"}
    with httpx.Client() as http:
        codes = [http.get(server["url"] + "/models", headers=headers).status_code]
        while codes[-1] != 429 and len(codes) < BURST + 10:
            codes.append(http.get(server["url"] + "/models", headers=headers).status_code)
    assert codes[-1] == 429, codes


def test_a_student_streams_through_the_gateway(server):
    with open_backend(server["url"], api_key=server["keys"]["s001"]) as backend:
        pieces = list(backend.stream(QUESTION, config=SHORT))
    assert len(pieces) > 1 and "Paris" in "".join(pieces)


def test_settings_give_the_url_and_key(server, monkeypatch):
    monkeypatch.setenv("COURSELAB_SERVER_URL", server["url"])
    monkeypatch.setenv("COURSELAB_API_KEY", server["keys"]["s001"])
    with OpenAIBackend() as backend:
        assert backend.base_url == server["url"] and backend.model.startswith("course-chat")


def test_a_bad_key_says_so(server):
    with pytest.raises(CourseError, match=r"refused the API key \(401") as info:
        open_backend(server["url"], api_key="sk-course-not-issued")
    assert "COURSELAB_API_KEY" in info.value.hint


def test_max_tokens_over_the_gateway_cap_says_the_cap(server):
    key = server["keys"]["s001"]
    with (
        open_backend(server["url"], api_key=key) as backend,
        pytest.raises(CourseError, match=f"caps the reply length.*limit of {CAP}") as info,
    ):
        backend.complete(QUESTION, config=GenerationConfig(max_tokens=CAP * 4))
    assert f"at most {CAP} tokens" in info.value.hint


def test_a_prompt_longer_than_the_context_says_so(server):
    key = server["keys"]["s001"]
    with (
        open_backend(server["url"], api_key=key) as backend,
        pytest.raises(CourseError, match="maximum context length is 512 tokens"),
    ):
        backend.complete([Message("user", "hello " * 600)], config=SHORT)


def test_the_rate_limit_is_waited_out_then_reported(server):
    key = server["keys"]["s004"]
    _drain(server, "s004")
    start = time.monotonic()
    with OpenAIBackend(server["url"], api_key=key) as backend:  # 429, Retry-After: 1, retried
        waited = time.monotonic() - start
        assert backend.complete(QUESTION, config=GenerationConfig(temperature=0, max_tokens=4))
    assert waited >= 1.0
    _drain(server, "s004")
    with pytest.raises(CourseError, match=r"busy: rate limit \(429.*\(no retries\)") as info:
        OpenAIBackend(server["url"], api_key=key, max_retries=0)
    assert "requests a minute per student" in info.value.message
    # the others are not slowed down
    with OpenAIBackend(server["url"], api_key=server["keys"]["s001"], max_retries=0):
        pass
