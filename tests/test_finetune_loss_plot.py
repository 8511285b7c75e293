"""Lab 04's live loss chart: fed by finetune's on_log, drawn at most every min_interval_s, and
the last points drawn by the event loop once the training cell is done."""

from __future__ import annotations

import asyncio

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from finetune_facts import DIALOGUES, THREADS  # noqa: E402

from courselib.widgets.loss_plot import LossPlot  # noqa: E402


def test_points_are_drawn_with_the_latest_loss():
    plot = LossPlot(title="LoRA", min_interval_s=0)
    empty = plot.chart.value
    assert bytes(empty[:4]) == b"\x89PNG" and "waiting" in plot.status.value
    plot.update(1, 2.5)
    plot.update(2, 1.25)
    assert (plot.steps, plot.losses) == ([1, 2], [2.5, 1.25])
    assert list(plot.line.get_xdata()) == [1, 2] and list(plot.line.get_ydata()) == [2.5, 1.25]
    assert "step <b>2</b>: loss <b>1.2500</b>" in plot.status.value
    assert bytes(plot.chart.value) != bytes(empty)
    plot.clear()
    assert plot.steps == [] and "waiting" in plot.status.value


def test_drawing_waits_for_min_interval_then_draw_catches_up():
    plot = LossPlot(min_interval_s=60)  # the empty chart was drawn just now
    chart = plot.chart.value
    plot.update(1, 2.0)  # too soon: not drawn, and no event loop here to draw it later
    assert plot.chart.value == chart and "waiting" in plot.status.value
    plot.draw()
    assert "step <b>1</b>" in plot.status.value and plot.chart.value != chart


def test_the_event_loop_draws_the_last_points_after_the_cell():
    async def cell_then_idle_kernel(plot):
        for step in range(1, 5):  # a training cell: the loop waits, updates come quickly
            plot.update(step, 1 / step)
        assert "waiting" in plot.status.value
        await asyncio.sleep(1.5)  # the cell is over; the kernel's loop runs again

    plot = LossPlot(min_interval_s=1.0)
    asyncio.run(cell_then_idle_kernel(plot))
    assert "step <b>4</b>" in plot.status.value
    assert list(plot.line.get_xdata()) == [1, 2, 3, 4]


def test_finetune_feeds_the_plot(course_hf):
    pytest.importorskip("peft")
    from courselib.finetune.data import encode, load_tokenizer
    from courselib.finetune.methods import load_for_training
    from courselib.finetune.train import finetune

    chat = course_hf("course-chat")
    tokenizer = load_tokenizer(chat)
    plot = LossPlot()
    model = load_for_training(chat, method="lora")
    result = finetune(
        model,
        tokenizer,
        encode(tokenizer, DIALOGUES),
        steps=3,
        threads=THREADS,
        progress=False,
        on_log=plot.update,
    )
    plot.draw()
    assert list(zip(plot.steps, plot.losses, strict=True)) == result.losses
    assert "step <b>3</b>" in plot.status.value
