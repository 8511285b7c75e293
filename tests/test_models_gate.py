"""The course-chat data splits and the quality gate that decides when training may stop.

Fast: a shrunken course-chat trains a few steps with gates that pass or fail on demand; the
whole-build checks (the published model passes its gate, promises hold in llama.cpp) are in
test_models_course.py.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from courselib.errors import CourseError
from courselib.models import COURSE_MODELS, corpus, gate
from courselib.models.evaluate import Accuracy
from courselib.models.tokenizer import save_llama_tokenizer, train_sentencepiece


def test_train_validation_and_test_questions_are_disjoint() -> None:
    by_split: dict[str, set[str]] = {"train": set(), "validation": set(), "test": set()}
    for qa in corpus.questions():
        by_split[qa.split].add(qa.question)
    assert not by_split["train"] & by_split["validation"]
    assert not by_split["train"] & by_split["test"]
    assert not by_split["validation"] & by_split["test"]
    trained = {
        text for _, turns in corpus.training_dialogues() for role, text in turns if role == "user"
    }
    assert not trained & (by_split["validation"] | by_split["test"]), "never trained on"
    assert len(trained & by_split["train"]) > 0.9 * len(by_split["train"])
    assert len(trained - by_split["train"]) > 100  # questions as students type them


def test_augment_keeps_the_question() -> None:
    import random

    rng = random.Random(0)
    seen = {corpus.augment("What is 3 plus 4?", rng) for _ in range(50)}
    assert "What is 3 plus 4" in seen and "what is 3 plus 4?" in seen
    assert any(s.endswith("what is 3 plus 4?") and not s.startswith("what") for s in seen)
    assert all("3 plus 4" in s for s in seen)


def test_every_family_has_validation_and_test_questions() -> None:
    families = {f.name for f in corpus.FAMILIES} | {"unknown"}
    assert {qa.family for qa in corpus.validation()} == families
    assert {qa.family for qa in corpus.held_out()} == families
    assert {f for f, _ in gate.validation_dialogues()} == families


def test_promises_are_training_questions() -> None:
    trained = {(qa.question, qa.answer) for qa in corpus.questions() if qa.split == "train"}
    for system, turns in gate.PROMISES:
        pairs = list(zip(turns[::2], turns[1::2], strict=True))
        assert all((q[1], a[1]) in trained for q, a in pairs)
        assert system not in gate.VALIDATION_SYSTEM_PROMPTS
    assert len(gate.GREETING[1].split()) >= 20  # long enough to stop a stream midway


def test_floors_name_what_misses_them() -> None:
    good = Accuracy(95, 100, {"capital": 1.0, "unknown": 0.6})
    assert good.below_floors() == []
    bad = Accuracy(80, 100, {"capital": 0.5, "unknown": 0.55, "add": 1.0})
    assert bad.below_floors() == ["overall 80% < 90%", "capital 50% < 75%", "unknown 55% < 60%"]
    assert Accuracy(8, 10).below_floors(history=True) == ["overall 80% < 85%"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A shrunken course-chat spec (a few steps) and a course tokenizer."""
    transformers = pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp("tok")
    save_llama_tokenizer(
        train_sentencepiece(corpus.tokenizer_text(), vocab_size=512), path, context_length=128
    )
    base = COURSE_MODELS["course-chat"]
    spec = dataclasses.replace(
        base,
        hidden_size=32,
        intermediate_size=64,
        num_layers=1,
        train=dataclasses.replace(
            base.train, steps=2, extra_steps=1, max_steps=4, batch_size=2, warmup=1
        ),
    )
    return spec, transformers.AutoTokenizer.from_pretrained(str(path))


def _verdict(passed: bool) -> SimpleNamespace:
    return SimpleNamespace(
        passed=passed,
        describe=lambda: "capital 10%",
        what_failed=lambda: "family capital 10% < 95%",
        to_dict=lambda: {"ok": passed},
    )


def test_training_goes_on_until_the_gate_passes(tiny) -> None:
    from courselib.models.train import TrainReport, train_chat_model

    spec, tokenizer = tiny
    answers = iter([False, False, True])
    report = TrainReport()
    train_chat_model(
        spec,
        tokenizer,
        corpus.training_dialogues()[:16],
        threads=1,
        gate=lambda _m: _verdict(next(answers)),
        report=report,
    )
    assert report.steps == 2 + 1 + 1
    assert [r["step"] for r in report.rounds] == [2, 3, 4]
    assert [r["ok"] for r in report.rounds] == [False, False, True]


def test_a_build_that_never_passes_fails_at_the_cap(tiny) -> None:
    from courselib.models.train import TrainReport, train_chat_model

    spec, tokenizer = tiny
    report = TrainReport()
    with pytest.raises(CourseError, match="did not pass its quality gate after 4") as info:
        train_chat_model(
            spec,
            tokenizer,
            corpus.training_dialogues()[:16],
            threads=1,
            gate=lambda _m: _verdict(False),
            report=report,
        )
    assert "capital 10%" in info.value.message and "Nothing was published" in info.value.hint
    assert "What missed: family capital 10% < 95%" in info.value.message
    assert report.steps == 4 == spec.train.max_steps


