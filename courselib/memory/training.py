"""Training memory: full fine-tuning, LoRA and QLoRA (Lab 03, Lab 04).

Bytes per parameter (P = all parameters, T = trainable ones)::

    full  fp32   weights 4P  gradients 4P  AdamW m, v 8P                     = 16 B/param
    full  mixed  weights 2P  gradients 2P  fp32 master 4P + m, v 8P          = 16 B/param
    full  bf16   weights 2P  gradients 2P  m, v 8P (the QLoRA paper's count) = 12 B/param
    full  bf16, optimizer_dtype="bf16": m, v 4P                              =  8 B/param
    LoRA         frozen base (4P or 2P) + T x (4 weight + 4 gradient + 8 AdamW)
    QLoRA        base in NF4 + double quant (0.516 B per block weight; embeddings, head and
                 norms in 16/32 bit) + the LoRA part as above

PyTorch's AdamW keeps m and v in the parameters' dtype, so a model cast to bf16 and trained
without fp32 master weights has 16-bit states (``optimizer_dtype="bf16"``): 8 bytes per
parameter for weights, gradients and states, accelerate's "training using Adam" figure for
fp16 (4 x the fp16 model size; docs/facts.md#adam-16bit). 8-bit Adam keeps m and v in 8 bit
(2 B per trainable parameter); paged optimizers have the same size but can spill to CPU RAM
when the GPU is full. The step itself needs a temporary
(sqrt of v): one tensor at a time for ``adamw`` (fused on CUDA, PyTorch's default on CPU),
all trainable parameters at once for ``adamw-foreach`` (PyTorch's default on CUDA: +4 B per
parameter). Activations come from :mod:`courselib.memory.activations`.

The peak is not the sum of everything: the backward pass frees each layer's activations as it
writes that layer's gradients, and the optimizer runs after the last activation is gone, so
gradients and activations overlap (``Estimate.overlap``)::

    peak = weights + optimizer + max(gradients, activations) + working set

The working set (``overhead``) is the larger of the optimizer step's temporary and what the
backward pass of one layer allocates (gradients of that layer's activations, about one
layer's activations again), plus fixed costs measured on the course models: ~10 MiB for a
loaded transformers model beyond its tensors, ~8 MiB for autograd's first step.

Example (the QLoRA paper: LLaMA-65B in 16-bit needs more than 780 GB)::

    >>> round(estimate_training("llama-65b", method="full", precision="bf16").total / 1e9)
    784
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypedDict

from courselib.errors import CourseError
from courselib.memory.activations import activation_bytes, layer_activation_bytes
from courselib.memory.configs import shape_of
from courselib.memory.estimate import TRANSFORMERS_RUNTIME_BYTES, Estimate, config_of
from courselib.memory.params import ParamCount, count_params
from courselib.memory.weights import weight_bytes

Method = Literal["full", "lora", "qlora"]
TrainPrecision = Literal["fp32", "mixed", "bf16"]
Optimizer = Literal[
    "adamw", "adamw-foreach", "adamw-8bit", "paged-adamw-32bit", "paged-adamw-8bit", "sgd"
]

OPTIMIZER_STATE_BYTES = {
    "adamw": 8,
    "adamw-foreach": 8,
    "paged-adamw-32bit": 8,
    "adamw-8bit": 2,
    "paged-adamw-8bit": 2,
    "sgd": 0,
}
"""Optimizer state per trainable parameter: AdamW's m and v in fp32 (8 B) or 8 bit (2 B)."""

StateDtype = Literal["fp32", "bf16", "fp16"]

