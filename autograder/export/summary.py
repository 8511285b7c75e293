"""The class summary: score distribution per lab and per test cell, what was not fully graded.

Example output::

    lab03_memory: 15 submissions, mean 5.1 / 8, median 6, min 0, max 8
      score   0 |###        3
      ...
      test cell               points   mean   full marks
      test-llama-params            3    2.2   11/15
    not fully graded (9):
      lab03_memory  infinite-loop   6/8   cell test-finetune was stopped at the cell time limit (15 s)
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from pathlib import Path
from typing import Any


def _lab_rows(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    labs: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        labs.setdefault(row["assignment"], []).append(row)
    return labs


def _cells(group: list[dict[str, Any]]) -> dict[str, tuple[list[float], float]]:
    """Test cell -> (its scores, its points), in the order first seen."""
    cells: dict[str, tuple[list[float], float]] = {}
    for row in group:
        for gid, (score, points) in row["cells"].items():
            values, top = cells.get(gid, ([], 0.0))
            if score is not None:
                values.append(float(score))
            cells[gid] = (values, max(top, float(points or 0)))
    return cells


def summary_text(rows: list[dict[str, Any]]) -> str:
    """The summary as printed (see the module docstring)."""
    lines = []
    for lab, group in _lab_rows(rows).items():
        scored = [r for r in group if r["score"] is not None]
        scores = [float(r["score"]) for r in scored]
        top = max((float(r["max_score"] or 0) for r in group), default=0)
        if not scores:
            lines.append(f"{lab}: {len(group)} submissions, none scored")
            continue
        lines.append(
            f"{lab}: {len(group)} submissions, mean {statistics.mean(scores):.1f} / {top:g}, "
            f"median {statistics.median(scores):g}, min {min(scores):g}, max {max(scores):g}"
        )
        counts = Counter(math.floor(s) for s in scores)
        for value in range(int(top) + 1):
            lines.append(
                f"  score {value:>3} |{'#' * counts.get(value, 0):<20} {counts.get(value, 0)}"
            )
        lines.append(f"  {'test cell':<28}{'points':>7}{'mean':>7}   full marks")
        for gid, (values, points) in _cells(group).items():
            full = sum(v >= points for v in values)
            mean = statistics.mean(values) if values else 0.0
            lines.append(f"  {gid:<28}{points:>7g}{mean:>7.1f}   {full}/{len(values)}")
    partial = [r for r in rows if r["reason"] or r["score"] is None]
    lines.append(
        f"not fully graded ({len(partial)}):" if partial else "every submission fully graded"
    )
    for r in partial:
        shown = (
            f"{float(r['score']):g}/{float(r['max_score'] or 0):g}"
            if r["score"] is not None
            else "not scored"
        )
        lines.append(f"  {r['assignment']}  {r['student']:<24} {shown:>9}  {r['reason']}")
    flagged = [r for r in rows if r.get("flag")]
    if flagged:
        lines.append(f"flagged for review ({len(flagged)}; scores unchanged):")
    for r in flagged:
        lines.append(f"  {r['assignment']}  {r['student']:<24} {r['flag']}")
    return "\n".join(lines)


def histogram(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """A PNG: per lab, the distribution of total scores and each test cell's mean fraction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labs = _lab_rows(rows)
    fig, axes = plt.subplots(
        2, max(1, len(labs)), figsize=(5 * max(1, len(labs)), 6), squeeze=False
    )
    for k, (lab, group) in enumerate(labs.items()):
        scores = [float(r["score"]) for r in group if r["score"] is not None]
        top = max((float(r["max_score"] or 0) for r in group), default=1) or 1
        ax = axes[0][k]
        ax.hist(scores, bins=[x - 0.5 for x in range(int(top) + 2)], edgecolor="black")
        ax.set(title=f"{lab}: total score", xlabel=f"score (of {top:g})", ylabel="students")
        cells = _cells(group)
        fractions = [statistics.mean(v) / p if v and p else 0.0 for v, p in cells.values()]
        ax = axes[1][k]
        ax.barh(list(cells), fractions)
        ax.set(xlim=(0, 1), xlabel="mean fraction of the points", title="per test cell")
        ax.invert_yaxis()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
