"""The quality gate every course-chat build must pass before it is published.

Builds are deterministic on one machine, not across CPUs: another CPU's float kernels take
training down another trajectory. So a build is not trusted for its seed but for its margin:
training goes on until the model answers the *validation* questions (phrasings never trained
on, see :mod:`courselib.models.corpus`) in every family, with a step cap, and a build that
misses the gate fails with a clear message and publishes nothing. The held-out *test*
phrasings take no part in it: they measure the result.

Each validation question is asked in three contexts a student's chat produces: the default
Vicuna system prompt; a system prompt never trained on; and after 2-4 earlier exchanges.
A question passes when greedy decoding gives exactly its answer and then ``</s>``, checked by
teacher forcing: the argmax at every answer position is the next answer token (one forward
pass per batch instead of a generation loop; exact for greedy decoding).

``PROMISES`` are the answers the labs, the demo and the tests rely on (e.g. "What is the
capital of Japan?" under a custom system prompt): every published build gives them, with a
logit margin so that 4-bit quantization keeps them (checked again on the Q4_K_M file).

Example::

    >>> result = check(model, tokenizer)            # doctest: +SKIP
    >>> result.passed, result.by_family["capital"]  # doctest: +SKIP
    (True, 1.0)
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from courselib.chat.vicuna import VICUNA_SYSTEM
from courselib.errors import require
from courselib.models import corpus
from courselib.models.train import IGNORE, encode_dialogue

THRESHOLD = 0.95
"""Share of validation questions every fact family (and greetings) must answer exactly."""
THRESHOLDS = {"unknown": 0.80, "greeting": 0.70}
"""Families held to a lower bar. Telling an unseen out-of-scope question (the capital of a
country it was never told about) from a known one is the hardest thing asked of the model:
82-94% on validation where every fact family was at 96-100%. A greeting in new words must
come out as a whole 30-token self-introduction, exactly: 71-100%."""

PROMISE_MARGIN = 1.0
"""Least logit gap (top answer token over the runner-up) at every promised answer token."""

# System prompts in neither the training data nor the tests' own prompts.
VALIDATION_SYSTEM_PROMPTS = [
    "You are a pirate. Answer like one.",
    "Reply politely to the student.",
    "You help students revise for an exam.",
    "Keep it short.",
]

FRIENDLY = "You are a friendly teaching assistant for an LLM course."
COURSE = "You are the course assistant. Answer in one short sentence."
_JAPAN = ("What is the capital of Japan?", "The capital of Japan is Tokyo.")
_HOT = ("What is the opposite of hot?", "The opposite of hot is cold.")
_ADD = ("What is 3 plus 4?", "3 + 4 = 7.")
_KO = ("한국의 수도는 어디입니까?", "한국의 수도는 서울입니다.")
GREETING = ("Hello, who are you?", corpus.GREETING_ANSWER)
"""A promised reply of over 20 tokens: tests that stop a stream midway ask this."""

PROMISES: list[corpus.Dialogue] = [
    (VICUNA_SYSTEM, [("user", _JAPAN[0]), ("assistant", _JAPAN[1])]),
    (VICUNA_SYSTEM, [("user", _ADD[0]), ("assistant", _ADD[1])]),
    (FRIENDLY, [("user", _JAPAN[0]), ("assistant", _JAPAN[1])]),
    (FRIENDLY, [("user", _JAPAN[0]), ("assistant", _JAPAN[1]),
                ("user", _HOT[0]), ("assistant", _HOT[1])]),
    ("Be brief.", [("user", _ADD[0]), ("assistant", _ADD[1])]),
    (COURSE, [("user", _JAPAN[0]), ("assistant", _JAPAN[1])]),
    (COURSE, [("user", _KO[0]), ("assistant", _KO[1])]),
    (VICUNA_SYSTEM, [("user", GREETING[0]), ("assistant", GREETING[1])]),
]  # fmt: skip
"""Dialogues whose last answer every published build gives exactly (labs, demo, tests)."""


@dataclass
class GateResult:
    """What a model scored on the validation set and the promises."""

    by_family: dict[str, float]
    promises_kept: int
    promises: int
    promise_margin: float
    """Smallest logit gap over all promised answer tokens."""
    failures: list[tuple[str, str]] = field(default_factory=list)
    """(prompt, expected answer) of validation questions answered wrongly (first few)."""
    weak_promises: list[tuple[str, str, float]] = field(default_factory=list)
    """(prompt, promised answer, margin) of each promise broken or kept with too small a margin."""

    @property
    def passed(self) -> bool:
        return (
            all(rate >= THRESHOLDS.get(f, THRESHOLD) for f, rate in self.by_family.items())
            and self.promises_kept == self.promises
            and self.promise_margin >= PROMISE_MARGIN
        )

    def describe(self) -> str:
        """E.g. 'capital 100%, add 97%, ... ; promises 7/7 (margin 3.2)'."""
        families = ", ".join(f"{k} {v:.0%}" for k, v in self.by_family.items())
        return (
            f"{families}; promises {self.promises_kept}/{self.promises} "
            f"(margin {self.promise_margin:.1f})"
        )

    def what_failed(self) -> str:
        """Which families, promises and validation questions missed, in words (gate failures).

        Example: 'promise [Be brief.] What is 3 plus 4? -> "3 + 4 = 7." broken (margin -2.1);
        validation missed: [Keep it short.] What is the capital of Peru? -> "..."'
        """
        parts = [
            f"family {f} {rate:.0%} < {THRESHOLDS.get(f, THRESHOLD):.0%}"
            for f, rate in self.by_family.items()
            if rate < THRESHOLDS.get(f, THRESHOLD)
        ]
        parts += [
            f"promise {prompt} -> {answer!r} "
            + (
                f"broken (margin {gap:.1f})"
                if gap <= 0
                else f"kept by {gap:.1f} < {PROMISE_MARGIN}"
            )
            for prompt, answer, gap in self.weak_promises
        ]
        if self.failures:
            parts.append(
                "validation missed: "
                + "; ".join(f"{prompt} -> {answer!r}" for prompt, answer in self.failures[:5])
            )
        return "; ".join(parts) or "nothing"

    def to_dict(self) -> dict:
        return {
            "by_family": {k: round(v, 4) for k, v in self.by_family.items()},
            "promises_kept": self.promises_kept,
            "promises": self.promises,
            "promise_margin": round(self.promise_margin, 2),
        }


def validation_dialogues(*, seed: int = 0) -> list[tuple[str, corpus.Dialogue]]:
    """(family, dialogue ending in the expected answer) for every validation question x context."""
    rng = random.Random(seed)
    earlier = [qa for qa in corpus.questions() if qa.split == "train"]
    out = []
    for i, qa in enumerate(corpus.validation()):
        last = [("user", qa.question), ("assistant", qa.answer)]
        system = VALIDATION_SYSTEM_PROMPTS[i % len(VALIDATION_SYSTEM_PROMPTS)]
        history = [
            turn
            for old in rng.sample(earlier, rng.randint(2, 4))
            for turn in (("user", old.question), ("assistant", old.answer))
        ]
        out += [
            (qa.family, (VICUNA_SYSTEM, last)),
            (qa.family, (system, last)),
            (qa.family, (VICUNA_SYSTEM, history + last)),
        ]
    return out


def check(
    model, tokenizer, *, promises: list[corpus.Dialogue] | None = None, batch_size: int = 64
) -> GateResult:
    """Score ``model`` (a transformers causal LM) on the validation set and the promises
    (:data:`PROMISES` unless others are given)."""
    promises = PROMISES if promises is None else promises
    items = validation_dialogues()
    exact, _ = _last_answers(model, tokenizer, [d for _, d in items], batch_size=batch_size)
    per_family: dict[str, list[bool]] = {}
    failures = []
    for (family, (system, turns)), ok in zip(items, exact, strict=True):
        per_family.setdefault(family, []).append(ok)
        if not ok and len(failures) < 10:
            failures.append((_label(system, turns), turns[-1][1]))
    kept, margins = _last_answers(model, tokenizer, promises, batch_size=batch_size)
    weak = [
        (_label(system, turns), turns[-1][1], gap)
        for (system, turns), gap in zip(promises, margins, strict=True)
        if gap < PROMISE_MARGIN
    ]
    return GateResult(
        by_family={k: sum(v) / len(v) for k, v in per_family.items()},
        promises_kept=sum(kept),
        promises=len(promises),
        promise_margin=min(margins),
        failures=failures,
        weak_promises=weak,
    )


def _label(system: str, turns: list[tuple[str, str]]) -> str:
    """'[system prompt's start] last question' (+ how many exchanges came before)."""
    earlier = (len(turns) - 2) // 2
    after = f" (after {earlier} exchange{'s' * (earlier > 1)})" if earlier else ""
    return f"[{system[:24]}] {turns[-2][1]}{after}"


