"""The inference engines, one module each, and the one place that lists them.

An engine is a module here with one :class:`~server_setup.engines.base.Engine` instance,
``ENGINE``, listed in :data:`ENGINES` below: :mod:`.vllm` (vLLM's OpenAI server on GPUs),
:mod:`.triton` (Triton Inference Server running vLLM's engine) and :mod:`.llamacpp`
(llama-cpp-python's server for a GGUF on a CPU host). plan estimates memory with the engine
it picks, render asks it for its command line and files, the gateway for its URL prefixes,
README.txt and the report for their lines; no module outside this package spells an engine's
name to decide what to do. An unknown name is a CourseError listing the known ones.

Example::

    >>> get("llamacpp").label, get("vllm").gateway_prefixes
    ('llama.cpp', ('/v1/', '/tokenize'))
    >>> choose(plan("wizard-vicuna-13b", gpu_mem="40GiB", dtype="awq"), "triton").name
    'triton'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from courselib.errors import CourseError
from server_setup.engines import llamacpp, triton, vllm
from server_setup.engines.base import Engine, EngineRun

if TYPE_CHECKING:
    from server_setup.plan import Plan

__all__ = ["AUTO", "ENGINES", "Engine", "EngineRun", "choose", "get", "serving"]

AUTO = "auto"
"""The settings' ``engine`` that means: the engine plan chose (not an engine itself)."""

ENGINES: dict[str, Engine] = {e.name: e for e in (vllm.ENGINE, triton.ENGINE, llamacpp.ENGINE)}
"""Name -> engine. plan picks the first that serves a dtype among those that plan as
themselves, so vLLM comes before any other engine for the same dtypes."""


def get(name: str) -> Engine:
    """The engine called ``name``; a CourseError listing the known ones for any other."""
    try:
        return ENGINES[name]
    except KeyError:
        raise CourseError(
            f"Unknown engine {name!r}.", hint=f"Use one of {', '.join(ENGINES)}."
        ) from None


def serving(dtype: str) -> Engine:
    """The engine plan serves ``dtype`` with ('': a GGUF file's own type): the first that
    plans as itself and :meth:`~server_setup.engines.base.Engine.serves` it."""
    for engine in ENGINES.values():
        if engine.plans_as == engine.name and engine.serves(dtype):
            return engine
    raise CourseError(
        f"No engine serves {dtype}.",
        hint="Serve fp16/bf16, awq or gptq on vLLM, or a GGUF type (Q4_K_M) on llama.cpp.",
    )


def choose(p: Plan, setting: str) -> Engine:
    """The engine that serves plan ``p`` for the settings' ``engine`` (AUTO: the plan's own).

    Another engine may serve the plan only when it plans as the plan's engine (Triton serves
    vLLM's plans): its memory is what plan counted.
    """
    planned = get(p.engine)
    planned.check(p)  # first: a plan render cannot deploy is refused whatever the setting
    if setting == AUTO:
        return planned
    wanted = get(setting)
    if wanted.plans_as != planned.name:
        raise CourseError(
            f"engine {wanted.name} does not serve {p.dtype} here: it needs {wanted.needs}.",
            hint="Set engine = auto, or a dtype that engine serves.",
        )
    wanted.check(p)
    return wanted
