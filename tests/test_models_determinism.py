"""The course models are built deterministically: same inputs and seeds -> same bytes.

Checked on a few training steps of a shrunken course-chat (seconds, not the minutes of a whole
build); a different seed must give different weights, so the check can fail.
"""

from __future__ import annotations

import dataclasses

import pytest

from courselib.models import COURSE_MODELS, corpus
from courselib.models.tokenizer import save_llama_tokenizer, train_sentencepiece

torch = pytest.importorskip("torch")


def test_tokenizer_training_is_deterministic() -> None:
    lines = corpus.tokenizer_text()
    assert train_sentencepiece(lines, vocab_size=512) == train_sentencepiece(lines, vocab_size=512)


def _few_steps(tokenizer, *, seed: int) -> dict:
    from courselib.models.train import train_chat_model

    base = COURSE_MODELS["course-chat"]
    spec = dataclasses.replace(
        base,
        hidden_size=64,
        intermediate_size=128,
        num_layers=2,
        train=dataclasses.replace(base.train, steps=3, batch_size=4, seed=seed),
        seed=seed,
    )
    model = train_chat_model(spec, tokenizer, corpus.training_dialogues()[:64], threads=2)
    return model.state_dict()


def test_training_is_deterministic_given_the_seed(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    sp_model = train_sentencepiece(corpus.tokenizer_text(), vocab_size=512)
    save_llama_tokenizer(sp_model, tmp_path, context_length=128)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    first, again = _few_steps(tokenizer, seed=0), _few_steps(tokenizer, seed=0)
    assert all(torch.equal(first[k], again[k]) for k in first)
    other = _few_steps(tokenizer, seed=1)
    assert not all(torch.equal(first[k], other[k]) for k in first)
