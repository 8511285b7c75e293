"""OpenAI-compatible backend against a real llama-cpp-python server on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time

import httpx
import pytest
from servers import free_port

from courselib.backends import open_backend
from courselib.backends.base import GenerationConfig, Message
from courselib.backends.openai_remote import OpenAIBackend
from courselib.chat.conversation import Conversation
from courselib.errors import CourseError
from courselib.models.gate import GREETING

KEY = "sk-course-test"
GREEDY = GenerationConfig(temperature=0, max_tokens=48)


@pytest.fixture(scope="module")
def server_url(course_gguf, tmp_path_factory):
    """A llama-cpp-python server serving course-chat (its GGUF carries the Vicuna template)."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(course_gguf("course-chat", "Q4_K_M")),
        "--model_alias", "course-chat",
        "--host", "127.0.0.1", "--port", str(port),
        "--api_key", KEY, "--n_ctx", "512", "--n_threads", "2",
    ]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"server died:\n{log.read_text()}"
            try:
                if httpx.get(
                    f"{url}/models", headers={"Authorization": f"Bearer {KEY}"}
                ).is_success:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"server not up in 60 s:\n{log.read_text()}"
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def local(course_gguf):
    """The same GGUF in this process: exact token counts with the same tokenizer."""
    with open_backend(str(course_gguf("course-chat", "Q4_K_M"))) as backend:
        yield backend


@pytest.fixture(scope="module")
def remote(server_url):
    with open_backend(server_url, api_key=KEY) as backend:
        yield backend


def test_finds_the_model_and_answers(remote):
    assert isinstance(remote, OpenAIBackend)
    assert remote.model == "course-chat"
    conv = Conversation()
    conv.add_user("What is the capital of Japan?")
    answer = remote.complete(conv.messages(), config=GREEDY)
    assert "Tokyo" in answer and answer == answer.strip()


def test_a_root_url_gets_v1_and_a_named_model_is_used(server_url):
    root = server_url.removesuffix("/v1")
    with open_backend(root, api_key=KEY, model="course-chat", n_ctx=512) as backend:
        assert backend.base_url == server_url and backend.context_size == 512


def test_the_server_renders_the_gguf_template_with_the_custom_system_prompt(server_url, local):
    # usage.prompt_tokens counts what the server really fed the model: two system prompts
    # that differ by k tokens must give prompt counts that differ by k.
    import openai

    client = openai.OpenAI(base_url=server_url, api_key=KEY)

    def prompt_tokens(system: str) -> int:
        reply = client.chat.completions.create(
            model="course-chat",
            messages=[{"role": "system", "content": system}, {"role": "user", "content": "Hi"}],
            max_tokens=1,
        )
        return reply.usage.prompt_tokens

    short, long = "Be brief.", "Be brief. Answer every question about the labs in one line."
    expected = local.count_tokens([Message("system", long), Message("user", "Hi")])
    expected -= local.count_tokens([Message("system", short), Message("user", "Hi")])
    assert expected > 5
    assert prompt_tokens(long) - prompt_tokens(short) == expected


def test_token_counts_come_from_the_server_tokenizer(remote, local):
    messages = [Message("system", "Be brief."), Message("user", "What is 3 plus 4?")]
    count = remote.count_tokens(messages)
    assert remote._counter == "llama-cpp-python"
    # Vicuna v1.1 rendered here, the same on the server: the same count (both with BOS).
    assert count == local.count_tokens(messages)


def test_closing_the_stream_closes_the_request(remote):
    # A promised greedy reply of over 20 tokens (every published build gives it: models.gate)
    messages = [Message("user", GREETING[0])]
    stream = remote.stream(messages, config=GenerationConfig(temperature=0, max_tokens=200))
    pieces = [next(stream) for _ in range(3)]
    stream.close()
    assert len(pieces) == 3
    # The server is free again: the next request is answered normally.
    assert "Tokyo" in remote.complete(
        [Message("user", "What is the capital of Japan?")], config=GREEDY
    )


def test_prompt_too_long_reports_the_servers_context(server_url):
    with open_backend(server_url, api_key=KEY) as backend:
        assert backend.context_size == 2048  # llama-cpp-python's server does not say its n_ctx
        with pytest.raises(CourseError, match="maximum context length is 512 tokens") as info:
            backend.complete([Message("user", "hello " * 600)], config=GREEDY)
        assert "Shorten" in info.value.hint
        assert backend.context_size == 512, "learned from the error, for the next fit"