def test_the_gate_names_the_promise_a_model_cannot_keep(chat, tokenizer) -> None:
    # the shipped course-chat keeps every promise; one it cannot keep (a wrong capital) must
    # be named, with its system prompt, in what the failure says
    transformers = pytest.importorskip("transformers")
    from courselib.chat.vicuna import VICUNA_SYSTEM

    model = transformers.AutoModelForCausalLM.from_pretrained(str(chat))
    wrong = (VICUNA_SYSTEM, [("user", "What is the capital of Japan?"),
                             ("assistant", "The capital of Japan is Paris.")])  # fmt: skip
    kept = gate.check(model, tokenizer)
    assert kept.passed and kept.weak_promises == []
    result = gate.check(model, tokenizer, promises=[*gate.PROMISES, wrong])
    assert not result.passed and result.promises_kept == len(gate.PROMISES)
    text = result.what_failed()
    assert "promise [A chat between a curious] What is the capital of Japan? -> " in text
    assert "'The capital of Japan is Paris.' broken (margin -" in text
    assert "Tokyo" not in text  # the kept promises are not listed


def test_a_seed_that_misses_is_followed_by_the_next(tiny, tmp_path) -> None:
    # seeds 0 and 1 miss the gate at the step cap; seed 2 passes it, but a model trained for
    # 4 steps cannot keep the promises in llama.cpp: three seeds, each named, then nothing
    from courselib.models.scratch import train_checkpoint

    spec, _ = tiny
    calls = iter([False] * 6 + [True])  # 3 gate checks per seed (steps 2, 3, 4)
    logs: list[str] = []
    with pytest.raises(CourseError) as info:
        train_checkpoint(
            dataclasses.replace(spec, vocab_size=512),
            tmp_path / "out",
            threads=1,
            gate=lambda _m, _t: _verdict(next(calls)),
            log=logs.append,
        )
    said = "\n".join(logs)
    assert "trying seed 1 by itself (attempt 2 of 3)" in said
    assert "trying seed 2 by itself (attempt 3 of 3)" in said
    assert "seed 2 passed the gate but" in said
    message = info.value.message
    assert "with any of 3 seeds (0-2)" in message
    assert "seed 0: family capital 10% < 95%" in message and "seed 1: family" in message
    assert "seed 2: course-chat's Q4_K_M file breaks" in message
    assert not (tmp_path / "out").exists()  # nothing written


def test_gate_scores_a_random_model_low_and_counts_every_item(tiny) -> None:
    transformers = pytest.importorskip("transformers")
    spec, tokenizer = tiny
    from courselib.models.train import llama_config

    model = transformers.LlamaForCausalLM(llama_config(spec, vocab_size=len(tokenizer)))
    result = gate.check(model.eval(), tokenizer)
    assert not result.passed
    assert set(result.by_family) == {f for f, _ in gate.validation_dialogues()}
    assert result.promises == len(gate.PROMISES) and result.promises_kept == 0
    assert result.failures and result.promise_margin < 0


def test_training_renders_the_bytes_the_chat_sends(tiny) -> None:
    """Training text == the prompt renderer's == the Jinja chat template stored in the model
    (what llama.cpp, transformers and servers render at inference), answers included."""
    from courselib.chat.vicuna import render_vicuna
    from courselib.models.train import IGNORE, encode_dialogue

    _, tokenizer = tiny
    turns = [("user", "What is 3 plus 4?"), ("assistant", "3 + 4 = 7."),
             ("user", "Hello!"), ("assistant", corpus.GREETING_ANSWER)]  # fmt: skip
    ids, labels = encode_dialogue(tokenizer, "Be brief.", turns)
    text = render_vicuna(turns, system="Be brief.")
    assert ids == tokenizer(text).input_ids
    messages = [{"role": "system", "content": "Be brief."}] + [
        {"role": role, "content": content} for role, content in turns
    ]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == "<s>" + text
    # labels: exactly the answers and their </s>
    answers = tokenizer.decode([t for t in labels if t != IGNORE])
    assert answers.replace(" ", "") == ("3 + 4 = 7.</s>" + corpus.GREETING_ANSWER + "</s>").replace(
        " ", ""
    )


def test_unseen_questions_use_only_trained_tokens() -> None:
    """Validation and test questions are spelled with tokens the training data contains: a
    token only they use would keep its random initial embedding, and the answer would hinge
    on it (a family at 100% on one build and 0% on the next)."""
    transformers = pytest.importorskip("transformers")
    spec = COURSE_MODELS["course-chat"]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        sp_model = train_sentencepiece(corpus.tokenizer_text(), vocab_size=spec.vocab_size)
        save_llama_tokenizer(sp_model, Path(tmp), context_length=spec.context_length)
        tokenizer = transformers.AutoTokenizer.from_pretrained(tmp)
    # what training feeds the model: the dialogues with piece dropout, over 6 epochs
    # (600 steps x 32 dialogues is about 6 passes over the corpus)
    from courselib.models.train import PieceDropout, encode_dialogue

    dropout, rng = PieceDropout(tokenizer), random.Random(0)
    examples = [encode_dialogue(tokenizer, s, t) for s, t in corpus.training_dialogues()]
    trained: set[int] = set()
    for _ in range(6):
        for ids, labels in examples:
            trained.update(dropout(ids, labels, rng)[0])
    untrained = {
        qa.question: [tokenizer.convert_ids_to_tokens(t) for t in ids if t not in trained]
        for qa in corpus.questions()
        if qa.split != "train"
        for ids in [tokenizer(qa.question).input_ids]
    }
    assert {q: t for q, t in untrained.items() if t} == {}
