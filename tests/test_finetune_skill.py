"""Lab 04's skill (what sound an animal makes): the shipped data and its held-out split, the
base model's score, and that the lab's LoRA fine-tune of course-chat learns the skill on
phrasings it never saw without the course families collapsing.

The assertions are floors, not one run's replies: every machine fine-tunes the same shipped
course-chat, and the floors keep a wide margin below the worst of the training seeds the
bench (bench/bench_finetune_skill.py) measures, so that another CPU's float sums cannot
cross them.
"""

from __future__ import annotations

import doctest
import json
import string

import pytest
from finetune_facts import THREADS

from courselib.finetune import skill
from courselib.finetune.data import load_records
from courselib.models import corpus

BASE_CEILING = 0.10
"""The base model may get a held-out skill question right by luck, not more (measured: 0%)."""
UPLIFT_FLOOR = 0.50
"""Tuned minus base held-out accuracy (measured on the shipped course-chat: 88-100 points,
seeds 0-2)."""
COURSE_DROP_CEILING = 0.20
"""Held-out course accuracy may fall this much at most (measured: 4-9 points, seeds 0-2;
without replayed course dialogues it fell from 96% to 1-4%: that is the collapse)."""


def normalised(question: str) -> str:
    """A question without the fillers, case and punctuation that :func:`corpus.augment` adds."""
    for filler in (*corpus.BEFORE["en"], *corpus.AFTER["en"]):
        question = question.replace(filler.strip(), " ")
    return " ".join(question.lower().strip(string.punctuation + " ").split())


def test_the_shipped_files_load_and_match_the_tables(tmp_path):
    dialogues = load_records(skill.data_dir() / skill.TRAIN_FILE)
    assert len(dialogues) == len(skill.SOUNDS) * len(skill.TRAIN)
    assert all(system is None and len(turns) == 2 for system, turns in dialogues)
    test, validation = skill.held_out(), skill.held_out(split="validation")
    assert len(test) == len(skill.SOUNDS) * len(skill.TEST)
    assert len(validation) == len(skill.SOUNDS) * len(skill.VALIDATION)
    assert all(qa.expect in qa.answer and qa.family == skill.FAMILY for qa in test + validation)
    # the files are what write_data makes from the tables (an instructor may replace both)
    for path in skill.write_data(tmp_path):
        assert path.read_bytes() == (skill.data_dir() / path.name).read_bytes()


def test_held_out_phrasings_are_never_trained_but_their_facts_are():
    trained = load_records(skill.data_dir() / skill.TRAIN_FILE)
    trained_questions = {normalised(turns[0][1]) for _, turns in trained}
    trained_answers = {turns[1][1] for _, turns in trained}
    for split in ("validation", "test"):
        for qa in skill.held_out(split=split):
            assert normalised(qa.question) not in trained_questions, qa.question
            assert qa.answer in trained_answers  # a known fact asked in new words
    assert not set(skill.TRAIN) & set(skill.VALIDATION + skill.TEST)
    assert not set(skill.VALIDATION) & set(skill.TEST)


def test_no_course_answer_contains_a_sound():
    """So the base model cannot score by repeating what it knows (e.g. "I don't know that")."""
    answers = [qa.answer for qa in corpus.questions()]
    for sound in skill.SOUNDS.values():
        assert not any(sound in answer for answer in answers), sound


def test_replay_covers_every_course_family_out_of_scope_most():
    asked = {qa.question: qa.family for qa in corpus.questions() if qa.split == "train"}
    replay = skill.replay_dialogues(84, seed=3)
    families = [asked[turns[0][1]] for _, turns in replay]
    assert len(replay) == 84 and len(set(map(str, replay))) == 84  # no repeats
    assert set(families) == {f.name for f in corpus.FAMILIES} | {"unknown"}
    assert max(families, key=families.count) == "unknown"


def test_the_docstring_examples_run():
    from courselib.finetune import evaluate

    assert doctest.testmod(skill).failed == 0
    assert doctest.testmod(evaluate).failed == 0


def test_a_bad_held_out_line_is_reported_with_its_number(tmp_path):
    from courselib.errors import CourseError

    path = tmp_path / "heldout.jsonl"
    good = {"instruction": "Q?", "output": "A.", "expect": "A", "split": "test"}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"instruction": "Q?"}) + "\n")
    with pytest.raises(CourseError, match=r"line 2: no expect, output, split"):
        skill.held_out(path)


@pytest.fixture
def one_thread(monkeypatch):
    """torch and llama.cpp on THREADS threads (see finetune_facts.THREADS)."""
    import torch

    monkeypatch.setenv("COURSELAB_THREADS", str(THREADS))
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def lora_model(chat):
    """course-chat with the recipe's adapters, untrained: LoRA's B starts at 0, so this is
    the base model until the slow test trains it."""
    from courselib.finetune.methods import load_for_training

    return load_for_training(chat, method="lora", lora=skill.RECIPE.lora, seed=0)


def test_the_base_model_does_not_have_the_skill(lora_model, tokenizer, one_thread, capfd):
    capfd.readouterr()
    base = skill.skill_accuracy(lora_model, tokenizer)
    assert capfd.readouterr().err == ""  # nothing red in the lab's notebook
    assert base.rate <= BASE_CEILING, base.failures[:3]
    assert len(base.replies) == len(skill.held_out()) and base.by_family.keys() == {"sound"}


def test_the_transformers_replies_agree_with_llama_cpp(
    lora_model, tokenizer, course_gguf, one_thread
):
    """The fine-tune's evaluator asks in process; the course's asks a GGUF through llama.cpp
    (courselib.models.evaluate). On the same questions they agree (F32: the same weights)."""
    from courselib.chat.vicuna import render_vicuna
    from courselib.finetune.evaluate import ask
    from courselib.models.evaluate import greedy, open_llama

    questions = corpus.held_out()[::6]  # 28 questions of every family
    ours = ask(lora_model, tokenizer, questions)
    llm = open_llama(course_gguf("course-chat", "F32"))
    theirs = [qa.expect in greedy(llm, render_vicuna([("user", qa.question)])) for qa in questions]
    agree = sum(r.correct == t for r, t in zip(ours.replies, theirs, strict=True))
    assert agree >= len(questions) - 1


@pytest.mark.slow
def test_lora_learns_the_skill_and_keeps_the_course(chat, tokenizer, one_thread):
    from courselib.finetune.evaluate import course_families_accuracy
    from courselib.finetune.methods import load_for_training

    model = load_for_training(chat, method="lora", lora=skill.RECIPE.lora, seed=0)
    base = skill.skill_accuracy(model, tokenizer)
    course_before = course_families_accuracy(model, tokenizer)
    result = skill.finetune_skill(model, tokenizer, seed=0, threads=THREADS)
    tuned = skill.skill_accuracy(model, tokenizer)
    course_after = course_families_accuracy(model, tokenizer)
    assert result.steps == skill.RECIPE.steps
    assert tuned.rate - base.rate >= UPLIFT_FLOOR, tuned.failures
    assert course_after.rate >= course_before.rate - COURSE_DROP_CEILING, course_after.by_family
