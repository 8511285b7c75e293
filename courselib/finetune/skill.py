"""The skill Lab 04's LoRA fine-tune teaches course-chat: what sound an animal makes.

course-chat knows capitals, colours, opposites, additions and the labs; asked anything else,
it says "I don't know that". Lab 04 teaches it a fact family it has never seen: twelve animals
and their sounds, each asked in the training phrasings, and measured on **held-out phrasings
never trained on** (the course corpus's split, :mod:`courselib.models.corpus`): the
validation phrasings chose the hyper-parameters, the test phrasings give the lab's number.
A reply is correct when it contains the sound. Before the fine-tune course-chat scores 0%
(it answers "I don't know that" or something it knows); after two minutes of LoRA on a CPU,
about 90%, and it still answers the course questions it knew, a few points lower (course
dialogues are replayed during the fine-tune).

Why this skill: a small model memorises new facts in minutes, not arithmetic that generalises
(docs/facts.md#small-models). Measured with :data:`RECIPE` on the shipped course-chat
(training seeds 0-2, 1 CPU thread): held-out skill accuracy 0% -> 88-100% (validation
phrasings 83-96%) in about 2 minutes of training; held-out course accuracy 96% -> 87-92%.
What the design rests on, measured on the way (on an earlier course-chat build):

- the answer repeats the animal ("A cow says moo."), as every course answer repeats its
  subject. Answered "It says moo." instead, the held-out phrasings scored 0-12%: the model
  finds the sound from the animal it has just written;
- the skill is trained under the Vicuna system prompt it is asked with: 100% against 83%
  trained under an empty one (shorter examples, but another context), same steps;
- course dialogues are replayed (:func:`replay_dialogues`): without them the held-out
  course accuracy fell from 96% to 1-4% (seeds 0-2), the old skills gone.

The first two were measured in a plain training loop at a constant rate, the rest with
:func:`courselib.finetune.train.finetune`. The data lives in two files an instructor may replace with their own (same formats)::

    courselib/data/finetune/skill_train.jsonl     Alpaca records {"instruction", "output"}
    courselib/data/finetune/skill_heldout.jsonl   {"instruction", "output", "expect", "split"}

:func:`write_data` regenerates them from the tables below (a test checks they agree).

Example::

    >>> [qa.question for qa in questions() if qa.split == "test"][:2]
    ['Do you know what sound a cow makes?', 'Do you know the sound of a cow?']
    >>> questions()[0].answer, questions()[0].expect
    ('A cow says moo.', 'moo')
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

from courselib.chat.vicuna import VICUNA_SYSTEM
from courselib.errors import CourseError
from courselib.finetune.data import Dialogue, encode, load_records
from courselib.finetune.evaluate import Scores, ask
from courselib.finetune.presets import LoraSettings
from courselib.finetune.train import FinetuneResult, finetune
from courselib.memory.training import ALL_LINEAR
from courselib.models import corpus

FAMILY = "sound"
"""The skill's family name in scores (``Scores.by_family``)."""

SOUNDS = {
    "a cow": "moo", "a dog": "woof", "a cat": "meow", "a duck": "quack", "a sheep": "baa",
    "a pig": "oink", "an owl": "hoot", "a lion": "roar", "a frog": "ribbit",
    "a horse": "neigh", "a bee": "buzz", "a wolf": "howl",
}  # fmt: skip
"""Twelve facts, each animal with its article. Every name starts with a different vocabulary
piece ('▁co'+'w', '▁do'+'g', ...): with snake next to sheep (both '▁s'...), runs mixed them up
("A says woof.")."""

TRAIN = (
    "What sound does {x} make?",
    "What noise does {x} make?",
    "What does {x} say?",
    "Which sound does {x} make?",
    "Tell me the sound {x} makes.",
    "What is the sound of {x}?",
    "How does {x} sound?",
)
VALIDATION = ("What's the sound of {x}?", "Can you tell me what {x} says?")
TEST = ("Do you know what sound {x} makes?", "Do you know the sound of {x}?")
ANSWER = "{X} says {y}."
"""``{X}``: the animal with a capital letter ('A cow', 'An owl')."""

AUGMENT_SHARE = corpus.AUGMENT_SHARE
"""Share of training questions written as a student types them (:func:`corpus.augment`)."""

DATA = "data/finetune"
TRAIN_FILE = "skill_train.jsonl"
HELDOUT_FILE = "skill_heldout.jsonl"

HeldOutSplit = Literal["validation", "test"]


