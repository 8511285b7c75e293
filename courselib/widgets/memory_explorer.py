"""MemoryExplorer: pick a model, precision, method, context and batch; see the memory (Lab 03).

The breakdown table (pandas) shows the chosen setting; the stacked chart shows the same model
and method at every precision of that method, so the effect of quantization is one glance.
A budget line (e.g. your GPU's 24 GB) shows what fits.

Example::

    >>> from courselib.widgets.memory_explorer import MemoryExplorer
    >>> ex = MemoryExplorer(model="llama-13b", method="inference", precision="fp16")
    >>> ex                                  # in a notebook: the explorer
    >>> ex.method.value = "QLoRA"           # also from code; the outputs follow
    >>> round(ex.estimate.total / 1e9, 1)     # r=64 on every matrix, 2048 tokens
    12.0
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, cast

from courselib.errors import require
from courselib.memory.configs import shipped_models
from courselib.memory.estimate import Estimate, estimate_inference
from courselib.memory.table import breakdown
from courselib.memory.training import ALL_LINEAR, TrainPrecision, estimate_training

if TYPE_CHECKING:
    from matplotlib.figure import Figure

widgets = require("ipywidgets", extra="lab")

PRECISIONS = {
    "inference": ("fp32", "fp16", "int8", "nf4-dq", "Q8_0", "Q5_K_M", "Q4_K_M", "Q4_0"),
    "full fine-tune": ("fp32", "mixed", "bf16"),
    "LoRA": ("fp32", "mixed", "bf16"),
    "QLoRA": ("nf4", "nf4-dq", "fp4-dq"),
}
"""Precision choices per method: weights for inference, training precision for full/LoRA,
the 4-bit base format for QLoRA."""
CONTEXTS = (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
CHART_SIZE = (8.0, 3.6)
"""Inches of the chart; shown at CHART_DPI CSS pixels per inch (640 x 288)."""
CHART_DPI = 80


def estimate_for(model: str, *, method: str, precision: str, context: int, batch: int) -> Estimate:
    """The estimate the explorer shows (training: AdamW; LoRA r=8 on q,v; QLoRA r=64 on all
    linear layers with gradient checkpointing and a paged optimizer, as in the QLoRA paper)."""
    if method == "inference":
        return estimate_inference(model, precision=precision, n_ctx=context, batch=batch)
    # the explorer offers only PRECISIONS[method]: training precisions for full and LoRA
    train_precision = cast(TrainPrecision, precision)
    if method == "full fine-tune":
        return estimate_training(
            model, method="full", precision=train_precision, batch=batch, seq_len=context
        )
    if method == "LoRA":
        return estimate_training(
            model, method="lora", precision=train_precision, batch=batch, seq_len=context
        )
    return estimate_training(
        model,
        method="qlora",
        precision="bf16",
        quant=precision,
        optimizer="paged-adamw-32bit",
        lora_rank=64,
        lora_targets=ALL_LINEAR,
        gradient_checkpointing=True,
        batch=batch,
        seq_len=context,
    )


class MemoryExplorer:
    """Dropdowns and sliders -> breakdown table + stacked chart (see the module docstring)."""

    def __init__(
        self,
        *,
        model: str = "llama-7b",
        method: str = "inference",
        precision: str | None = None,
        context: int = 2048,
        batch: int = 1,
        budget_gb: float = 24.0,
    ) -> None:
        style = {"description_width": "80px"}
        self.model = widgets.Dropdown(
            options=shipped_models(), value=model, description="model", style=style
        )
        self.method = widgets.Dropdown(
            options=list(PRECISIONS), value=method, description="method", style=style
        )
        options = PRECISIONS[method]
        self.precision = widgets.Dropdown(
            options=options, value=precision or options[1], description="precision", style=style
        )
        # A dropdown, not a slider: a slider's readout accepts typed numbers it then ignores
        self.context = widgets.Dropdown(
            options=CONTEXTS, value=context, description="context", style=style
        )
        self.batch = widgets.IntSlider(value=batch, min=1, max=64, description="batch", style=style)
        self.budget = widgets.BoundedFloatText(
            value=budget_gb, min=0, max=10_000, step=8, description="budget GB", style=style
        )
        self.table = widgets.HTML()
        # Drawn at twice the pixels it is shown with: sharp on any screen, and one fixed size
        # whatever the method (its bar count changes), so the page does not jump.
        self.chart = widgets.Image(
            format="png", layout=widgets.Layout(width=f"{CHART_SIZE[0] * CHART_DPI}px")
        )
        self.status = widgets.HTML()
        self.estimate: Estimate | None = None
        self.figure: Figure | None = None
        self._switching = False
        for w in (self.model, self.precision, self.context, self.batch, self.budget):
            w.observe(self._changed, names="value")
        self.method.observe(self._method_changed, names="value")
        controls = widgets.VBox(
            [self.model, self.method, self.precision, self.context, self.batch, self.budget]
        )
        self.widget = widgets.VBox(
            [widgets.HBox([controls, widgets.VBox([self.table, self.status])]), self.chart]
        )
        self.update()

    def _method_changed(self, change) -> None:
        options = PRECISIONS[change["new"]]
        self._switching = True  # new options change precision.value: redraw once, below
        try:
            self.precision.options = options
            self.precision.value = options[1]
        finally:
            self._switching = False
        self.update()

    def _changed(self, change) -> None:
        if not self._switching:
            self.update()

    def update(self) -> None:
        """Recompute the estimate and redraw the table and the chart."""
        plt = require("matplotlib.pyplot", package="matplotlib", extra="lab")
        from courselib.memory.plot import plot_estimates

        args = {
            "method": self.method.value,
            "context": self.context.value,
            "batch": self.batch.value,
        }
        self.estimate = estimate_for(self.model.value, precision=self.precision.value, **args)
        self.table.value = breakdown(self.estimate).to_html(index=False)
        budget = self.budget.value * 1e9
        fits = not budget or self.estimate.total <= budget
        self.status.value = f"<b>{self.estimate.total / 1e9:.2f} GB</b> " + (
            ""
            if not budget
            else "fits"
            if fits
            else f"does <b>not</b> fit in {self.budget.value:g} GB"
        )
        estimates = [
            estimate_for(self.model.value, precision=p, **args)
            for p in PRECISIONS[self.method.value]
        ]
        fig, ax = plt.subplots(figsize=CHART_SIZE)
        self.figure = plot_estimates(
            estimates,
            ax=ax,
            labels=list(PRECISIONS[self.method.value]),
            title=f"{self.model.value}: {self.method.value}, context {self.context.value}, batch {self.batch.value}",
            limit_bytes=int(budget) or None,
        )
        png = io.BytesIO()
        self.figure.savefig(png, format="png", dpi=2 * CHART_DPI)
        plt.close(self.figure)  # the PNG is shown; keep no open figures in the kernel
        self.chart.value = png.getvalue()

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
