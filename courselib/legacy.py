"""Early LLaMA checkpoints' old names, read as today's (the estimator, ``plan``, the converter
and the transformers backend; Lab 01 converts such a checkpoint, Lab 02 plans one).

The first LLaMA conversions and the fine-tunes made from them (Vicuna, WizardVicuna, Alpaca
...) name their classes ``LLaMAForCausalLM`` and ``LLaMATokenizer`` (transformers renamed them
``Llama...`` before its first LLaMA release) and say ``max_sequence_length`` where transformers
reads ``max_position_embeddings``. Students used to fix the .json files by hand; the course
reads them as they are and says so in one line per old name.

Example::

    >>> old = {"architectures": ["LLaMAForCausalLM"], "max_sequence_length": 2048}
    >>> modern_llama_config(old)["model_type"], modern_llama_config(old)["max_position_embeddings"]
    ('llama', 2048)
    >>> legacy_notes(old)
    ['config.json names LLaMAForCausalLM (an early LLaMA conversion): read as LlamaForCausalLM.']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LEGACY_LLAMA_NAMES = {"LLaMAForCausalLM": "LlamaForCausalLM", "LLaMATokenizer": "LlamaTokenizer"}
"""Class names of the first LLaMA conversions -> the names transformers has used since."""


def legacy_notes(
    config: Mapping[str, Any], tokenizer_config: Mapping[str, Any] | None = None
) -> list[str]:
    """One line per old LLaMA class name in ``config`` (and ``tokenizer_config.json``).

    Example: ``legacy_notes({}, {"tokenizer_class": "LLaMATokenizer"})`` ->
    ``["tokenizer_config.json names LLaMATokenizer (an early LLaMA conversion): read as
    LlamaTokenizer."]``
    """
    named = list(config.get("architectures") or [])
    if tokenizer_config:
        named.append(tokenizer_config.get("tokenizer_class"))
    return [
        f"{'config.json' if n.endswith('LM') else 'tokenizer_config.json'} names {n} "
        f"(an early LLaMA conversion): read as {LEGACY_LLAMA_NAMES[n]}."
        for n in named
        if n in LEGACY_LLAMA_NAMES
    ]


def modern_llama_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with an early conversion's names replaced by today's (a copy; others as is).

    The architecture is renamed, a missing ``model_type`` of an ``LLaMAForCausalLM`` becomes
    ``"llama"``, and ``max_sequence_length`` fills a missing ``max_position_embeddings``.
    """
    out = dict(config)
    archs = list(out.get("architectures") or [])
    if not any(a in LEGACY_LLAMA_NAMES for a in archs):
        return out
    out["architectures"] = [LEGACY_LLAMA_NAMES.get(a, a) for a in archs]
    out.setdefault("model_type", "llama")
    if out.get("max_position_embeddings") is None and out.get("max_sequence_length"):
        out["max_position_embeddings"] = out["max_sequence_length"]
    return out
