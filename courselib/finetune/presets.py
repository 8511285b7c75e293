"""LoRA settings and the two published recipes the course follows (Lab 04).

- ``alpaca-lora`` (tloen/alpaca-lora ``finetune.py``, LLaMA-7B on the Alpaca data): rank 8,
  alpha 16, dropout 0.05 on ``q_proj`` and ``v_proj``, learning rate 3e-4, AdamW.
- ``qlora`` (artidoro/qlora, the QLoRA paper's Guanaco runs): rank 64, alpha 16 on every
  linear layer of the blocks, learning rate 2e-4 (models up to 13B; 1e-4 for 33B/65B), max
  gradient norm 0.3, paged AdamW with 32-bit states, base in NF4 with double quantisation.
  Dropout 0.1: the paper's value for models up to 13B (0.05 for 33B and 65B); the repo's
  own 13B script passes 0.05 and ``qlora.py`` defaults to 0.0 (docs/facts.md#finetune-recipes).

Example::

    >>> PRESETS["qlora"].target_modules
    ('q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj')
    >>> PRESETS["alpaca-lora"].scale    # alpha / r multiplies the adapter's output
    2.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from courselib.errors import require
from courselib.memory.training import ALL_LINEAR

Optimizer = Literal["adamw_torch", "paged_adamw_32bit"]


@dataclass(frozen=True)
class LoraSettings:
    """What a LoRA run is configured with (peft's ``LoraConfig`` plus the training recipe)."""

    r: int = 8
    """Rank of each adapter: W + (alpha / r) * B @ A with A (r, in) and B (out, r)."""
    alpha: int = 16
    """Scale numerator: the adapter's output is multiplied by alpha / r."""
    dropout: float = 0.05
    """Dropout on the adapter's input during training."""
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    """Names of the linear layers that get an adapter (in every block)."""
    lr: float = 3e-4
    """Peak learning rate."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this total norm (1.0 is transformers' default)."""
    optimizer: Optimizer = "adamw_torch"
    """transformers' ``optim`` name; paged optimizers need CUDA (``finetune`` uses
    ``adamw_torch`` on a CPU)."""

    @property
    def scale(self) -> float:
        """alpha / r."""
        return self.alpha / self.r

    def peft_config(self):
        """The ``peft.LoraConfig`` for a causal LM (no bias trained)."""
        peft = require("peft", extra="train")
        return peft.LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            bias="none",
            task_type="CAUSAL_LM",
        )


PRESETS: dict[str, LoraSettings] = {
    "alpaca-lora": LoraSettings(
        r=8, alpha=16, dropout=0.05, target_modules=("q_proj", "v_proj"), lr=3e-4
    ),
    "qlora": LoraSettings(
        r=64,
        alpha=16,
        dropout=0.1,
        target_modules=ALL_LINEAR,
        lr=2e-4,
        max_grad_norm=0.3,
        optimizer="paged_adamw_32bit",
    ),
}
"""The published recipes (see the module docstring for their sources)."""
