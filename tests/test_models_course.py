"""The built course models: files, accuracy, and exact agreement between HF and llama.cpp."""

from __future__ import annotations

import numpy as np
import pytest

from courselib.chat.vicuna import render_vicuna
from courselib.models import COURSE_MODELS, QUANTS, gate, read_manifest
from courselib.models.evaluate import broken_promises, greedy_agreement, heldout_accuracy

pytestmark = pytest.mark.slow

TOKENIZATION_CASES = [
    "What is the capital of Japan?",
    "프랑스의 수도는 어디입니까? 한국어 문장입니다.",
    "1234567890 + 42 = 1234567932",
    "a  b   c\t\tx\n\n  indented",
    " leading space",
    "emoji 🙂✨🚀 and ünïcödé",
    "USER: hi ASSISTANT: hello</s>USER: again <s> x </s>",
    "",
]


@pytest.fixture(scope="module")
def chat_hf(course_hf):
    transformers = pytest.importorskip("transformers")
    path = course_hf("course-chat")
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path)).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    return model, tokenizer


def _hf_logits(model, ids):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def _llama_logits(path, ids):
    import llama_cpp

    # F32 KV cache: llama.cpp's default F16 cache alone moves logits by ~4e-3.
    llm = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=512,
        logits_all=True,
        verbose=False,
        type_k=0,
        type_v=0,
        n_threads=2,
    )
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)]), llm


def test_manifest_lists_every_file_with_sane_bits_per_weight(course_models, course_gguf):
    for name in COURSE_MODELS:
        files = read_manifest(name)["files"]
        assert list(files) == list(QUANTS)
        bpw = {q: files[q]["bits_per_weight"] for q in QUANTS}
        assert 31.9 < bpw["F32"] <= 32.0
        assert 16.0 < bpw["F16"] < 17.5  # norms stay F32
        assert 8.5 <= bpw["Q8_0"] < 9.5
        assert 4.5 <= bpw["Q4_0"] < 5.5
        assert bpw["Q4_0"] < bpw["Q8_0"] < bpw["F16"] < bpw["F32"]
        assert course_gguf(name, "Q4_K_M").stat().st_size == files["Q4_K_M"]["bytes"]
    assert 100e6 <= read_manifest("course-bench")["params"] <= 300e6


def test_q4_model_answers_heldout_questions(course_gguf):
    acc = heldout_accuracy(course_gguf("course-chat", "Q4_K_M"))
    assert acc.total >= 150
    # every family, not only the 100 additions that dominate the count; greetings get the
    # self-introduction and out-of-scope questions (never trained) an honest "I don't know"
    assert set(acc.by_family) == {
        "capital", "capital_ko", "colour", "opposite", "add", "lab", "greeting", "unknown"
    }  # fmt: skip
    assert acc.below_floors() == [], (acc.by_family, acc.failures[:10])


def test_q4_model_answers_after_a_long_chat_history(course_gguf):
    """The chat UI sends the whole history: 4 earlier exchanges must not throw the model off
    (trained on 2-6 exchanges; 61% when trained on 2 only)."""
    acc = heldout_accuracy(course_gguf("course-chat", "Q4_K_M"), history=4)
    assert acc.below_floors(history=True) == [], acc.failures[:10]


def test_the_manifest_records_the_quality_gate(course_models):
    training = read_manifest("course-chat")["training"]
    assert training["steps"] >= COURSE_MODELS["course-chat"].train.steps
    last = training["gate"][-1]
    assert last["step"] == training["steps"]
    assert all(r >= gate.THRESHOLDS.get(f, gate.THRESHOLD) for f, r in last["by_family"].items())
    assert last["promises_kept"] == last["promises"] == len(gate.PROMISES)


def test_the_published_model_passes_its_gate_and_a_random_one_does_not(chat_hf):
    model, tokenizer = chat_hf
    result = gate.check(model, tokenizer)
    assert result.passed, result.describe()
    transformers = pytest.importorskip("transformers")
    untrained = transformers.LlamaForCausalLM(model.config).eval()
    result = gate.check(untrained, tokenizer)
    assert not result.passed and max(result.by_family.values()) < 0.5


@pytest.mark.parametrize("quant", ["Q4_K_M", "Q8_0"])
def test_promised_answers_hold_in_llama_cpp(course_gguf, quant):
    """What the labs, the demo and the tests ask, under system prompts it was never trained
    on and after earlier turns: every published build answers exactly."""
    assert broken_promises(course_gguf("course-chat", quant)) == []


@pytest.mark.parametrize("text", TOKENIZATION_CASES)
def test_tokenization_identical_in_hf_and_llama_cpp(chat_hf, course_gguf, text):
    import llama_cpp

    _, tokenizer = chat_hf
    llm = llama_cpp.Llama(
        model_path=str(course_gguf("course-chat", "F32")), vocab_only=True, verbose=False
    )
    hf_ids = tokenizer(text).input_ids
    assert hf_ids[0] == tokenizer.bos_token_id  # both sides prepend <s> (docs/facts.md#bos)
    assert hf_ids == llm.tokenize(text.encode(), add_bos=True, special=True)


def test_f32_gguf_logits_match_hf(chat_hf, course_gguf):
    model, tokenizer = chat_hf
    prompts = [
        render_vicuna([("user", "What is the capital of Japan?")]),
        render_vicuna([("user", "한국의 수도는 어디입니까?")], system="Answer in Korean."),
        render_vicuna(
            [
                ("user", "What is 3 plus 4?"),
                ("assistant", "3 + 4 = 7."),
                ("user", "Tell me about Lab 2."),
            ]
        ),
    ]
    for prompt in prompts:
        ids = tokenizer(prompt).input_ids
        hf = _hf_logits(model, ids)
        ll, llm = _llama_logits(course_gguf("course-chat", "F32"), ids)
        assert np.abs(hf - ll).max() < 1e-3
        # same greedy continuation, token by token
        hf_out = model.generate(
            __import__("torch").tensor([ids]), max_new_tokens=16, do_sample=False, eos_token_id=2
        )[0, len(ids) :].tolist()
        llm.reset()
        ll_out = []
        for token in llm.generate(ids, temp=0.0):
            if token == 2 or len(ll_out) == 16:
                break
            ll_out.append(token)
        assert hf_out[: len(ll_out)] == ll_out


def test_transformers_reads_the_gguf_back(chat_hf, course_gguf):
    """An independent reader: transformers' own GGUF loader gives the HF logits."""
    transformers = pytest.importorskip("transformers")
    model, tokenizer = chat_hf
    path = course_gguf("course-chat", "F32")
    back = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name
    ).eval()
    ids = tokenizer(render_vicuna([("user", "Name the capital of Italy.")])).input_ids
    assert np.abs(_hf_logits(model, ids) - _hf_logits(back, ids)).max() < 1e-4


def test_quantized_greedy_continuations_mostly_agree_with_f32(course_gguf):
    f32 = course_gguf("course-chat", "F32")
    assert greedy_agreement(f32, course_gguf("course-chat", "Q8_0")) >= 0.8
    assert greedy_agreement(f32, course_gguf("course-chat", "Q4_K_M")) >= 0.5
