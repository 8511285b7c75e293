"""Stacked bar chart of memory estimates: weights / KV cache / gradients + optimizer /
activations / overhead (Lab 03).

Each bar's height is the estimate's ``total`` (the predicted peak): the activations segment
shows only what does not overlap with the gradients (autograd frees one while it fills the
other), so a full fine-tune's bar has no activation segment when gradients are larger.

Example::

    >>> fig = plot_estimates([estimate_inference("llama-13b", precision=p) for p in
    ...                       ("fp32", "fp16", "Q4_K_M")])
"""

from __future__ import annotations

from collections.abc import Sequence

from courselib.errors import require
from courselib.memory.estimate import Estimate
from courselib.memory.table import UNITS, Unit

SEGMENTS = (
    ("weights", "#4C72B0"),
    ("KV cache", "#55A868"),
    ("gradients + optimizer", "#C44E52"),
    ("activations", "#DD8452"),
    ("overhead", "#8C8C8C"),
)


def segments(e: Estimate) -> dict[str, int]:
    """Bytes of each stacked segment; they sum to ``e.total``."""
    return {
        "weights": e.weights,
        "KV cache": e.kv_cache,
        "gradients + optimizer": e.gradients + e.optimizer,
        "activations": e.activations - e.overlap,
        "overhead": e.overhead,
    }


def plot_estimates(
    estimates: Sequence[Estimate],
    *,
    labels: Sequence[str] | None = None,
    unit: Unit = "GB",
    title: str | None = None,
    limit_bytes: int | None = None,
    ax=None,
):
    """Draw one stacked bar per estimate; ``limit_bytes`` adds a line (e.g. a 24 GB GPU).

    Returns the matplotlib Figure.
    """
    plt = require("matplotlib.pyplot", package="matplotlib", extra="lab")
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(estimates) + 3.5), 4))
    else:
        fig = ax.figure
    labels = list(
        labels or [f"{e.model}\n{e.precision}\n{e.method.split(' ')[0]}" for e in estimates]
    )
    bottoms = [0.0] * len(estimates)
    for name, color in SEGMENTS:
        heights = [segments(e)[name] / UNITS[unit] for e in estimates]
        if any(heights):
            ax.bar(labels, heights, bottom=bottoms, color=color, label=name)
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    for x, total in enumerate(bottoms):
        ax.annotate(  # on white: readable where a budget line crosses it
            f"{total:.3g}",
            (x, total),
            ha="center",
            va="bottom",
            fontsize=9,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
        )
    if limit_bytes:  # named in the legend: a label on the line would sit on a bar's total
        ax.axhline(
            limit_bytes / UNITS[unit],
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"{limit_bytes / UNITS[unit]:.3g} {unit} available",
        )
    top = max([*bottoms, (limit_bytes or 0) / UNITS[unit]])
    ax.set_ylim(0, 1.12 * top)  # room for the totals above the bars
    ax.set_ylabel(unit)
    ax.set_title(title or "Estimated peak memory", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
