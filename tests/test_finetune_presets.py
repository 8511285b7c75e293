"""The recipes match their sources (alpaca-lora's finetune.py, the QLoRA paper and repo;
docs/facts.md#finetune-recipes) and become the peft config they describe."""

from __future__ import annotations

import dataclasses
import doctest

import pytest

from courselib.finetune import presets
from courselib.finetune.presets import PRESETS, LoraSettings
from courselib.memory.training import ALL_LINEAR


def test_alpaca_lora_recipe():
    assert PRESETS["alpaca-lora"] == LoraSettings(
        r=8,
        alpha=16,
        dropout=0.05,
        target_modules=("q_proj", "v_proj"),
        lr=3e-4,
        max_grad_norm=1.0,
        optimizer="adamw_torch",
    )


def test_qlora_recipe_for_models_up_to_13b():
    assert PRESETS["qlora"] == LoraSettings(
        r=64,
        alpha=16,
        dropout=0.1,
        target_modules=(
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ),
        lr=2e-4,
        max_grad_norm=0.3,
        optimizer="paged_adamw_32bit",
    )
    assert PRESETS["qlora"].target_modules == ALL_LINEAR  # the estimator's "all-linear"


def test_settings_are_frozen_and_become_a_peft_config():
    pytest.importorskip("peft")
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["qlora"].r = 8
    config = PRESETS["qlora"].peft_config()
    assert (config.r, config.lora_alpha, config.lora_dropout) == (64, 16, 0.1)
    assert set(config.target_modules) == set(ALL_LINEAR)
    assert (config.bias, config.task_type) == ("none", "CAUSAL_LM")


def test_docstring_examples():
    assert doctest.testmod(presets).failed == 0
