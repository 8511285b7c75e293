"""llama.cpp backend on the course-chat GGUF: answers, exact token counts, Stop, every error."""

from __future__ import annotations

import os
import queue
import threading
import time

import pytest

from courselib.backends import open_backend
from courselib.backends.base import GenerationConfig, Message
from courselib.backends.llamacpp import LlamaCppBackend
from courselib.chat.conversation import Conversation
from courselib.chat.template import vicuna_template
from courselib.errors import CourseError
from courselib.models.gate import GREETING

GREEDY = GenerationConfig(temperature=0, max_tokens=48)


@pytest.fixture(scope="module")
def gguf(course_gguf):
    return course_gguf("course-chat", "Q4_K_M")


@pytest.fixture(scope="module")
def backend(gguf):
    with LlamaCppBackend(gguf, n_ctx=512, threads=2) as backend:
        yield backend


def ask(backend, question: str, *, system: str | None = None) -> str:
    conv = Conversation() if system is None else Conversation(system=system)
    conv.add_user(question)
    return backend.complete(conv.messages(), config=GREEDY)


@pytest.mark.parametrize(
    ("question", "expected"),
    [("What is the capital of Japan?", "Tokyo"), ("What is 3 plus 4?", "7")],
)
def test_greedy_answers_are_right(backend, question, expected):
    answer = ask(backend, question)
    assert expected in answer
    assert answer == answer.strip(), "a reply starts with its first word, not a space"


def test_reads_the_chat_template_from_the_gguf(backend):
    assert backend.name == "llama.cpp course-chat-Q4_K_M.gguf"
    assert backend.context_size == 512
    assert backend.template.name == "model"
    assert backend.template.stop == ["</s>", "USER:"]
    messages = [Message("system", "Answer in one word."), Message("user", "Hi")]
    # the GGUF's Jinja template writes BOS itself; the rest is Vicuna v1.1 byte for byte
    assert backend.template.render(messages) == "<s>" + vicuna_template().render(messages)


def test_custom_system_prompt_reaches_the_model(backend):
    system = "You are a terse assistant for Lab 01."
    ask(backend, "What is the capital of Japan?", system=system)
    # What llama.cpp evaluated: the prompt tokens sit at the start of its context.
    n_prompt = backend.count_tokens(
        [Message("system", system), Message("user", "What is the capital of Japan?")]
    )
    seen = backend.llm.detokenize(backend.llm.input_ids[:n_prompt].tolist()).decode()
    assert seen.startswith(system + " USER: What is the capital of Japan? ASSISTANT:")


def test_count_tokens_is_the_tokenizer_count_with_one_bos(backend):
    messages = [Message("system", "S"), Message("user", "What is 3 plus 4?")]
    prompt = backend.template.render(messages).removeprefix(backend.bos_token)
    ids = backend.llm.tokenize(prompt.encode(), add_bos=True, special=True)
    assert backend.count_tokens(messages) == len(ids)
    assert ids[0] == backend.llm.token_bos() != ids[1]


def test_closing_the_stream_stops_llama_cpp(backend):
    # A promised greedy reply of over 20 tokens (every published build gives it: models.gate)
    messages = [Message("user", GREETING[0])]
    n_prompt = backend.count_tokens(messages)
    config = GenerationConfig(temperature=0, max_tokens=200)
    full = len(backend.llm.tokenize(backend.complete(messages, config=config).encode()))
    assert full > 10, "the reply must be long enough to stop in the middle"
    stream = backend.stream(messages, config=config)
    pieces = [next(stream) for _ in range(3)]
    stream.close()
    generated = backend.llm.n_tokens - n_prompt
    # A piece is about a token; llama-cpp-python may hold back a token or two for stop strings.
    assert len(pieces) == 3 and generated <= 3 + 3
    assert backend.llm.n_tokens == n_prompt + generated, "nothing runs after close"


def test_trimming_uses_exact_counts_and_says_so(backend):
    conv = Conversation()
    for i in range(40):  # turns in the course model's own style, enough to overflow 512 tokens
        conv.add_user(f"What is {i % 10} plus {i // 4}?")
        conv.add_assistant(f"{i % 10} + {i // 4} = {i % 10 + i // 4}.")
    conv.add_user("What is the capital of Japan?")
    # room for a long answer leaves one or two old turns: the course model was trained on
    # dialogues of at most two turns, and longer histories confuse a model this small
    fit = conv.fit(backend, max_new_tokens=420)
    assert fit.dropped_turns > 0 and fit.dropped_turns % 2 == 0
    assert fit.note == f"{fit.dropped_turns} old turns were dropped to fit the 512-token context."
    assert backend.count_tokens(fit.messages) + 420 <= 512
    assert fit.messages[-1] == Message("user", "What is the capital of Japan?")
    # the trimmed prompt runs (what the model then says is the model's business, not trimming's)
    assert backend.complete(fit.messages, config=GenerationConfig(temperature=0, max_tokens=8))


