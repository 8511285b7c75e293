"""Model shapes for the memory estimator (Lab 03): shipped configs, checkpoints, GGUF headers.

A *config* is a Hugging Face ``config.json`` dict. :func:`load_config` gets one from a shipped
name (``"llama-13b"``), a course model (``"course-bench"``), a checkpoint folder, a
``config.json`` file or a ``.gguf`` file (its header, translated to the same keys).
:func:`shape_of` reads the few numbers the estimator needs from any of them.

Example::

    >>> shape_of(load_config("llama-13b"))
    Shape(model_type='llama', hidden=5120, layers=40, heads=40, kv_heads=40, head_dim=128,
          ffn=13824, vocab=32000, tied=False, max_ctx=2048, dtype='fp16', experts=1)

Early LLaMA checkpoints and their fine-tunes name their classes ``LLaMAForCausalLM`` and
``LLaMATokenizer`` (transformers renamed them ``Llama...`` before its first LLaMA release) and
say ``max_sequence_length`` instead of ``max_position_embeddings``: :func:`legacy_notes` says
so in one line and everything else reads them as LLaMA.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from courselib.errors import CourseError
from courselib.legacy import LEGACY_LLAMA_NAMES, legacy_notes  # noqa: F401 - plan, estimate
from courselib.models.specs import COURSE_MODELS

# torch_dtype strings of config.json -> the estimator's precision names
_TORCH_DTYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16", "float64": "fp64"}

TIED_BY_DEFAULT = frozenset({"gpt2", "opt", "gemma"})
"""model_type values whose transformers config ties the output head to the embedding when
config.json does not say (``PretrainedConfig`` ties by default; LlamaConfig, MistralConfig,
MixtralConfig, Qwen2Config and GPTNeoXConfig set ``tie_word_embeddings=False``)."""

# GGUF general.architecture names that differ from transformers' model_type
_GGUF_ARCHS = {"gptneox": "gpt_neox"}


@dataclass(frozen=True)
class Shape:
    """The numbers of a decoder-only transformer that decide its memory."""

    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    tied: bool
    """Input embedding and output head share one matrix."""
    max_ctx: int
    dtype: str
    """Precision the checkpoint is stored in (fp32, fp16, bf16)."""
    experts: int = 1
    """Mixture of experts: MLPs per layer, all resident in memory (Mixtral-8x7B: 8)."""

    @property
    def kv_dim(self) -> int:
        """Width of the K (and V) projection: kv_heads x head_dim."""
        return self.kv_heads * self.head_dim


def shipped_models() -> list[str]:
    """Names accepted by :func:`load_config`: shipped shapes, then the course models."""
    folder = resources.files("courselib") / "data" / "configs"
    names = sorted(
        p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")
    )
    return names + list(COURSE_MODELS)


def _shipped(name: str) -> dict[str, Any] | None:
    path = resources.files("courselib") / "data" / "configs" / f"{name.lower()}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _course_config(name: str) -> dict[str, Any]:
    """config.json of a built course model, else the one its spec will produce."""
    from courselib.models import hf_dir

    try:
        path = Path(hf_dir(name)) / "config.json"
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    except CourseError:
        pass  # not built yet: the spec has the same shape (vocab is the target size)
    spec = COURSE_MODELS[name]
    return {
        "_source": f"courselib.models.specs ({name} not built yet; vocab is the target size)",
        "model_type": "llama",
        "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "intermediate_size": spec.intermediate_size,
        "vocab_size": spec.vocab_size,
        "max_position_embeddings": spec.context_length,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
    }


def load_config(ref: str | os.PathLike[str]) -> dict[str, Any]:
    """The HF-style config dict of a model name, checkpoint folder, config.json or .gguf file.

    Example: ``load_config("llama-7b")["hidden_size"] == 4096``.
    """
    text = os.fspath(ref)
    if isinstance(ref, str) and not os.path.exists(text):
        if text.lower() in COURSE_MODELS:
            return _course_config(text.lower())
        config = _shipped(text)
        if config is not None:
            return config
        raise CourseError(
            f"Unknown model {text!r}: not a shipped shape and no such file or folder.",
            hint=f"Use one of {', '.join(shipped_models())}, or a checkpoint folder / .gguf path.",
        )
    path = Path(text)
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".gguf":
        from courselib.gguf.read import read_gguf

        return read_gguf(path).config
    if not path.is_file():
        raise CourseError(
            f"{path} does not exist.",
            hint="Give a folder that holds config.json (a transformers checkpoint) or a .gguf.",
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CourseError(f"{path} is not valid JSON ({exc}).", hint="Check the file.") from None


def _first(config: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return default


def config_dtype(config: Mapping[str, Any]) -> str:
    """Stored precision of a config: ``dtype`` (transformers 5) or ``torch_dtype``; fp32 if none."""
    raw = _first(config, "dtype", "torch_dtype", default="float32")
    return _TORCH_DTYPES.get(str(raw).removeprefix("torch."), "fp32")


def model_type_of(config: Mapping[str, Any]) -> str:
    """transformers' ``model_type`` of a config, else read from its ``architectures``.

    Example: ``model_type_of({"architectures": ["LLaMAForCausalLM"]}) == "llama"``.
    """
    raw = config.get("model_type")
    if not raw:
        arch = (config.get("architectures") or [""])[0]
        arch = LEGACY_LLAMA_NAMES.get(arch, arch)
        raw = arch.removesuffix("ForCausalLM").lower() or "unknown"
    raw = str(raw).lower()
    return _GGUF_ARCHS.get(raw, raw)


def shape_of(config: Mapping[str, Any]) -> Shape:
    """Read hidden size, layers, heads ... from a config, whatever the architecture names them."""
    text = config.get("text_config")
    if isinstance(text, Mapping):  # multimodal wrappers keep the language model inside
        config = {**text, "dtype": config_dtype(config)}
    hidden = _first(config, "hidden_size", "n_embd", "d_model")
    layers = _first(config, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(config, "num_attention_heads", "n_head", "num_heads")
    if not (hidden and layers and heads):
        raise CourseError(
            "This config has no hidden size, layer count or head count the estimator knows.",
            hint="Pass a decoder-only transformer config (LLaMA, Mistral, Qwen, GPT-2 ...).",
        )
    kv_heads = _first(config, "num_key_value_heads", "n_head_kv", default=heads)
    if config.get("multi_query"):
        kv_heads = 1
    model_type = model_type_of(config)
    tied_default = model_type in TIED_BY_DEFAULT
    return Shape(
        model_type=model_type,
        hidden=int(hidden),
        layers=int(layers),
        heads=int(heads),
        kv_heads=int(kv_heads),
        head_dim=int(_first(config, "head_dim", default=hidden // heads)),
        ffn=int(_first(config, "intermediate_size", "n_inner", "ffn_dim", default=4 * hidden)),
        vocab=int(_first(config, "vocab_size", default=32000)),
        tied=bool(_first(config, "tie_word_embeddings", default=tied_default)),
        max_ctx=int(
            _first(
                config,
                "max_position_embeddings",
                "max_sequence_length",  # early LLaMA conversions
                "n_positions",
                "n_ctx",
                default=2048,
            )
        ),
        dtype=config_dtype(config),
        experts=int(_first(config, "num_local_experts", default=1)),
    )
