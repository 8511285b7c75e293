"""The course models: what each one is, its shape and how it is built.

- **course-chat** (~3.7M params): trained on CPU in a few minutes on the dialogues of
  :mod:`courselib.models.corpus`; answers simple questions in Vicuna v1.1 format. Labs 01-04.
- **course-bench** (~150M params): random weights, same architecture and pipeline, for memory
  and speed measurements where a toy model's fixed overheads would hide the real behaviour.

Shapes keep every weight row a multiple of 256 so llama.cpp's K-quants (Q4_K_M) apply.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

BUILD_VERSION = 4
"""Bump when a change to the tokenizer, training, conversion or quantization code changes the
files it writes: built models are reused until their inputs (this included) change."""

Quant = Literal["F32", "F16", "Q8_0", "Q4_0", "Q4_K_M"]
QUANTS: tuple[Quant, ...] = ("F32", "F16", "Q8_0", "Q4_0", "Q4_K_M")
"""GGUF files built for every course model, from exact to smallest."""


@dataclass(frozen=True)
class TrainSpec:
    """How course-chat is trained (AdamW, cosine schedule, loss on assistant tokens only).

    After ``steps`` the quality gate (:mod:`courselib.models.gate`) is checked; while it
    fails, training goes on in rounds of ``extra_steps`` (a short cosine restart at
    ``extra_lr_scale`` x ``lr``) up to ``max_steps`` in all, then the build fails.
    """

    steps: int = 900
    max_steps: int = 1800
    extra_steps: int = 150
    extra_lr_scale: float = 0.1
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 30
    weight_decay: float = 0.01
    seed: int = 0


@dataclass(frozen=True)
class ModelSpec:
    """One course model: LLaMA hyper-parameters plus how its weights come to be."""

    name: str
    description: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    context_length: int
    vocab_size: int
    """Target SentencePiece vocabulary (byte fallback included)."""
    weights: Literal["trained", "random"]
    train: TrainSpec = field(default_factory=TrainSpec)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


COURSE_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            name="course-chat",
            description="Tiny chat model trained on the course's Vicuna dialogues (Labs 01-04).",
            hidden_size=256,
            num_layers=4,
            num_heads=4,
            num_kv_heads=2,
            intermediate_size=768,
            context_length=512,
            vocab_size=1024,
            weights="trained",
        ),
        ModelSpec(
            name="course-bench",
            description="Random-weight LLaMA for memory and speed measurements (Lab 03, bench).",
            hidden_size=1024,
            num_layers=12,
            num_heads=16,
            num_kv_heads=16,
            intermediate_size=2816,
            context_length=2048,
            vocab_size=1024,
            weights="random",
        ),
    ]
}
