"""Ask a transformers model course questions, greedily, and score the replies (Lab 04).

The in-process twin of :mod:`courselib.models.evaluate`, which asks a GGUF through llama.cpp:
a model being fine-tuned is a transformers (or peft) model, and asking it where it is needs no
merge and no GGUF export per measurement. Same prompts (:func:`render_vicuna`), same rule (a
reply is correct when it contains the question's expected string), same
:class:`~courselib.models.evaluate.Accuracy`, plus every reply for a side-by-side table.
On the built course-chat both paths score the held-out course questions alike (tested).

Example::

    >>> scores = course_families_accuracy(model, tokenizer)     # doctest: +SKIP
    >>> scores.rate, scores.by_family["capital"]                # doctest: +SKIP
    (0.96, 1.0)
    >>> print(side_by_side(base, tuned))                        # doctest: +SKIP
    question                            expected  base                      tuned
    Do you know the sound of a cow?     moo       I don't know that. I am   A cow says moo.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from courselib.chat.vicuna import VICUNA_SYSTEM, render_vicuna
from courselib.errors import require
from courselib.models import corpus
from courselib.models.evaluate import Accuracy

MAX_NEW_TOKENS = 40
"""Reply length cap in tokens: the longest course answer (a greeting) is about 35."""


@dataclass(frozen=True)
class Reply:
    """One question, what the model said, and whether that counts as correct."""

    qa: corpus.QA
    reply: str

    @property
    def correct(self) -> bool:
        return self.qa.expect in self.reply


@dataclass
class Scores(Accuracy):
    """An :class:`~courselib.models.evaluate.Accuracy` that keeps every reply."""

    replies: list[Reply] = field(default_factory=list)


def greedy_replies(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = MAX_NEW_TOKENS,
    batch_size: int = 256,
) -> list[str]:
    """Greedy continuations of rendered prompts, up to ``</s>``, in batches.

    Prompts are padded on the left so that every row's next token comes at the same place;
    transformers derives the positions from the attention mask, so a padded row decodes as
    it would alone. Large batches are the fast way on a CPU: the 165 held-out course
    questions took 7 s as one batch and 13 s in batches of 64 (course-chat, 2 threads).
    """
    torch = require("torch", extra="models")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eos_id = tokenizer.eos_token_id
    replies: list[str] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(prompts), batch_size):
            encoded = [tokenizer(p).input_ids for p in prompts[start : start + batch_size]]
            width = max(len(ids) for ids in encoded)
            ids = torch.tensor([[pad_id] * (width - len(e)) + e for e in encoded])
            mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded])
            with torch.inference_mode():
                out = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    use_cache=True,  # load_for_training switches the cache off for training
                    pad_token_id=pad_id,
                    eos_token_id=eos_id,
                )
            for row in out[:, width:].tolist():
                if eos_id in row:
                    row = row[: row.index(eos_id)]
                replies.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    finally:
        model.train(was_training)
    return replies


def ask(
    model,
    tokenizer,
    questions: Sequence[corpus.QA],
    *,
    system: str = VICUNA_SYSTEM,
    max_new_tokens: int = MAX_NEW_TOKENS,
) -> Scores:
    """Ask each question alone (one user turn under ``system``); the scores by family.

    Example: ``ask(model, tok, corpus.held_out()).by_family["add"]`` -> 1.0
    """
    prompts = [render_vicuna([("user", qa.question)], system=system) for qa in questions]
    said = greedy_replies(model, tokenizer, prompts, max_new_tokens=max_new_tokens)
    replies = [Reply(qa, text) for qa, text in zip(questions, said, strict=True)]
    per_family: dict[str, list[bool]] = defaultdict(list)
    for r in replies:
        per_family[r.qa.family].append(r.correct)
    return Scores(
        correct=sum(r.correct for r in replies),
        total=len(replies),
        by_family={k: sum(v) / len(v) for k, v in per_family.items()},
        failures=[(r.qa.question, r.reply) for r in replies if not r.correct],
        replies=replies,
    )


def course_families_accuracy(model, tokenizer, *, system: str = VICUNA_SYSTEM) -> Scores:
    """What the model still knows of the course: the held-out questions of every family of
    :mod:`courselib.models.corpus` (facts in unseen phrasings, greetings, out-of-scope).

    Compare before and after a fine-tune: a skill learned at the price of the old ones is
    what fine-tuning without care does (catastrophic forgetting).
    """
    return ask(model, tokenizer, corpus.held_out(), system=system)


def side_by_side(base: Scores, tuned: Scores, *, width: int = 28) -> str:
    """A text table: each question, its expected string, the base and the tuned reply.

    Rows follow ``base``'s questions; ``tuned`` must have scored the same ones. A reply is
    cut to ``width`` characters; a correct one is marked with a check mark.
    """
    if [r.qa for r in base.replies] != [r.qa for r in tuned.replies]:
        raise ValueError("base and tuned were scored on different questions")

    def cell(r: Reply) -> str:
        text = ("✓ " if r.correct else "  ") + r.reply.replace("\n", " ")
        return text if len(text) <= width else text[: width - 1] + "…"

    q_width = max(len("question"), *(len(r.qa.question) for r in base.replies))
    e_width = max(len("expected"), *(len(r.qa.expect) for r in base.replies))
    lines = [f"{'question':<{q_width}}  {'expected':<{e_width}}  {'base':<{width}}  tuned"]
    for b, t in zip(base.replies, tuned.replies, strict=True):
        lines.append(
            f"{b.qa.question:<{q_width}}  {b.qa.expect:<{e_width}}  {cell(b):<{width}}  {cell(t)}"
        )
    lines.append(
        f"{'accuracy':<{q_width}}  {'':<{e_width}}  {base.rate:<{width}.0%}  {tuned.rate:.0%}"
    )
    return "\n".join(lines)
