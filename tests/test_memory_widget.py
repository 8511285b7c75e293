"""MemoryExplorer driven like a student would: set the dropdowns and sliders, read the outputs."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from courselib.memory import estimate_inference  # noqa: E402
from courselib.widgets.memory_explorer import PRECISIONS, MemoryExplorer  # noqa: E402


@pytest.fixture
def explorer():
    return MemoryExplorer(model="llama-13b", method="inference", precision="fp16", context=2048)


def test_initial_view_matches_the_estimator(explorer):
    expected = estimate_inference("llama-13b", precision="fp16", n_ctx=2048)
    assert explorer.estimate == expected
    assert "total (peak)" in explorer.table.value and "kv_cache" in explorer.table.value
    assert f"{expected.total / 1e9:.2f} GB" in explorer.status.value  # about 28 GB
    assert "not</b> fit in 24 GB" in explorer.status.value
    assert bytes(explorer.chart.value[:4]) == b"\x89PNG"
    # one stacked bar per inference precision, each segment a Rectangle
    lefts = sorted({round(float(p.get_x()), 3) for p in explorer.figure.axes[0].patches})
    assert lefts == [round(i - 0.4, 3) for i in range(len(PRECISIONS["inference"]))]


def test_changing_precision_context_and_batch_updates_everything(explorer):
    chart = explorer.chart.value
    explorer.precision.value = "Q4_K_M"
    assert (
        explorer.estimate.precision == "Q4_K_M"
        and explorer.estimate.method == "inference (llama.cpp)"
    )
    assert "fits" in explorer.status.value
    kv_1 = explorer.estimate.kv_cache
    explorer.batch.value = 2
    assert explorer.estimate.kv_cache == 2 * kv_1
    explorer.context.value = 4096
    assert explorer.estimate.kv_cache == 4 * kv_1
    assert bytes(explorer.chart.value) != bytes(chart)


def test_switching_method_switches_precision_choices(explorer):
    explorer.method.value = "QLoRA"
    assert tuple(explorer.precision.options) == PRECISIONS["QLoRA"]
    assert explorer.precision.value == "nf4-dq"
    assert explorer.estimate.method.startswith("qlora") and explorer.estimate.trainable_params > 0
    explorer.method.value = "full fine-tune"
    assert explorer.precision.value == "mixed"
    assert explorer.estimate.optimizer == 12 * explorer.estimate.params  # fp32 master + m + v


def test_qlora_65b_against_a_48_gb_budget():
    ex = MemoryExplorer(model="llama-65b", method="QLoRA", context=512, budget_gb=48)
    assert ex.estimate.total < 48e9
    assert "fits" in ex.status.value and "not" not in ex.status.value
    ex.budget.value = 40
    assert "does <b>not</b> fit in 40 GB" in ex.status.value
