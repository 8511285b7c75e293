"""Exact parameter counts from a model config (Lab 03: "where does 6.74e9 come from?").

Each architecture is counted matrix by matrix from its config.json fields, the way its
transformers class builds it:

- LLaMA layout (llama, mistral, qwen2, qwen3, gemma, mixtral): per layer the attention
  projections q, k, v, o (``head_dim`` may differ from hidden / heads: Gemma-7B 256), the gated
  MLP gate, up, down (Mixtral: ``num_local_experts`` of them, all counted, plus the router), two
  RMSNorms; the token embedding, a final norm and the output head (none if tied: Gemma).
  Qwen2 adds q/k/v biases, Qwen3 q/k norms.
- OPT: learned positions (2 extra rows), biased projections, fc1/fc2, LayerNorms, tied head.
- GPT-2 and GPT-NeoX: fused QKV, biased linears, LayerNorms.

Any other ``model_type`` raises a CourseError: a wrong architecture counted as LLaMA gave
OPT-13B 17.04e9 parameters instead of 12.85e9 (docs/facts.md#architectures).

Example (LLaMA-7B: 4096 hidden, 32 layers, 11008 ffn, 32000 vocab)::

    >>> count_params(load_config("llama-7b")).total
    6738415616
    >>> # per layer 4 x 4096^2 (attention) + 3 x 4096 x 11008 (MLP) + 2 x 4096 (norms),
    >>> # x 32 layers, + 2 x 32000 x 4096 (embedding and head) + 4096 (final norm)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from courselib.errors import CourseError
from courselib.memory.configs import Shape, shape_of

LLAMA_LIKE = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma")
"""model_type values with the LLaMA layout (qwen2 adds q/k/v biases, qwen3 q/k norms,
mixtral several MLPs per layer, gemma a tied head and its own head_dim)."""


@dataclass(frozen=True)
class Linear:
    """One kind of weight matrix inside the decoder blocks, ``count`` of them in the model."""

    name: str
    in_features: int
    out_features: int
    count: int
    bias: bool = False

    @property
    def params(self) -> int:
        """Parameters of all ``count`` copies (weights + biases)."""
        return (self.in_features + self.bias) * self.out_features * self.count


@dataclass(frozen=True)
class ParamCount:
    """Parameters of a model, split the way memory formulas need them."""

    embedding: int
    """Token (and position) embeddings: a lookup table, never quantized by bitsandbytes."""
    lm_head: int
    """Output projection to the vocabulary (0 when tied to the embedding)."""
    norms: int
    """Norm weights and biases, and MoE routers: small tensors every quantizer keeps in
    16/32 bit."""
    linears: tuple[Linear, ...]
    """The block matrices (what LoRA targets and 4-bit quantization compresses)."""

    @property
    def linear_params(self) -> int:
        return sum(lin.params for lin in self.linears)

    @property
    def total(self) -> int:
        return self.embedding + self.lm_head + self.norms + self.linear_params

    def linear(self, name: str) -> Linear:
        """The block matrix called ``name`` (e.g. ``"q_proj"``)."""
        for lin in self.linears:
            if lin.name == name:
                return lin
        raise KeyError(f"no linear layer {name!r}; have {[lin.name for lin in self.linears]}")


def _llama_like(shape: Shape, config: Mapping[str, Any]) -> ParamCount:
    h, L, q_dim, kv = shape.hidden, shape.layers, shape.heads * shape.head_dim, shape.kv_dim
    qkv_bias = bool(config.get("attention_bias", shape.model_type == "qwen2"))
    o_bias = bool(config.get("attention_bias", False))
    mlp_bias = bool(config.get("mlp_bias", False))
    E = shape.experts  # Mixtral: every expert's MLP is in memory, 2 of them run per token
    linears = (
        Linear("q_proj", h, q_dim, L, qkv_bias),
        Linear("k_proj", h, kv, L, qkv_bias),
        Linear("v_proj", h, kv, L, qkv_bias),
        Linear("o_proj", q_dim, h, L, o_bias),
        Linear("gate_proj", h, shape.ffn, L * E, mlp_bias),
        Linear("up_proj", h, shape.ffn, L * E, mlp_bias),
        Linear("down_proj", shape.ffn, h, L * E, mlp_bias),
    )
    norms = 2 * h * L + h  # input + post-attention RMSNorm per layer, final norm
    if shape.model_type == "qwen3":
        norms += 2 * shape.head_dim * L  # q_norm, k_norm
    if E > 1:
        norms += h * E * L  # the router: one h -> experts matrix per layer, never quantized
    return ParamCount(
        embedding=shape.vocab * h,
        lm_head=0 if shape.tied else shape.vocab * h,
        norms=norms,
        linears=linears,
    )


def _opt(shape: Shape, config: Mapping[str, Any]) -> ParamCount:
    h, L = shape.hidden, shape.layers
    proj = int(config.get("word_embed_proj_dim") or h)  # OPT-350m: 512-wide embeddings
    final_norm = config.get("do_layer_norm_before", True) and not config.get(
        "_remove_final_layer_norm", False
    )
    linears = [
        Linear("q_proj", h, h, L, True),
        Linear("k_proj", h, h, L, True),
        Linear("v_proj", h, h, L, True),
        Linear("out_proj", h, h, L, True),
        Linear("fc1", h, shape.ffn, L, True),
        Linear("fc2", shape.ffn, h, L, True),
    ]
    if proj != h:
        linears += [Linear("project_in", proj, h, 1), Linear("project_out", h, proj, 1)]
    return ParamCount(
        # token embedding (proj wide) + learned positions, offset by 2 rows (OPT's padding)
        embedding=shape.vocab * proj + (shape.max_ctx + 2) * h,
        lm_head=0 if shape.tied else shape.vocab * proj,
        norms=2 * 2 * h * L + (2 * h if final_norm else 0),  # LayerNorm weight + bias
        linears=tuple(linears),
    )


def _gpt2(shape: Shape) -> ParamCount:
    h, L = shape.hidden, shape.layers
    return ParamCount(
        embedding=shape.vocab * h + shape.max_ctx * h,  # token + learned position embeddings
        lm_head=0 if shape.tied else shape.vocab * h,
        norms=(2 * 2 * h) * L + 2 * h,  # LayerNorm weight + bias, 2 per layer, + ln_f
        linears=(
            Linear("c_attn", h, 3 * h, L, True),
            Linear("attn.c_proj", h, h, L, True),
            Linear("c_fc", h, shape.ffn, L, True),
            Linear("mlp.c_proj", shape.ffn, h, L, True),
        ),
    )


def _gpt_neox(shape: Shape) -> ParamCount:
    h, L = shape.hidden, shape.layers
    return ParamCount(
        embedding=shape.vocab * h,
        lm_head=0 if shape.tied else shape.vocab * h,
        norms=(2 * 2 * h) * L + 2 * h,
        linears=(
            Linear("query_key_value", h, 3 * h, L, True),
            Linear("dense", h, h, L, True),
            Linear("dense_h_to_4h", h, shape.ffn, L, True),
            Linear("dense_4h_to_h", shape.ffn, h, L, True),
        ),
    )


def count_params(config: Mapping[str, Any]) -> ParamCount:
    """Count the parameters of the model a config describes (see the module docstring).

    Example: ``count_params(load_config("llama-13b")).total == 13_015_864_320``.
    """
    shape = shape_of(config)
    if shape.model_type in LLAMA_LIKE:
        return _llama_like(shape, config)
    if shape.model_type == "opt":
        return _opt(shape, config)
    if shape.model_type == "gpt2":
        return _gpt2(shape)
    if shape.model_type == "gpt_neox":
        return _gpt_neox(shape)
    raise CourseError(
        f"The memory estimator does not know the layout of model_type {shape.model_type!r}, "
        "so it cannot count its parameters.",
        hint=f"Supported: {', '.join((*LLAMA_LIKE, 'opt', 'gpt2', 'gpt_neox'))}. For another "
        "architecture, count the checkpoint's tensors (safetensors index or GGUF header).",
    )