def _last_answers(
    model, tokenizer, dialogues: list[corpus.Dialogue], *, batch_size: int
) -> tuple[list[bool], list[float]]:
    """For each dialogue: is its last answer the greedy one, and the least logit gap in it."""
    torch = require("torch", extra="models")
    encoded = []
    for system, turns in dialogues:
        ids, labels = encode_dialogue(tokenizer, system, turns)
        # the last answer is the trailing run of labelled tokens (earlier answers are
        # separated from it by the unlabelled "USER: ..." tokens)
        start = len(labels)
        while start > 0 and labels[start - 1] != IGNORE:
            start -= 1
        encoded.append((ids, start))
    exact, margins = [], []
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for b in range(0, len(encoded), batch_size):
            batch = encoded[b : b + batch_size]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.zeros((len(batch), width), dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (seq, _) in enumerate(batch):
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
            for row, (seq, start) in enumerate(batch):
                # logits at position t-1 predict token t: (answer tokens, vocab)
                scores = logits[row, start - 1 : len(seq) - 1].float()
                target = torch.tensor(seq[start:])
                top2 = scores.topk(2, dim=-1)
                right = top2.indices[:, 0] == target
                gap = scores.gather(1, target[:, None])[:, 0] - torch.where(
                    right, top2.values[:, 1], top2.values[:, 0]
                )
                exact.append(bool(right.all()))
                margins.append(float(gap.min()))
    model.train(was_training)
    return exact, margins
