"""After Lab 04's training: the adapter saved and loaded back, merged into its base, exported to
GGUF; at every step the same model (logits within float tolerance), and the GGUF chats in
llama.cpp as the merged checkpoint does in transformers."""

from __future__ import annotations

import numpy as np
import pytest
from finetune_facts import DIALOGUES, THREADS

from courselib.backends import open_backend
from courselib.backends.base import GenerationConfig, Message
from courselib.errors import CourseError
from courselib.finetune import export
from courselib.finetune.data import encode
from courselib.finetune.methods import load_for_training
from courselib.finetune.presets import LoraSettings
from courselib.finetune.train import finetune

pytest.importorskip("peft")

PROMPTS = ["What is the course mascot?", "Who grades Lab 04?", "What is the capital of France?"]
GREEDY = GenerationConfig(temperature=0, max_tokens=12)


@pytest.fixture(scope="module")
def ids(tokenizer):
    """Token ids of a few rendered prompts (BOS first), the training examples' among them."""
    examples = encode(tokenizer, [(None, [("user", p), ("assistant", "x")]) for p in PROMPTS])
    return [e["input_ids"] for e in examples]


def train(chat, tokenizer, method: str):
    model = load_for_training(chat, method=method, lora=LoraSettings(r=8, alpha=16))
    examples = encode(tokenizer, DIALOGUES)
    finetune(
        model, tokenizer, examples, steps=8, batch_size=4, lr=1e-2, threads=THREADS, progress=False
    )
    return model


@pytest.fixture(scope="module")
def lora(chat, tokenizer):
    return train(chat, tokenizer, "lora")


def logits(model, ids) -> list[np.ndarray]:
    """(tokens, vocab) logits of each prompt."""
    import torch

    with torch.no_grad():
        return [model(input_ids=torch.tensor([i])).logits[0].float().numpy() for i in ids]


def max_diff(a, b) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def test_a_saved_adapter_loads_back_as_the_same_model(lora, ids, tmp_path):
    folder = export.save_adapter(lora, tmp_path / "adapter")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert (folder / "adapter_model.safetensors").stat().st_size < 200_000  # 28672 fp32 + header
    assert max_diff(logits(export.load_adapter(folder), ids), logits(lora, ids)) < 1e-5


def test_merging_gives_the_adapted_model_as_plain_weights(lora, chat, ids, tmp_path):
    import transformers

    before = logits(lora, ids)
    merged_dir = export.merge(lora, tmp_path / "merged")
    merged = transformers.AutoModelForCausalLM.from_pretrained(merged_dir)
    assert max_diff(logits(merged, ids), before) < 1e-4
    base = transformers.AutoModelForCausalLM.from_pretrained(chat)
    assert max_diff(logits(base, ids), before) > 0.1  # the adapter did change the model
    assert max_diff(logits(lora, ids), before) == 0  # the trained model is left as it was
    copied = {p.name for p in merged_dir.iterdir()}
    assert {"tokenizer.model", "tokenizer.json", "tokenizer_config.json"} <= copied
    assert not any("lora" in name for name in merged.state_dict())
    # merging again replaces the merged checkpoint; any other folder is refused
    assert export.merge(lora, merged_dir) == merged_dir
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(CourseError, match="is not a checkpoint folder"):
        export.merge(lora, tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_the_gguf_agrees_with_the_merged_checkpoint(lora, ids, tmp_path):
    import llama_cpp

    from courselib.backends.transformers_hf import TransformersBackend

    merged_dir = export.merge(lora, tmp_path / "merged")
    f32 = export.export_gguf(merged_dir, tmp_path / "tuned-F32.gguf", quant="F32", progress=False)
    llm = llama_cpp.Llama(
        model_path=str(f32), n_ctx=128, logits_all=True, verbose=False, type_k=0, type_v=0
    )
    hf = logits(TransformersBackend(merged_dir, threads=THREADS).model, ids)
    for prompt_ids, expected in zip(ids, hf, strict=True):
        llm.reset()
        llm.eval(prompt_ids)
        got = np.array(llm.scores[: len(prompt_ids)])
        assert np.abs(got - expected).max() < 1e-3
        assert (got.argmax(-1) == expected.argmax(-1)).all()  # the same top-1 at every position
    llm.close()
    q4 = export.export_gguf(merged_dir, tmp_path / "tuned-Q4_K_M.gguf", progress=False)
    assert 0 < q4.stat().st_size < f32.stat().st_size / 3
    # the chat window's backends: the same greedy replies from the GGUF and the checkpoint
    with (
        open_backend(str(f32), threads=THREADS) as gguf,
        TransformersBackend(merged_dir, threads=THREADS) as hf_chat,
        open_backend(str(q4), threads=THREADS) as small,
    ):
        for prompt in PROMPTS:
            messages = [Message("user", prompt)]
            assert gguf.complete(messages, config=GREEDY) == hf_chat.complete(
                messages, config=GREEDY
            )
            small.complete(messages, config=GREEDY)  # the 4-bit file loads and answers


def test_a_qlora_adapter_merges_into_the_full_precision_base(chat, tokenizer, ids, tmp_path):
    import transformers

    try:
        qlora = train(chat, tokenizer, "qlora")
    except CourseError as exc:
        pytest.skip(f"4-bit weights are not available here: {exc.message}")
    adapter = export.save_adapter(qlora, tmp_path / "adapter")
    merged = export.merge(adapter, tmp_path / "merged")
    reference = export.load_adapter(adapter)  # the adapter on the fp32 base, unmerged
    assert str(reference.get_base_model().dtype) == "torch.float32"
    model = transformers.AutoModelForCausalLM.from_pretrained(merged)
    assert max_diff(logits(model, ids), logits(reference, ids)) < 1e-4
    # what trained (4-bit base + adapter) differs from it by the base's rounding, far less
    # than training moved the model (measured: 2.0 against 8.7)
    base = transformers.AutoModelForCausalLM.from_pretrained(chat)
    merged_logits = logits(model, ids)
    rounding = max_diff(logits(qlora, ids), merged_logits)
    assert rounding < max_diff(merged_logits, logits(base, ids)) / 2.5
    agree = [
        (a.argmax(-1) == b.argmax(-1)).mean()
        for a, b in zip(logits(qlora, ids), merged_logits, strict=True)
    ]
    assert np.mean(agree) > 0.9  # the same next token at nearly every position


def test_a_fully_finetuned_model_has_no_adapter_to_save(chat):
    with pytest.raises(CourseError, match="no LoRA adapter"):
        export.save_adapter(load_for_training(chat, method="full"), "unused")
    with pytest.raises(CourseError, match="holds no adapter"):
        export.load_adapter(chat)