def questions() -> list[corpus.QA]:
    """Every skill question with its split (train, validation, test), as the corpus's QA."""
    splits: tuple[tuple[corpus.Split, tuple[str, ...]], ...] = (
        ("train", TRAIN),
        ("validation", VALIDATION),
        ("test", TEST),
    )
    out = []
    for x, y in SOUNDS.items():
        for split, templates in splits:
            for template in templates:
                answer = ANSWER.format(X=x[:1].upper() + x[1:], y=y)
                out.append(corpus.QA(FAMILY, template.format(x=x), answer, y, split))
    return out


def data_dir() -> Path:
    """The folder of the shipped skill files (inside the installed package)."""
    return Path(str(resources.files("courselib") / DATA))


def write_data(
    out_dir: str | os.PathLike[str] | None = None, *, seed: int = 0
) -> tuple[Path, Path]:
    """Write the training file (Alpaca) and the held-out file; their paths.

    ``AUGMENT_SHARE`` of the training questions are written as a student might type them (a
    filler word, no final punctuation, a lower-case start), drawn with ``seed``.
    """
    folder = Path(out_dir) if out_dir is not None else data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    train, held_out = [], []
    for qa in questions():
        if qa.split == "train":
            question = qa.question
            if rng.random() < AUGMENT_SHARE:
                question = corpus.augment(question, rng)
            train.append({"instruction": question, "output": qa.answer})
        else:
            held_out.append(
                {"instruction": qa.question, "output": qa.answer, "expect": qa.expect,
                 "split": qa.split}
            )  # fmt: skip
    paths = folder / TRAIN_FILE, folder / HELDOUT_FILE
    for path, records in zip(paths, (train, held_out), strict=True):
        lines = [json.dumps(r, ensure_ascii=False) for r in records]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths


def train_dialogues(path: str | os.PathLike[str] | None = None) -> list[Dialogue]:
    """The skill's training dialogues (:func:`courselib.finetune.data.load_records`)."""
    return load_records(path if path is not None else data_dir() / TRAIN_FILE)


def held_out(
    path: str | os.PathLike[str] | None = None, *, split: HeldOutSplit = "test"
) -> list[corpus.QA]:
    """The held-out questions of one split, from a held-out file (default: the shipped one).

    Each line is ``{"instruction", "output", "expect", "split"}``; a reply is correct when it
    contains ``expect``.
    """
    path = Path(path) if path is not None else data_dir() / HELDOUT_FILE
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        missing = {"instruction", "output", "expect", "split"} - set(record)
        if missing:
            raise CourseError(
                f"{path}, line {number}: no {', '.join(sorted(missing))}.",
                hint='Each held-out line is {"instruction", "output", "expect", "split"} with '
                'split "validation" or "test"; a reply is correct when it contains expect.',
            )
        if record["split"] == split:
            out.append(
                corpus.QA(FAMILY, record["instruction"], record["output"], record["expect"], split)
            )
    return out


# ---- the recipe ---------------------------------------------------------------------------

SKILL_LORA = LoraSettings(r=16, alpha=32, dropout=0.0, target_modules=ALL_LINEAR, lr=5e-3)
"""LoRA for a 3.7M-parameter model, chosen on the validation phrasings. Held-out test accuracy
after 150 steps (seed 0, a course-chat build from before the shipped one): learning rate 3e-4 (alpaca-lora's, for 7B) 0%, 2e-3 33%, 5e-3 96%,
1e-2 92%; adapters on the attention matrices only 42%, on the MLP only 33%, on all seven 96%;
r=8 79%. Dropout 0: twelve facts, nothing to regularise in 150 steps."""


@dataclass(frozen=True)
class SkillRecipe:
    """How Lab 04 fine-tunes the skill (chosen on the validation phrasings, several seeds)."""

    lora: LoraSettings = field(default_factory=lambda: SKILL_LORA)
    """Adapters and learning rate."""
    steps: int = 300
    """Optimizer steps. On the shipped course-chat, validation (test) accuracy over seeds 0-2:
    150 steps 38-71% (33-62%), 200 steps 71% (62%, seed 0), 300 steps 83-96% (88-100%); 150
    steps at lr 1e-2 33-42% with the course falling to 62-69%. (150 steps at 5e-3 gave 96% on
    the course-chat builds trained before it was shipped: the recipe depends on the model.)"""
    batch_size: int = 16
    """Examples per step."""
    warmup_steps: int = 10
    """Linear warm-up, then linear decay to 0 (transformers' Trainer)."""
    replay: float = 0.5
    """Share of the training examples that are course dialogues, so the old skills stay."""
    system: str = VICUNA_SYSTEM
    """System prompt the skill questions are trained under (the one they are asked with)."""