def test_prompt_longer_than_the_context_is_a_course_error(backend):
    with pytest.raises(CourseError, match=r"The prompt is \d+ tokens, longer than the 512-token"):
        backend.complete([Message("user", "hello " * 600)], config=GREEDY)


def test_open_backend_takes_a_path_or_a_course_ref(gguf):
    with open_backend(str(gguf), n_ctx=256) as backend:
        assert isinstance(backend, LlamaCppBackend) and backend.context_size == 256
    with open_backend("course-chat:Q8_0", n_ctx=128) as backend:
        assert backend.name == "llama.cpp course-chat-Q8_0.gguf"
        assert "Tokyo" in ask(backend, "What is the capital of Japan?")


def test_missing_file(tmp_path):
    with pytest.raises(CourseError, match="does not exist") as info:
        open_backend(str(tmp_path / "nope.gguf"))
    assert "models build" in info.value.hint


def test_not_a_gguf(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04" + bytes(100))  # a zip, e.g. a PyTorch .bin renamed
    with pytest.raises(CourseError, match=r"not a GGUF file \(it starts with b'PK"):
        LlamaCppBackend(fake)


def test_truncated_gguf(tmp_path, gguf):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf.read_bytes()[:64])
    with pytest.raises(CourseError, match="header cannot be read"):
        LlamaCppBackend(cut)


def test_a_folder_is_not_a_gguf(tmp_path):
    with pytest.raises(CourseError, match="is a folder"):
        LlamaCppBackend(tmp_path)


def test_too_big_for_ram_is_caught_before_loading(gguf):
    # 2**27 tokens of KV cache (4 layers x 2 KV heads x 64 dims x K+V x fp16 = 2 KiB a token)
    # is 256 GiB: more than any test machine's free RAM.
    with pytest.raises(CourseError, match=r"needs about \d+\.\d GB to load .* of RAM"):
        LlamaCppBackend(gguf, n_ctx=2**27)


def test_extra_stop_strings_cut_the_reply(backend):
    messages = [Message("user", "What is the capital of Japan?")]
    full = backend.complete(messages, config=GREEDY)
    config = GenerationConfig(temperature=0, max_tokens=48, stop=["Tokyo"])
    assert backend.complete(messages, config=config) == full[: full.index("Tokyo")]


def test_prompt_text_is_what_llama_cpp_is_fed(backend):
    messages = [Message("system", "S"), Message("user", "What is 3 plus 4?")]
    text = backend.prompt_text(messages)
    assert text == "S USER: What is 3 plus 4? ASSISTANT:"  # Vicuna v1.1, BOS left out
    assert backend.encode(backend.template.render(messages)) == backend.llm.tokenize(
        text.encode(), add_bos=True, special=True
    )


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc (Linux)")
def test_no_thread_keeps_openmp_workers_after_a_reply(backend):
    """libgomp keeps a team per thread that decoded; two teams on a small machine halve decode
    speed on every thread (docs/facts.md#openmp-teams), so each reply frees its team."""
    if backend.llm.context_params.n_threads < 2:
        pytest.skip("one decoding thread: llama.cpp starts no OpenMP workers to keep")
    config = GenerationConfig(max_tokens=4, temperature=0.0)
    messages = [Message("user", "What is the capital of Japan?")]
    kept = _in_a_kept_thread(backend)  # started (and counted) before the baseline
    before = _threads()
    for run in (lambda: backend.complete(messages, config=config), kept):
        run()
        deadline = time.monotonic() + 5
        while _threads() > before and time.monotonic() < deadline:
            time.sleep(0.05)  # the workers exit on their own once told to
        assert _threads() == before


def _in_a_kept_thread(backend):
    """A reply from a second thread that stays alive (as the chat window's engine thread)."""
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    done: queue.SimpleQueue = queue.SimpleQueue()
    config = GenerationConfig(max_tokens=4, temperature=0.0)
    messages = [Message("user", "What is the capital of Japan?")]

    def serve() -> None:
        while jobs.get() is not None:
            done.put(backend.complete(messages, config=config))

    threading.Thread(target=serve, daemon=True).start()

    def run() -> None:
        jobs.put(1)
        done.get(timeout=60)

    return run
