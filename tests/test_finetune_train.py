"""Lab 04's training on course-chat: a few steps of LoRA, QLoRA (4-bit base, on the CPU) and full
fine-tuning lower the loss on new facts and change exactly what each method trains; the run
reports its losses step by step and writes nothing else to stderr."""

from __future__ import annotations

import pytest
from finetune_facts import DIALOGUES, THREADS, loss_on

from courselib.errors import CourseError
from courselib.finetune.data import encode, load_tokenizer
from courselib.finetune.methods import load_for_training, trainable_parameters
from courselib.finetune.presets import LoraSettings
from courselib.finetune.train import finetune

pytest.importorskip("peft")

STEPS = 8


@pytest.fixture(scope="module")
def examples(chat):
    return encode(load_tokenizer(chat), DIALOGUES)


def snapshot(model) -> dict:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def run(model, chat, examples, **kwargs):
    options = {"steps": STEPS, "batch_size": 4, "lr": 1e-2, "threads": THREADS, **kwargs}
    return finetune(model, load_tokenizer(chat), examples, **options)


def test_lora_learns_and_changes_only_the_adapters(chat, examples, capfd):
    model = load_for_training(chat, method="lora", seed=0)
    before, loss_before = snapshot(model), loss_on(model, examples)
    logged = []
    capfd.readouterr()
    result = run(model, chat, examples, progress=False, on_log=lambda *point: logged.append(point))
    out, err = capfd.readouterr()
    assert err == "" and out == ""  # no bitsandbytes, peft or Trainer notices, no printed logs
    assert loss_on(model, examples) < 0.8 * loss_before
    after = snapshot(model)
    changed = {n for n in before if not before[n].equal(after[n])}
    assert changed and all(".lora_A." in n or ".lora_B." in n for n in changed)
    assert len(changed) == 2 * 2 * 4  # A and B of q_proj and v_proj in 4 layers: all trained
    assert result.losses == logged and [s for s, _ in logged] == list(range(1, STEPS + 1))
    assert result.steps == STEPS and result.seconds > 0
    assert (result.trainable, result.total) == trainable_parameters(model) == (28672, 3700992)
    assert not model.training


def test_the_same_seed_trains_the_same_adapters(chat, examples):
    a, b = (load_for_training(chat, method="lora", seed=1) for _ in range(2))
    assert (
        run(a, chat, examples, steps=3, progress=False).losses
        == run(b, chat, examples, steps=3, progress=False).losses
    )


def test_the_progress_bar_shows_the_loss_and_nothing_else_is_written(chat, examples, capfd):
    model = load_for_training(chat, method="lora")
    capfd.readouterr()
    run(model, chat, examples, steps=3, grad_accum=2, batch_size=2)
    out, err = capfd.readouterr()
    assert out == ""
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert lines and all("it/s" in line or "s/it" in line or "3/3" in line for line in lines), err
    assert "loss=" in err


def test_in_a_notebook_too_the_bar_is_the_only_progress(chat, examples, monkeypatch):
    import transformers

    shown = []

    class NotebookTable(transformers.TrainerCallback):  # Trainer's choice inside Jupyter
        def on_log(self, *args, **kwargs):
            shown.append(kwargs.get("logs"))

    monkeypatch.setattr(transformers.trainer, "DEFAULT_PROGRESS_CALLBACK", NotebookTable)
    run(load_for_training(chat, method="lora"), chat, examples, steps=2)
    assert shown == []


def test_full_finetuning_trains_every_weight(chat, examples):
    model = load_for_training(chat, method="full")
    before, loss_before = snapshot(model), loss_on(model, examples)
    result = run(model, chat, examples, steps=3, lr=1e-3, progress=False)
    assert loss_on(model, examples) < loss_before
    after = snapshot(model)
    # (of the embeddings and the head, the rows of the tokens in the batches)
    assert all(not before[n].equal(after[n]) for n in before)
    assert result.trainable == result.total == 3672320


def test_gradient_checkpointing_and_bf16_weights_train_too(chat, examples, capfd):
    capfd.readouterr()
    model = load_for_training(chat, method="lora", gradient_checkpointing=True, precision="bf16")
    base = model.get_base_model()
    assert base.model.gradient_checkpointing
    assert str(base.model.layers[0].self_attn.q_proj.base_layer.weight.dtype) == "torch.bfloat16"
    assert (
        str(base.model.layers[0].self_attn.q_proj.lora_A["default"].weight.dtype) == "torch.float32"
    )
    loss_before = loss_on(model, examples)
    run(model, chat, examples, progress=False, mixed_precision=True)
    assert loss_on(model, examples) < loss_before
    assert capfd.readouterr().err == ""


def four_bit_or_skip(chat):
    try:
        return load_for_training(chat, method="qlora", lora=LoraSettings(r=8, alpha=16))
    except CourseError as exc:
        pytest.skip(f"4-bit weights are not available here: {exc.message}")


def test_qlora_trains_adapters_on_a_4bit_base_on_this_cpu(chat, examples, capfd):
    import bitsandbytes as bnb

    capfd.readouterr()
    model = four_bit_or_skip(chat)
    q_proj = model.get_base_model().model.layers[0].self_attn.q_proj
    assert isinstance(q_proj.base_layer, bnb.nn.Linear4bit)
    assert q_proj.base_layer.weight.quant_state.quant_type == "nf4"
    packed = q_proj.base_layer.weight.detach().clone()  # (n/2, 1) uint8: two weights a byte
    loss_before = loss_on(model, examples)
    result = run(model, chat, examples, progress=False)
    assert capfd.readouterr().err == ""  # no kernel-hub warning from bitsandbytes
    assert loss_on(model, examples) < 0.8 * loss_before
    assert q_proj.base_layer.weight.equal(packed)
    assert (result.trainable, result.total) == (28672, 3700992)  # 4-bit weights unpacked


def test_without_4bit_the_error_says_lora_works(chat, monkeypatch):
    import importlib.metadata

    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    with pytest.raises(CourseError, match="needs a CUDA GPU or an x86-64 CPU with AVX2") as err:
        load_for_training(chat, method="qlora")
    assert "method='lora' works" in err.value.hint
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.45.5")
    with pytest.raises(CourseError, match="bitsandbytes 0.45.5 runs 4-bit NF4 on CUDA GPUs only"):
        load_for_training(chat, method="qlora")


def test_unknown_method_no_checkpoint_and_no_examples(chat):
    with pytest.raises(CourseError, match="Unknown method 'dora'"):
        load_for_training(chat, method="dora")
    # a name is not looked up on the Hub: course models are folders (hf_dir)
    with pytest.raises(CourseError, match="not a Hugging Face checkpoint folder"):
        load_for_training("course-chat", method="lora")
    with pytest.raises(CourseError, match="No training examples"):
        finetune(None, None, [])


def test_a_4bit_model_repacked_for_cpu_inference_is_refused(chat, examples):
    import bitsandbytes.functional

    if not bitsandbytes.functional.has_avx512bf16():
        pytest.skip("bitsandbytes repacks 4-bit weights for inference on AVX512-BF16 CPUs only")
    model = four_bit_or_skip(chat)
    for module in model.modules():  # as loaded without load_for_training's precaution
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = True
    loss_on(model, examples)  # eval mode, no gradients: the layers repack their weights
    with pytest.raises(CourseError, match="repacked its weights for inference"):
        run(model, chat, examples, progress=False)