RECIPE = SkillRecipe()


REPLAY_WEIGHTS = {"unknown": 4, "add": 4}
"""Replay weight of a course family (default 1): the two the skill takes over. Out-of-scope
questions ("Who is Charles Darwin?") come out as "A wolf says howl.": replayed 4x, 55% of the
held-out ones kept "I don't know" against 35% (base model: 70%; seed 0). Two-digit sums
pick up the skill's "says" ("4 + 7 = 11ay."), and additions are 100 of the 165 held-out
course questions: replayed 4x, the worst seed's course accuracy rose from 84% to 89%."""


def replay_dialogues(
    count: int, *, seed: int = 0, weights: dict[str, int] | None = None
) -> list[Dialogue]:
    """``count`` course training questions with their answers, as one-question dialogues:
    replayed during the fine-tune so the model keeps what it knew.

    Each family (capitals, ..., greetings, out-of-scope) gets a share of ``count`` in
    proportion to its weight (``REPLAY_WEIGHTS``), so that every old skill is replayed, not
    mostly the 100 additions that fill the course data. The system is None:
    :func:`courselib.finetune.data.encode` gives them the skill's.
    Example: ``replay_dialogues(2)`` -> [(None, [('user', ...), ('assistant', ...)]), ...]
    """
    weights = REPLAY_WEIGHTS if weights is None else weights
    rng = random.Random(seed)
    by_family: dict[str, list[corpus.QA]] = {}
    for qa in corpus.questions():
        if qa.split == "train":
            by_family.setdefault(qa.family, []).append(qa)
    total = sum(weights.get(f, 1) for f in by_family)
    shares = {f: count * weights.get(f, 1) / total for f in by_family}
    sizes = {f: int(share) for f, share in shares.items()}
    # largest remainders take the count's last few places
    for f in sorted(shares, key=lambda f: sizes[f] - shares[f])[: count - sum(sizes.values())]:
        sizes[f] += 1
    picked = [
        qa for f, items in by_family.items() for qa in rng.sample(items, min(sizes[f], len(items)))
    ]
    rng.shuffle(picked)
    return [(None, [("user", qa.question), ("assistant", qa.answer)]) for qa in picked]


def training_examples(
    tokenizer,
    *,
    recipe: SkillRecipe = RECIPE,
    seed: int = 0,
    path: str | os.PathLike[str] | None = None,
) -> list[dict[str, list[int]]]:
    """The encoded skill dialogues plus the replayed course dialogues (``recipe.replay``)."""
    if not 0 <= recipe.replay < 1:
        raise CourseError(
            f"replay={recipe.replay} is not a share of the examples.",
            hint="Use a number from 0 (no course dialogues) up to, not including, 1.",
        )
    skill = train_dialogues(path)
    n_replay = round(len(skill) * recipe.replay / (1 - recipe.replay))  # replay / all = share
    replay = replay_dialogues(n_replay, seed=seed)
    return encode(tokenizer, skill + replay, system=recipe.system)


def finetune_skill(
    model,
    tokenizer,
    *,
    recipe: SkillRecipe = RECIPE,
    seed: int = 0,
    path: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    progress: bool = False,
) -> FinetuneResult:
    """Train ``model`` (from :func:`~courselib.finetune.methods.load_for_training`, with
    ``lora=recipe.lora``) on the skill; the :class:`~courselib.finetune.train.FinetuneResult`.

    Example::

        model = load_for_training(hf_dir("course-chat"), method="lora", lora=RECIPE.lora)
        before = skill_accuracy(model, tokenizer)        # adapters start at zero: the base
        finetune_skill(model, tokenizer)
        print(side_by_side(before, skill_accuracy(model, tokenizer)))
    """
    examples = training_examples(tokenizer, recipe=recipe, seed=seed, path=path)
    return finetune(
        model,
        tokenizer,
        examples,
        steps=recipe.steps,
        batch_size=recipe.batch_size,
        lora=recipe.lora,
        warmup_steps=recipe.warmup_steps,
        seed=seed,
        threads=threads,
        progress=progress,
    )


def skill_accuracy(
    model,
    tokenizer,
    *,
    split: HeldOutSplit = "test",
    path: str | os.PathLike[str] | None = None,
) -> Scores:
    """Greedy replies to the held-out skill questions and their accuracy
    (:class:`courselib.finetune.evaluate.Scores`; ``.replies`` for a side-by-side table)."""
    return ask(model, tokenizer, held_out(path, split=split))
