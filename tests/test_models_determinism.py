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


def test_packed_batch_gives_the_padded_batch_loss() -> None:
    """Packing dialogues into shared rows (train.pack_batch) changes nothing but the speed."""
    transformers = pytest.importorskip("transformers")
    from courselib.models.train import IGNORE, pack_batch

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config).eval()
    gen = torch.Generator().manual_seed(1)
    batch = []
    for n in (30, 7, 12, 5, 22, 9, 16, 3):
        ids = [1, *torch.randint(3, 64, (n - 1,), generator=gen).tolist()]
        labels = [IGNORE] * (n // 2) + ids[n // 2 :]  # answers: the second half
        batch.append((ids, labels))

    width = max(len(i) for i, _ in batch)
    padded = model(
        input_ids=torch.tensor([i + [0] * (width - len(i)) for i, _ in batch]),
        attention_mask=torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch]),
        labels=torch.tensor([lab + [IGNORE] * (width - len(lab)) for _, lab in batch]),
    ).loss
    ids, labels, positions = pack_batch(batch)
    assert ids.shape[0] < len(batch) and ids.shape[1] == width
    assert (labels != IGNORE).sum() == sum(sum(x != IGNORE for x in lab) for _, lab in batch)
    packed = model(input_ids=ids, position_ids=positions, labels=labels, use_cache=False).loss
    assert abs(packed.item() - padded.item()) < 1e-5
    # without the position reset, dialogues would see each other: the loss would differ
    leaky = model(input_ids=ids, labels=labels, use_cache=False).loss
    assert abs(leaky.item() - padded.item()) > 1e-3
