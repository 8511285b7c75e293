"""Activation memory of a training step: what autograd keeps from the forward for the backward.

Counted tensor by tensor for a LLaMA block in transformers (SDPA attention, which keeps
q, k, v, the output and one log-sum-exp per head instead of the full score matrix), per token
and per layer, in elements (h hidden, q = heads x head_dim, k = kv_heads x head_dim, f ffn):

- full fine-tune: ``6h + 2q + 2k + 4f + heads + 2``: the layer input, two norm outputs and
  their normalised inputs (norm weights train), q/k after RoPE, v, the attention output, the
  MLP's gate, up, SiLU(gate) and product, one 1/rms per norm.
- LoRA / QLoRA (frozen base): ``2h + 2q + 2k + 3f + heads + 2`` plus, per adapted matrix, its
  input twice with dropout (the dropout mask and the dropped input, both kept) or once per
  distinct input without, and its rank-r intermediate. Frozen matrices need no saved input.
- After the last layer: the final norm and the loss's log-softmax (``vocab``).
- LoRA's first layer reads the frozen embedding: its input and q/k/v dropout masks are not kept.
- Gradient checkpointing keeps only each layer's input (``h``) and recomputes one layer at a
  time in the backward pass.

Checked against the tensors autograd really saves (``torch.autograd.graph.saved_tensors_hooks``)
on small LLaMAs with and without grouped-query attention: within 1% (full fine-tuning, LoRA
with and without dropout, LoRA on every matrix; tests/test_memory_training.py).

Example (LLaMA-7B, full fine-tune, 1 x 512 tokens, 16-bit)::

    >>> activation_bytes(shape_of(load_config("llama-7b")), method="full", tokens=512,
    ...                  elem_bytes=2) / 2**30
    2.64
"""

from __future__ import annotations

from collections.abc import Iterable

from courselib.memory.configs import Shape

# adapted matrices that read the same input tensor (saved once when there is no dropout)
_SHARED_INPUTS = {
    "q_proj": "attn_in",
    "k_proj": "attn_in",
    "v_proj": "attn_in",
    "gate_proj": "mlp_in",
    "up_proj": "mlp_in",
    "down_proj": "mlp_mid",
    "o_proj": "attn_out",  # the attention output, which SDPA already keeps
}


def _in_features(shape: Shape, name: str) -> int:
    q_dim = shape.heads * shape.head_dim
    return {"o_proj": q_dim, "down_proj": shape.ffn}.get(name, shape.hidden)


def per_token_layer_elements(
    shape: Shape,
    *,
    method: str,
    lora_targets: Iterable[str] = (),
    lora_rank: int = 8,
    lora_dropout: float = 0.05,
) -> int:
    """Elements one layer keeps per token for the backward pass (see the module docstring)."""
    h, f, heads = shape.hidden, shape.ffn, shape.heads
    q, k = heads * shape.head_dim, shape.kv_dim
    if method == "full":
        return 6 * h + 2 * q + 2 * k + 4 * f + heads + 2
    elements = 2 * h + 2 * q + 2 * k + 3 * f + heads + 2
    inputs: set[str] = set()
    for name in lora_targets:
        elements += lora_rank
        if lora_dropout > 0:
            elements += 2 * _in_features(shape, name)
        elif _SHARED_INPUTS.get(name, name) not in inputs | {"attn_out"}:
            inputs.add(_SHARED_INPUTS.get(name, name))
            elements += _in_features(shape, name)
    return elements


def head_elements(shape: Shape, *, method: str) -> int:
    """Per token after the last layer: the final norm (3h trained, its input h when frozen)
    and the log-softmax of the loss (vocab; the logits themselves are not kept)."""
    return (3 if method == "full" else 1) * shape.hidden + shape.vocab


def first_layer_savings(
    shape: Shape, *, lora_targets: Iterable[str] = (), lora_dropout: float = 0.05
) -> int:
    """Elements per token that LoRA's first layer does NOT keep: its input comes from the frozen
    embedding and needs no gradient, so neither it nor the dropout masks of q/k/v are saved."""
    masks = sum(shape.hidden for t in lora_targets if t in ("q_proj", "k_proj", "v_proj"))
    return shape.hidden + (masks if lora_dropout > 0 else 0)


def layer_activation_bytes(
    shape: Shape,
    *,
    method: str,
    tokens: int,
    elem_bytes: int = 2,
    lora_targets: Iterable[str] = (),
    lora_rank: int = 8,
    lora_dropout: float = 0.05,
) -> int:
    """One layer's activations: also about what its backward allocates for their gradients."""
    layer = per_token_layer_elements(
        shape,
        method=method,
        lora_targets=lora_targets,
        lora_rank=lora_rank,
        lora_dropout=lora_dropout,
    )
    return layer * tokens * elem_bytes


def activation_bytes(
    shape: Shape,
    *,
    method: str,
    tokens: int,
    elem_bytes: int = 2,
    gradient_checkpointing: bool = False,
    lora_targets: Iterable[str] = (),
    lora_rank: int = 8,
    lora_dropout: float = 0.05,
) -> int:
    """Bytes of activations kept at the end of the forward pass (``tokens`` = batch x seq).

    With gradient checkpointing: every layer's input plus one layer recomputed in backward.
    """
    layer = layer_activation_bytes(  # one token, one byte each: elements per token of a layer
        shape,
        method=method,
        tokens=1,
        elem_bytes=1,
        lora_targets=lora_targets,
        lora_rank=lora_rank,
        lora_dropout=lora_dropout,
    )
    if gradient_checkpointing:
        kept = shape.hidden * shape.layers + layer
    else:
        kept = layer * shape.layers
        if method != "full":
            kept -= first_layer_savings(shape, lora_targets=lora_targets, lora_dropout=lora_dropout)
    return (kept + head_elements(shape, method=method)) * tokens * elem_bytes
