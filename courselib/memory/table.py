"""Memory tables as pandas DataFrames (Lab 03): breakdowns, the 7B-65B table, the 4-bit myth.

Sizes are in decimal GB (1e9 bytes) unless ``unit="GiB"``: model cards and the classic
tables use GB, while llama.cpp and ``nvidia-smi`` print MiB/GiB.

Example::

    >>> llama_table().loc["llama-13b", "fp32"]       # WizardVicuna-13B's fp32 checkpoint
    52.06
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from courselib.errors import require
from courselib.memory.configs import load_config
from courselib.memory.estimate import COMPONENTS, Estimate
from courselib.memory.params import count_params
from courselib.memory.weights import weight_bytes

Unit = Literal["GB", "GiB", "MB", "MiB"]
UNITS = {"GB": 1e9, "GiB": 2**30, "MB": 1e6, "MiB": 2**20}

LLAMA_1 = ("llama-7b", "llama-13b", "llama-30b", "llama-65b")
CLASSIC_4BIT_GB = {"llama-7b": 4, "llama-13b": 8, "llama-30b": 16, "llama-65b": 32}
"""The rounded "4-bit needs" table handed to students (GB)."""


def breakdown(estimate: Estimate, *, unit: Unit = "GB", digits: int = 3):
    """One estimate as a two-column table (component, size), total last."""
    pd = require("pandas", extra="lab")
    parts = [(c, getattr(estimate, c)) for c in COMPONENTS if getattr(estimate, c)]
    if estimate.overlap:
        parts.append(("overlap (freed activations reused)", -estimate.overlap))
    parts.append(("total (peak)", estimate.total))
    return pd.DataFrame(
        {
            "component": [p[0] for p in parts],
            unit: [round(p[1] / UNITS[unit], digits) for p in parts],
        }
    )


def llama_table(
    models: Sequence[str] = LLAMA_1,
    *,
    precisions: Sequence[str] = ("fp32", "fp16", "int8", "nf4-dq", "Q8_0", "Q4_K_M", "Q4_0"),
    unit: Unit = "GB",
    digits: int = 2,
):
    """Parameters and weight sizes of ``models`` at each precision (the 7B-65B table)."""
    pd = require("pandas", extra="lab")
    rows = {}
    for name in models:
        config = load_config(name)
        row = {"params (1e9)": round(count_params(config).total / 1e9, 2)}
        for p in precisions:
            row[p] = round(
                weight_bytes(config, precision=p, other_dtype="fp16") / UNITS[unit], digits
            )
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def classic_4bit_table():
    """The rounded 4-bit table against the exact numbers: which entries are rounded, how much.

    ``0.5 B/param`` is the idealised 4 bits; NF4 + double quant and Q4_0 / Q4_K_M are what
    real 4-bit files take (block scales, and layers llama.cpp keeps at 6 bits).
    """
    pd = require("pandas", extra="lab")
    rows = {}
    for name, table_gb in CLASSIC_4BIT_GB.items():
        config = load_config(name)
        ideal = count_params(config).total * 0.5 / 1e9
        q4_0 = weight_bytes(config, precision="Q4_0") / 1e9
        rows[name] = {
            "table (GB)": table_gb,
            "4 bits exactly (GB)": round(ideal, 2),
            "rounded by (GB)": round(table_gb - ideal, 2),
            "rounded by (%)": round(100 * (table_gb / ideal - 1), 1),
            "nf4-dq (GB)": round(
                weight_bytes(config, precision="nf4-dq", other_dtype="fp16") / 1e9, 2
            ),
            "Q4_0 file (GB)": round(q4_0, 2),
            "Q4_K_M file (GB)": round(weight_bytes(config, precision="Q4_K_M") / 1e9, 2),
            "table vs Q4_0 (%)": round(100 * (table_gb / q4_0 - 1), 1),
        }
    return pd.DataFrame.from_dict(rows, orient="index")
