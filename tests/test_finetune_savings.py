"""What LoRA, QLoRA and the memory tips save (Lab 04): each setting measured in a fresh process
on a small random LLaMA, beside its estimate, in a table against its group's baseline."""

from __future__ import annotations

import pytest

from courselib.errors import CourseError
from courselib.measure.savings import Saving, compare_savings, savings_table


def test_the_table_sets_each_row_against_its_baseline():
    rows = [
        Saving("method", "full", 400_000_000, 380_000_000, 2.0, 100, "full"),
        Saving("method", "lora", 100_000_000, 110_000_000, 1.0, 10, "full"),
        Saving("tip", "lora, batch 4", 300_000_000, 300_000_000, 4.0, 10, "lora, batch 4"),
        Saving("tip", "gradient checkpointing", 150_000_000, 140_000_000, 5.0, 10, "lora, batch 4"),
    ]
    table = savings_table(rows)
    assert list(table["x baseline peak"]) == [1.0, 0.25, 1.0, 0.5]
    assert list(table["x baseline time"]) == [1.0, 0.5, 1.0, 1.25]
    assert list(table["error %"]) == [-5.0, 10.0, 0.0, -6.7]
    assert list(table["peak"]) == [400.0, 100.0, 300.0, 150.0]


def test_settings_that_cannot_be_measured_are_refused_before_any_measurement(tmp_path):
    with pytest.raises(CourseError, match="not a multiple of grad_accum"):
        compare_savings(tmp_path, tip_batch=6, grad_accum=4)
    with pytest.raises(CourseError, match="Unknown tip 'bigger-gpu'"):
        compare_savings(tmp_path, tips=["bigger-gpu"])


@pytest.mark.slow
def test_methods_and_tips_measured_beside_their_estimates(training_llama):
    pytest.importorskip("peft")
    # 58M parameters (memory_tiny.TRAINING): the model, not fixed costs, sets the peaks
    rows = compare_savings(
        training_llama, batch=2, seq_len=128, tip_batch=4, grad_accum=2, threads=1
    )
    table = savings_table(rows).set_index("setting")
    assert list(table.index) == [
        "full",
        "lora",
        "qlora",
        "lora, batch 4",
        "batch 2 x 2 accumulated",
        "bf16 autocast",
        "bf16 weights + autocast",
        "gradient checkpointing",
    ]
    peak = table["x baseline peak"]
    assert peak["qlora"] < peak["lora"] < 0.5  # what the methods are for
    for tip in ("batch 2 x 2 accumulated", "bf16 weights + autocast", "gradient checkpointing"):
        assert peak[tip] < 0.9, table.to_string()
    # r=8 on q_proj (768 -> 768) and v_proj (768 -> 4 KV heads x 64) in 8 layers
    lora_params = 8 * 8 * ((768 + 768) + (768 + 256))
    assert table["trainable"]["lora"] == table["trainable"]["qlora"] == lora_params
    assert (table["s/step"] > 0).all()
    # full and LoRA within 10% of the estimator, as compare_training's rows
    assert table["error %"][["full", "lora"]].abs().max() < 10, table.to_string()
