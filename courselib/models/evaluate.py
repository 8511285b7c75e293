"""Check what a course model knows, through llama.cpp (build step, tests, bench).

- :func:`heldout_accuracy`: greedy answers to the held-out questions of
  :mod:`courselib.models.corpus` (known facts, unseen phrasings); correct = contains the fact.
- :func:`broken_promises`: the promised answers (:mod:`courselib.models.gate`) a GGUF misses.
- :func:`greedy_agreement`: how often two GGUF files give the same greedy continuation
  (e.g. Q4_K_M vs F32), the usual measure of what quantization costs.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from courselib import settings
from courselib.chat.vicuna import Role, render_vicuna
from courselib.models import corpus
from courselib.models.gate import PROMISES

PROMPTS = [  # agreement prompts: held-out questions plus open-ended ones
    "What is the capital of Peru?",
    "한국의 수도는 어디인가요?",
    "How much is 7 + 8?",
    "Tell me a story about a red fox.",
    "Explain what a GGUF file is.",
    "Hello, who are you?",
]


FLOORS = {"overall": 0.90, "family": 0.75, "unknown": 0.60, "history": 0.85}
"""What every published build must score on the held-out test set (Q4_K_M, greedy): overall,
in every fact family and greetings, on out-of-scope questions ("I don't know"), and overall
after 4 earlier exchanges. The tests and ``bench/check_models.py`` (``make check-models``)
check builds against them."""


@dataclass
class Accuracy:
    correct: int
    total: int
    by_family: dict[str, float] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def below_floors(self, *, history: bool = False) -> list[str]:
        """What misses :data:`FLOORS`, e.g. ['lab 50% < 75%']; empty when all clear."""
        overall = FLOORS["history" if history else "overall"]
        floors = [("overall", self.rate, overall)]
        if not history:
            floors += [
                (family, rate, FLOORS["unknown" if family == "unknown" else "family"])
                for family, rate in self.by_family.items()
            ]
        return [f"{name} {rate:.0%} < {floor:.0%}" for name, rate, floor in floors if rate < floor]


def open_llama(path: Path, *, n_ctx: int = 512, logits_all: bool = False):
    """A quiet llama_cpp.Llama on ``path`` with the course's thread setting."""
    from courselib.gguf.runtime import load_llama

    return load_llama(
        path, n_ctx=n_ctx, n_threads=settings.resolve("threads"), logits_all=logits_all, seed=0
    )


def greedy(llm, prompt: str, *, max_tokens: int = 32) -> str:
    """Greedy completion of a raw prompt, stopping at </s>."""
    out = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0, stop=["</s>"])
    return out["choices"][0]["text"]


def heldout_accuracy(gguf: Path, *, limit: int | None = None, history: int = 0) -> Accuracy:
    """Share of held-out questions the model answers correctly (greedy, through llama.cpp).

    ``history``: that many earlier exchanges (training questions with their answers, drawn
    with a fixed seed) come before each question, as in a chat that has gone on for a while.
    """
    llm = open_llama(gguf)
    items = corpus.held_out()[:limit]
    earlier = [qa for qa in corpus.questions() if qa.split == "train"]
    rng = random.Random(0)
    per_family: dict[str, list[bool]] = defaultdict(list)
    failures = []
    for qa in items:
        turns: list[tuple[Role, str]] = []
        for old in rng.sample(earlier, history):
            turns += [("user", old.question), ("assistant", old.answer)]
        answer = greedy(llm, render_vicuna([*turns, ("user", qa.question)]))
        ok = qa.expect in answer
        per_family[qa.family].append(ok)
        if not ok:
            failures.append((qa.question, answer.strip()))
    correct = sum(sum(v) for v in per_family.values())
    return Accuracy(
        correct,
        len(items),
        {k: sum(v) / len(v) for k, v in per_family.items()},
        failures,
    )


def broken_promises(gguf: Path) -> list[tuple[str, str]]:
    """(prompt, reply) for each promised answer (:data:`gate.PROMISES`) the GGUF does not give.

    Greedy, through llama.cpp: the path the labs and tests take. Empty for a good build.
    """
    llm = open_llama(gguf)
    broken = []
    for system, turns in PROMISES:
        prompt = render_vicuna(turns[:-1], system=system)
        reply = greedy(llm, prompt, max_tokens=48).strip()
        if reply != turns[-1][1]:
            broken.append((turns[-2][1], reply))
    return broken


def greedy_agreement(
    reference: Path, other: Path, *, prompts: list[str] | None = None, max_tokens: int = 24
) -> float:
    """Share of prompts on which two GGUFs produce exactly the same greedy continuation."""
    prompts = [render_vicuna([("user", p)]) for p in (prompts or PROMPTS)]
    ref = open_llama(reference)
    ref_out = [greedy(ref, p, max_tokens=max_tokens) for p in prompts]
    del ref
    llm = open_llama(other)
    same = sum(
        greedy(llm, p, max_tokens=max_tokens) == r for p, r in zip(prompts, ref_out, strict=True)
    )
    return same / len(prompts)