def test_wrong_api_key(server_url):
    with pytest.raises(CourseError, match=r"refused the API key \(401"):
        open_backend(server_url, api_key="sk-wrong")


def test_unknown_model_name_lists_what_the_server_has(server_url):
    with pytest.raises(CourseError, match="has no model 'vicuna-13b'; it serves: course-chat"):
        open_backend(server_url, api_key=KEY, model="vicuna-13b")


def test_server_unreachable():
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(CourseError, match=f"Cannot reach the inference server at {url}") as info:
        open_backend(url, api_key=KEY)
    assert "running" in info.value.hint


class _VllmLike(http.server.BaseHTTPRequestHandler):
    """vLLM's two extra answers, as its OpenAI server gives them: max_model_len and /tokenize."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        assert self.path == "/v1/models"
        self._json(
            {"data": [{"id": "wizard-vicuna-13b", "object": "model", "max_model_len": 4096}]}
        )

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/tokenize" and body["add_generation_prompt"] is True
        self._json({"count": 100 + len(body["messages"]), "max_model_len": 4096})

    def _json(self, data: dict) -> None:
        raw = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args) -> None:
        pass


def test_vllm_context_and_exact_counts_are_read_from_the_server():
    # A unit test of the parsing only; generation is tested against the real server above.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _VllmLike)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        with OpenAIBackend(url, api_key="k", context_size=512) as backend:
            assert backend.model == "wizard-vicuna-13b"
            assert backend.context_size == 4096, "the server's max_model_len beats the fallback"
            assert backend.count_tokens([Message("user", "Hi"), Message("user", "Ho")]) == 102
            assert backend._counter == "vllm"
    finally:
        server.shutdown()


class _Busy(http.server.BaseHTTPRequestHandler):
    """/v1/models answers ``refusals`` times with ``status`` (and ``retry_after``), then 200."""

    refusals = 2
    status = 429
    retry_after: str | None = "0.2"
    seen: list[float] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path != "/v1/models":  # the backend asks /props for the context size
            self._json({}, 404, None)
            return
        type(self).seen.append(time.monotonic())
        if len(self.seen) <= self.refusals:
            body = {"error": {"message": "Rate limit: slow down.", "code": "rate_limit_exceeded"}}
            self._json(body, self.status, self.retry_after)
        else:
            self._json({"data": [{"id": "course-chat", "object": "model"}]}, 200, None)

    def _json(self, data: dict, status: int, retry_after: str | None) -> None:
        raw = json.dumps(data).encode()
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def busy_server():
    """A fake that refuses first: a unit test of the retry loop (the real gateway's 429 is
    tested in test_backend_gateway.py)."""

    def start(**attrs) -> tuple[str, list[float]]:
        """-> (its URL, the times it was asked)."""
        handler = type("Handler", (_Busy,), {**attrs, "seen": []})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append((server, handler))
        return f"http://127.0.0.1:{server.server_address[1]}/v1", handler.seen

    started: list = []
    yield start
    for server, _ in started:
        server.shutdown()


def test_a_busy_server_is_retried_after_its_retry_after(busy_server):
    url, times = busy_server(refusals=2, status=429, retry_after="0.2")
    with OpenAIBackend(url, api_key="k") as backend:
        assert backend.model == "course-chat"
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(times) == 3 and all(0.2 <= g < 0.2 * 1.2 + 0.15 for g in gaps), gaps


def test_a_503_without_retry_after_backs_off(busy_server):
    url, _ = busy_server(refusals=2, status=503, retry_after=None)
    start = time.monotonic()
    with OpenAIBackend(url, api_key="k"):
        pass
    assert 0.5 + 1.0 <= time.monotonic() - start < (0.5 + 1.0) * 1.2 + 0.5  # 0.5 s, then 1 s


def test_retries_are_bounded_in_number_and_time(busy_server):
    url, _ = busy_server(refusals=10, status=429, retry_after="0.1")
    with pytest.raises(CourseError, match=r"busy: rate limit \(429.*after 2 retries") as info:
        OpenAIBackend(url, api_key="k", max_retries=2)
    assert "Rate limit: slow down." in info.value.message and "Wait" in info.value.hint
    # a Retry-After longer than the time allowed: refused at once, not after a long sleep
    url, _ = busy_server(refusals=1, status=503, retry_after="120")
    start = time.monotonic()
    with pytest.raises(CourseError, match=r"overloaded \(503.*\(no retries\)"):
        OpenAIBackend(url, api_key="k", max_wait_s=30)
    assert time.monotonic() - start < 5
