"""LossPlot: the training loss, redrawn as each step is logged (Lab 04).

Pass its :meth:`LossPlot.update` as ``finetune(..., on_log=plot.update)``. The Trainer calls it
on the kernel's main thread, inside the running cell; a widget value set there reaches the
browser at once (ipykernel 7 drops updates from other threads: docs/facts.md#widgets). The
chart is a PNG in an ``ipywidgets.Image``, drawn at most every ``min_interval_s`` (a drawing
takes 0.05-0.25 s on 2 cores: a fast run would spend its time drawing). Points that came
within that time are drawn by a callback on the kernel's event loop, which runs as soon as
the training cell is done; without a running loop (a script), :meth:`LossPlot.draw` draws them.

Example::

    >>> from courselib.widgets.loss_plot import LossPlot
    >>> plot = LossPlot(title="LoRA on course-chat")
    >>> plot                                     # in a notebook: the chart
    >>> for step, loss in [(1, 2.5), (2, 1.5)]:
    ...     plot.update(step, loss)
    >>> plot.steps, plot.losses
    ([1, 2], [2.5, 1.5])
"""

from __future__ import annotations

import asyncio
import io
import time

from courselib.errors import require

widgets = require("ipywidgets", extra="lab")

CHART_SIZE = (6.0, 3.0)
"""Inches; shown at CHART_DPI CSS pixels per inch (480 x 240)."""
CHART_DPI = 80


class LossPlot:
    """A live line chart of (step, loss), with the latest loss above it."""

    def __init__(self, *, title: str = "training loss", min_interval_s: float = 0.5) -> None:
        figure_mod = require("matplotlib.figure", package="matplotlib", extra="lab")
        self.title = title
        self.min_interval_s = min_interval_s
        self.steps: list[int] = []
        self.losses: list[float] = []
        # A Figure without pyplot: no global figure state, nothing shown twice in a notebook
        self.figure = figure_mod.Figure(figsize=CHART_SIZE)
        self.axes = self.figure.add_subplot()
        (self.line,) = self.axes.plot([], [], marker=".", linewidth=1)
        self.axes.set_xlabel("step")
        self.axes.set_ylabel("loss")
        self.axes.set_title(title)
        self.axes.grid(alpha=0.3)
        self.figure.tight_layout()
        self.status = widgets.HTML()
        self.chart = widgets.Image(
            format="png", layout=widgets.Layout(width=f"{CHART_SIZE[0] * CHART_DPI}px")
        )
        self.widget = widgets.VBox([self.status, self.chart])
        self._drawn_at = float("-inf")
        self._drawn_points = 0
        self._pending: asyncio.TimerHandle | None = None
        self.draw()

    def update(self, step: int, loss: float) -> None:
        """Add one point; redraw now, or (after a drawing younger than ``min_interval_s``)
        from the event loop once it is free."""
        self.steps.append(step)
        self.losses.append(loss)
        if time.monotonic() - self._drawn_at >= self.min_interval_s:
            self.draw()
        elif self._pending is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._pending = loop.call_later(self.min_interval_s, self._draw_pending)

    def _draw_pending(self) -> None:
        self._pending = None
        if self._drawn_points < len(self.steps):
            self.draw()

    def clear(self) -> None:
        """Forget every point (a new run in the same chart)."""
        self.steps.clear()
        self.losses.clear()
        self.draw()

    def draw(self) -> None:
        """Redraw the chart and the status line with every point so far."""
        self.line.set_data(self.steps, self.losses)
        self.axes.relim()
        self.axes.autoscale_view()
        png = io.BytesIO()
        self.figure.savefig(png, format="png", dpi=2 * CHART_DPI)  # sharp on any screen
        self.chart.value = png.getvalue()
        self.status.value = (
            f"step <b>{self.steps[-1]}</b>: loss <b>{self.losses[-1]:.4f}</b>"
            if self.steps
            else "waiting for the first step"
        )
        self._drawn_at = time.monotonic()
        self._drawn_points = len(self.steps)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
