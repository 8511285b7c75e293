"""courselib.grading.own_work: a graded function may not call the library's answer."""

from __future__ import annotations

import pytest

from courselib.chat.vicuna import render_vicuna
from courselib.grading import own_work
from courselib.memory import count_params, load_config
from courselib.memory import kv_cache_bytes as library_kv  # an alias is caught too

LLAMA_7B = (4096, 32, 32, 32, 11008, 32000)


def own_llama_params(hidden, layers, heads, kv_heads, ffn, vocab, tied=False):
    attention = 2 * hidden * hidden + 2 * hidden * kv_heads * (hidden // heads)
    embeddings = vocab * hidden * (1 if tied else 2)
    return layers * (attention + 3 * hidden * ffn + 2 * hidden) + embeddings + hidden


def borrowed_llama_params(*_shape):
    return count_params(load_config("llama-7b")).total


def test_a_solution_calling_the_library_fails_with_the_reason_and_an_own_one_passes():
    assert own_work(own_llama_params, lab="lab03")(*LLAMA_7B) == 6_738_415_616
    with pytest.raises(
        AssertionError, match="borrowed_llama_params called the course's count_params"
    ):
        own_work(borrowed_llama_params, lab="lab03")(*LLAMA_7B)
    # put back afterwards: the rest of the notebook (and the library) works as before
    assert count_params(load_config("llama-7b")).total == 6_738_415_616


def test_aliases_methods_and_nested_graded_functions_are_covered():
    def kv(layers, kv_heads, head_dim, n_ctx):
        return library_kv(None, n_ctx=n_ctx)  # never reaches the library's code

    with pytest.raises(AssertionError, match="called the course's kv_cache_bytes"):
        own_work(kv, lab="lab03")(40, 40, 128, 512)

    def prompt(turns, system="S"):  # as a backend's prompt_text renders: a template's method
        from courselib.chat.messages import Message
        from courselib.chat.template import vicuna_template

        messages = [Message("system", system), *(Message(*t) for t in turns)]
        return vicuna_template().render(messages)

    with pytest.raises(AssertionError, match="called the course's"):
        own_work(prompt, lab="lab01")([("user", "Hi")])
    with pytest.raises(AssertionError, match="called the course's render_vicuna"):
        own_work(lambda turns: render_vicuna(turns), lab="lab01")([("user", "Hi")])

    bits = own_work(lambda p: {"fp16": 16}[p], lab="lab03")
    gb = own_work(lambda n, p: n * bits(p) / 8 / 1e9, lab="lab03")  # graded calls graded
    assert gb(2e9, "fp16") == 4.0
    assert own_work(gb, lab="lab03") is gb  # a test cell run twice wraps once
    assert render_vicuna([("user", "Hi")], system="S") == "S USER: Hi ASSISTANT:"


def test_lab02s_stream_parser_in_the_ops_tools_is_a_reference_once_loaded():
    import sys

    from server_setup.sse import stream_choices

    def read_stream(lines):
        return "".join(
            (c or {}).get("delta", {}).get("content") or "" for c in stream_choices(lines)
        )

    lines = ['data: {"choices": [{"delta": {"content": "Hi"}}]}', "", "data: [DONE]"]
    assert read_stream(lines) == "Hi"
    with pytest.raises(AssertionError, match="read_stream called the course's stream_choices"):
        own_work(read_stream, lab="lab02")(lines)
    assert read_stream(lines) == "Hi"  # put back
    # a reference whose module is not loaded is left alone (courselib imports no tool above it)
    sys.modules.pop("server_setup.loadtest", None)
    assert own_work(lambda xs: sorted(xs)[len(xs) // 2], lab="lab02")([3, 1, 2]) == 2
    assert "server_setup.loadtest" not in sys.modules