AUTOGRAD_RUNTIME_BYTES = 8 * 2**20
"""What a first training step costs beyond the tensors counted here: autograd's graph and
engine, thread pools, kernel workspaces (measured 6-11 MiB on course-chat, whatever the
method)."""

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""LoRA on every block matrix (the QLoRA paper's choice); alpaca-lora adapts q_proj, v_proj."""


def lora_params(count: ParamCount, *, rank: int, targets: Iterable[str]) -> int:
    """Trainable LoRA parameters: r x (in + out) for every adapted matrix in every layer.

    Example: LLaMA-7B, r=8, q_proj and v_proj: 2 x 32 x 8 x (4096 + 4096) = 4194304.
    """
    total = 0
    for name in targets:
        try:
            lin = count.linear(name)
        except KeyError:
            names = ", ".join(lin.name for lin in count.linears)
            raise CourseError(
                f"LoRA target {name!r} is not a matrix of this model.",
                hint=f"Choose among: {names} (or 'all-linear').",
            ) from None
        total += rank * (lin.in_features + lin.out_features) * lin.count
    return total


def _targets(lora_targets: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(lora_targets, str):
        return ALL_LINEAR if lora_targets == "all-linear" else tuple(lora_targets.split(","))
    return tuple(lora_targets)


class _ActivationArgs(TypedDict):
    """What activation_bytes and layer_activation_bytes are both given."""

    method: str
    tokens: int
    elem_bytes: int
    lora_targets: Iterable[str]
    lora_rank: int
    lora_dropout: float


def estimate_training(
    model: str | os.PathLike[str] | Mapping[str, Any],
    *,
    method: Method = "full",
    precision: TrainPrecision = "mixed",
    optimizer: Optimizer = "adamw",
    lora_rank: int = 8,
    lora_targets: Iterable[str] | str = ("q_proj", "v_proj"),
    lora_dropout: float = 0.05,
    quant: str = "nf4-dq",
    batch: int = 1,
    seq_len: int = 512,
    gradient_checkpointing: bool = False,
    optimizer_dtype: StateDtype = "fp32",
) -> Estimate:
    """Peak memory of one training step (see the module docstring for every term).

    ``precision``: fp32, mixed (16-bit compute, fp32 master weights) or bf16 (pure 16-bit;
    for QLoRA the qlora.py recipe: bf16 adapters, embeddings and head). ``optimizer``: see
    the module docstring (``adamw-foreach`` is PyTorch's default on CUDA).
    ``optimizer_dtype``: AdamW's m and v in fp32, or in 16 bit (bf16/fp16) as PyTorch keeps
    them for a model cast to 16 bit: ``precision="bf16", optimizer_dtype="bf16"`` is
    8 B/param (weights 2 + gradients 2 + m, v 4).

    Example: ``estimate_training("llama-7b", method="lora", lora_rank=8).trainable_params``
    is 4194304.
    """
    name, config = config_of(model)
    shape, count = shape_of(config), count_params(config)
    targets = _targets(lora_targets)
    sixteen = precision in ("mixed", "bf16")
    elem = 2 if sixteen else 4
    state = OPTIMIZER_STATE_BYTES[optimizer]
    if optimizer_dtype != "fp32":
        if state != 8:
            raise CourseError(
                f"optimizer_dtype={optimizer_dtype!r} is for AdamW's 32-bit states; "
                f"{optimizer} keeps its own.",
                hint="Use optimizer='adamw' (or 'adamw-foreach') with a 16-bit state dtype.",
            )
        state = 4  # m and v, 2 bytes each
    notes: list[str] = []
    if method == "full":
        trainable = count.total
        weights = trainable * elem
        grads = trainable * elem
        master = 4 * trainable if precision == "mixed" else 0
        optim = master + state * trainable
        largest = max(
            count.embedding,
            count.lm_head,
            *(lin.in_features * lin.out_features for lin in count.linears),
        )
    else:
        trainable = lora_params(count, rank=lora_rank, targets=targets)
        adapter = 2 if precision == "bf16" else 4  # peft keeps adapters in fp32 unless cast
        if method == "qlora":
            rest = (
                "bf16" if precision == "bf16" else "fp32"
            )  # prepare_model_for_kbit_training: fp32
            base = weight_bytes(config, precision=quant, other_dtype=rest)
        else:
            base = count.total * elem
        weights = base + trainable * adapter
        grads = trainable * adapter
        optim = state * trainable
        largest = max(lora_rank * max(lin.in_features, lin.out_features) for lin in count.linears)
        notes.append(
            f"{trainable:,} trainable LoRA parameters (r={lora_rank}, {', '.join(targets)})."
        )
    act_args: _ActivationArgs = {
        "method": "full" if method == "full" else "lora",
        "tokens": batch * seq_len,
        "elem_bytes": elem,
        "lora_targets": targets,
        "lora_rank": lora_rank,
        "lora_dropout": lora_dropout,
    }
    acts = activation_bytes(shape, gradient_checkpointing=gradient_checkpointing, **act_args)
    # AdamW's step temporary (sqrt of v): the largest tensor, or all of them with foreach
    temp_elem = 4 if optimizer_dtype == "fp32" else 2
    step_temp = temp_elem * (trainable if optimizer == "adamw-foreach" else largest) if state else 0
    # backward of one layer: gradients of its activations, about their size again
    backward_temp = layer_activation_bytes(shape, **act_args)
    if optimizer.startswith("paged"):
        notes.append("Paged optimizer states can move to CPU RAM when the GPU runs out.")
    return Estimate(
        model=name,
        method=f"{method} ({precision}, {optimizer}"
        + (f", {optimizer_dtype} states)" if optimizer_dtype != "fp32" else ")"),
        precision=quant if method == "qlora" else precision,
        weights=int(weights),
        gradients=int(grads),
        optimizer=int(optim),
        activations=int(acts),
        overhead=int(
            max(step_temp, backward_temp) + TRANSFORMERS_RUNTIME_BYTES + AUTOGRAD_RUNTIME_BYTES
        ),
        overlap=int(min(grads, acts)),
        params=count.total,
        trainable_params=trainable,
        notes=tuple(notes),
    )
