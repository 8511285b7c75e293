"""Training estimates: activations against what autograd really saves, and the peak's parts.

Activations are checked in-process with ``torch.autograd.graph.saved_tensors_hooks``: every
tensor saved for the backward pass during one forward of a real transformers LLaMA (with
peft adapters for LoRA), counted once per storage.
"""

from __future__ import annotations

import pytest

from courselib.memory import count_params, load_config, shape_of
from courselib.memory.activations import activation_bytes
from courselib.memory.training import ALL_LINEAR, OPTIMIZER_STATE_BYTES, estimate_training

SMALL = {  # grouped-query attention, rows of different widths
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 3,
    "num_attention_heads": 8,
    "num_key_value_heads": 2,
    "vocab_size": 512,
    "max_position_embeddings": 256,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
}
BATCH, SEQ = 2, 64


def saved_bytes(model) -> int:
    """Bytes of the distinct tensors autograd saves in one forward (parameters excluded)."""
    import torch

    params = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen.setdefault(storage.data_ptr(), storage.nbytes())
        return t

    ids = torch.randint(3, SMALL["vocab_size"], (BATCH, SEQ))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, labels=ids)  # the loss too: its log-softmax is saved
    return sum(seen.values())


def build(method: str, targets=(), dropout: float = 0.05):
    import torch
    import transformers

    torch.manual_seed(0)
    keys = {k: v for k, v in SMALL.items() if k not in ("model_type", "torch_dtype")}
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**keys))
    model.train()
    if method == "lora":
        import peft

        lora = peft.LoraConfig(
            r=8, lora_alpha=16, target_modules=list(targets), lora_dropout=dropout
        )
        model = peft.get_peft_model(model, lora)
    return model


@pytest.mark.parametrize(
    ("method", "targets", "dropout"),
    [
        ("full", (), 0.0),
        ("lora", ("q_proj", "v_proj"), 0.05),  # alpaca-lora
        ("lora", ("q_proj", "v_proj"), 0.0),
        ("lora", ALL_LINEAR, 0.05),  # qlora's choice
    ],
)
def test_activations_match_what_autograd_saves(method, targets, dropout):
    measured = saved_bytes(build(method, targets, dropout))
    estimate = activation_bytes(
        shape_of(SMALL),
        method=method,
        tokens=BATCH * SEQ,
        elem_bytes=4,
        lora_targets=targets,
        lora_rank=8,
        lora_dropout=dropout,
    )
    assert abs(estimate / measured - 1) < 0.01, (estimate, measured)


def test_peak_parts_full_finetune():
    e = estimate_training("llama-7b", method="full", precision="mixed", batch=1, seq_len=512)
    p = count_params(load_config("llama-7b")).total
    assert (e.weights, e.gradients, e.optimizer) == (2 * p, 2 * p, 12 * p)
    # activations (~3 GB) are freed while the 13.5 GB of gradients are written: no extra peak
    assert e.activations < e.gradients and e.overlap == e.activations
    assert e.total == e.weights + e.gradients + e.optimizer + e.overhead
    foreach = estimate_training(
        "llama-7b", method="full", precision="mixed", optimizer="adamw-foreach"
    )
    assert foreach.overhead - e.overhead == pytest.approx(4 * p, rel=0.03)  # sqrt(v), all at once
    eight = estimate_training("llama-7b", method="full", precision="mixed", optimizer="adamw-8bit")
    assert e.optimizer - eight.optimizer == (OPTIMIZER_STATE_BYTES["adamw"] - 2) * p


def test_lora_and_qlora_parts():
    p = count_params(load_config("llama-13b")).total
    lora = estimate_training("llama-13b", method="lora", precision="mixed", lora_rank=8)
    t = lora.trainable_params
    assert t == 2 * 40 * 8 * (5120 + 5120)
    assert lora.weights == 2 * p + 4 * t and lora.gradients == 4 * t and lora.optimizer == 8 * t
    # long sequences: activations now dominate the peak, gradients are tiny
    long = estimate_training("llama-13b", method="lora", precision="mixed", seq_len=4096)
    assert long.activations > 10 * lora.activations / 8 > 0 and long.overlap == long.gradients
    ckpt = estimate_training(
        "llama-13b", method="lora", precision="mixed", seq_len=4096, gradient_checkpointing=True
    )
    assert ckpt.activations < long.activations / 10
    qlora = estimate_training("llama-13b", method="qlora", precision="mixed", lora_rank=8)
    assert qlora.weights < lora.weights / 3  # 4.127-bit base instead of 16-bit
    assert qlora.trainable_params == t


def test_unknown_lora_target_says_which_exist():
    from courselib.errors import CourseError

    with pytest.raises(CourseError, match="'wq' is not a matrix") as err:
        estimate_training("llama-7b", method="lora", lora_targets=("wq",))
    assert "q_proj" in err.value.hint
