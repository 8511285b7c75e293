"""Will the class server fit? Weights + KV cache + engine overhead against usable memory.

The class's WizardVicuna-13B server crashed loading the 52 GB fp32 checkpoint onto a 40 GB
GPU. :func:`plan` does that arithmetic before anything is loaded, with the course's memory
estimator (:func:`courselib.memory.estimate_inference`, one formula for the labs and ops):

- GPU host: vLLM. Per GPU, weights at the served dtype (split N ways with tensor parallel N),
  a KV cache for ``max_seqs`` sequences of ``max_model_len`` tokens, and vLLM's activations and
  runtime, against ``gpu_mem x gpu_memory_utilization`` (vLLM's ``--gpu-memory-utilization``,
  default 0.90). A GGUF type runs on llama.cpp (all layers offloaded) against the same budget.
- CPU host: llama-cpp-python's server, which answers one request at a time (the others wait
  in its queue): weights + one context of ``max_model_len`` + llama.cpp's buffers against the
  same share of RAM.

When it does not fit, the plan lists what would (:class:`Option`): fp16/bf16, AWQ or GPTQ
4-bit, a GGUF Q4_K_M on llama.cpp, tensor parallel over the smallest number of GPUs, the
longest context and the most concurrent sequences that fit.

Example (the motivating case)::

    >>> p = plan("wizard-vicuna-13b", gpu_mem="40GiB", gpus=1)
    >>> p.fits, p.dtype, round(p.estimate.weights / 2**30, 1)
    (False, 'fp32', 48.5)
    >>> [o.change for o in p.alternatives][:3]
    ['--dtype fp16 --max-seqs 6', '--dtype awq', '--dtype gptq']
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from courselib.errors import CourseError
from courselib.gguf.mix import LLAMA_LAYOUT
from courselib.memory.configs import legacy_notes, shape_of
from courselib.memory.estimate import Estimate, config_of
from courselib.memory.precision import kind, normalize
from server_setup import engines
from server_setup.hardware import Host, detect_host

DEFAULT_MAX_SEQS = 16
"""Concurrent sequences the class server must hold (a class of 30 with think times)."""
DEFAULT_MAX_MODEL_LEN = 2048
"""Context per sequence: LLaMA-1 and WizardVicuna-13B's own limit."""
DEFAULT_UTILIZATION = 0.90
"""vLLM's --gpu-memory-utilization default; the same share of RAM for llama.cpp."""
CPU_DEFAULT_DTYPE = "Q4_K_M"
"""What a CPU host serves when no dtype is asked: the course's own 4-bit GGUF."""
TP_SIZES = (2, 4, 8)
"""Tensor-parallel sizes tried for the "more GPUs" option (vLLM splits attention heads)."""
CONTEXT_STEP = 256
"""The shorter-context option is a multiple of this many tokens."""


@dataclass(frozen=True)
class Option:
    """Another way to serve the model that fits, and what it needs per device."""

    change: str
    """The flags that change, e.g. ``--dtype fp16`` or ``--gpus 2``."""
    dtype: str
    engine: str
    """The engine's name (:mod:`server_setup.engines`)."""
    gpus: int
    max_seqs: int
    max_model_len: int
    need_bytes: int


@dataclass(frozen=True)
class Plan:
    """The verdict for one model on one host (``render`` turns a fitting plan into files)."""

    model: str
    host: Host
    engine: str
    """The name of the engine plan chose for the dtype (:func:`server_setup.engines.serving`)."""
    dtype: str
    gpus: int
    """GPUs the engine uses (tensor parallel size); 0 on a CPU host."""
    max_seqs: int
    max_model_len: int
    utilization: float
    estimate: Estimate
    """Bytes per device (per GPU with tensor parallel), by component."""
    alternatives: tuple[Option, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def usable_bytes(self) -> int:
        """Memory the engine may take on one device: its size x utilization."""
        return int(self.host.device_bytes * self.utilization)

    @property
    def need_bytes(self) -> int:
        return self.estimate.total

    @property
    def fits(self) -> bool:
        return self.need_bytes <= self.usable_bytes

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json`` (bytes, not rounded)."""
        return {
            "model": self.model,
            "host": asdict(self.host),
            "engine": self.engine,
            "dtype": self.dtype,
            "gpus": self.gpus,
            "max_seqs": self.max_seqs,
            "max_model_len": self.max_model_len,
            "utilization": self.utilization,
            "usable_bytes": self.usable_bytes,
            "need_bytes": self.need_bytes,
            "fits": self.fits,
            "estimate": self.estimate.as_dict(),
            "alternatives": [asdict(o) for o in self.alternatives],
            "notes": list(self.notes),
        }


def _served_dtype(dtype: str | None, *, config: dict[str, Any], host: Host, model: str) -> str:
    if dtype in (None, "auto"):
        if model.endswith(".gguf"):
            return ""  # the file's own type (estimate_inference reads it from the header)
        return CPU_DEFAULT_DTYPE if host.kind == "cpu" else shape_of(config).dtype
    name = normalize(dtype)
    if kind(name) == "bnb":
        raise CourseError(
            f"The class server does not serve bitsandbytes formats ({name}).",
            hint="Serve fp16/bf16, awq or gptq on vLLM, or a GGUF type (Q4_K_M) on llama.cpp.",
        )
    if host.kind == "cpu" and kind(name) != "gguf":
        raise CourseError(
            f"A CPU host serves GGUF files on llama.cpp; {name} needs vLLM and a GPU.",
            hint="Ask for a GGUF type (--dtype Q4_K_M), or give the GPUs (--gpu-mem 40GiB).",
        )
    return name


def _estimate(
    model: str | os.PathLike[str], *, dtype: str, gpus: int, max_seqs: int, max_model_len: int
) -> tuple[engines.Engine, Estimate]:
    """(engine, per-device estimate) of one way of serving; the one formula for every option.

    ``dtype`` "" is a GGUF file served at its own type (its header's tensor bytes).
    """
    engine = engines.serving(dtype)
    est = engine.estimate(
        model, dtype=dtype, gpus=gpus, max_seqs=max_seqs, max_model_len=max_model_len
    )
    return engine, est


def _fits(need: int, host: Host, utilization: float) -> bool:
    return need <= int(host.device_bytes * utilization)


def _alternatives(
    model: str | os.PathLike[str],
    config: dict[str, Any],
    *,
    host: Host,
    dtype: str,
    engine: engines.Engine,
    gpus: int,
    max_seqs: int,
    max_model_len: int,
    utilization: float,
) -> list[Option]:
    """What fits instead, in the order ops would try it (cheapest change first)."""
    shape = shape_of(config)
    out: list[Option] = []

    def attempt(change: str, *, d: str, g: int, seqs: int, ctx: int, fewer: bool = False) -> bool:
        """Add the option if it fits; ``fewer``: else with the most sequences that fit."""
        for n in range(seqs, 0 if fewer else seqs - 1, -1):
            eng, est = _estimate(model, dtype=d, gpus=g, max_seqs=n, max_model_len=ctx)
            if _fits(est.total, host, utilization):
                label = change if n == seqs else f"{change} --max-seqs {n}"
                out.append(Option(label, d or est.precision, eng.name, g, n, ctx, est.total))
                return True
            if not eng.batches:
                return False  # one context whatever the concurrency (llama.cpp)
        return False

    if host.kind == "gpu":
        sixteen = "bf16" if shape.dtype == "bf16" else "fp16"
        for d in dict.fromkeys((sixteen, "awq", "gptq")):
            if d != dtype:
                attempt(f"--dtype {d}", d=d, g=gpus, seqs=max_seqs, ctx=max_model_len, fewer=True)
        if dtype != CPU_DEFAULT_DTYPE and shape.model_type in LLAMA_LAYOUT:
            attempt(
                f"--dtype {CPU_DEFAULT_DTYPE} (llama.cpp, one request at a time)",
                d=CPU_DEFAULT_DTYPE,
                g=gpus,
                seqs=1,
                ctx=max_model_len,
            )
        if engine.tensor_parallel:
            for n in TP_SIZES:
                if (
                    n > gpus
                    and shape.heads % n == 0
                    and attempt(
                        f"--gpus {n} (tensor parallel)",
                        d=dtype,
                        g=n,
                        seqs=max_seqs,
                        ctx=max_model_len,
                    )
                ):
                    break
    else:
        for d in ("Q4_K_M", "Q3_K_M", "IQ3_M", "Q2_K"):
            if d != dtype and shape.model_type in LLAMA_LAYOUT:
                attempt(f"--dtype {d}", d=d, g=0, seqs=1, ctx=max_model_len)
    for ctx in range((max_model_len - 1) // CONTEXT_STEP * CONTEXT_STEP, 0, -CONTEXT_STEP):
        if attempt(f"--max-model-len {ctx}", d=dtype, g=gpus, seqs=max_seqs, ctx=ctx):
            break
    if engine.batches:
        for seqs in range(max_seqs - 1, 0, -1):
            if attempt(f"--max-seqs {seqs}", d=dtype, g=gpus, seqs=seqs, ctx=max_model_len):
                break
    return out


def plan(
    model: str | os.PathLike[str],
    *,
    gpu_mem: str | None = None,
    gpus: int | None = None,
    ram: str | None = None,
    dtype: str | None = None,
    max_seqs: int = DEFAULT_MAX_SEQS,
    max_model_len: int = DEFAULT_MAX_MODEL_LEN,
    gpu_memory_utilization: float = DEFAULT_UTILIZATION,
) -> Plan:
    """Plan serving ``model`` (shipped name, HF folder or .gguf) on the given or detected host.

    ``gpu_mem``/``gpus``: the GPUs (``"40GiB"``, 1); ``ram``: a CPU host's RAM; neither: the
    GPUs torch or nvidia-smi find, else this machine's free RAM. ``dtype``: fp16, bf16, fp32,
    awq, gptq or a GGUF type (Q4_K_M, F16 ...); default the checkpoint's dtype on a GPU (a
    .gguf: its own type), Q4_K_M on a CPU host.

    Example: ``plan("llama-13b", gpu_mem="80GiB", dtype="fp16").fits`` is True (24.2 GiB of
    weights + 25 GiB of KV cache for 16 x 2048 tokens + 1.4 GiB, under 72 GiB).
    """
    if max_seqs < 1 or max_model_len < 1:
        raise CourseError(
            "max_seqs and max_model_len must be at least 1.", hint="Give positive numbers."
        )
    if not 0 < gpu_memory_utilization <= 1:
        raise CourseError(
            f"gpu_memory_utilization {gpu_memory_utilization} is not a share of memory.",
            hint="Give a number in (0, 1], e.g. 0.90 (vLLM's default).",
        )
    host = detect_host(gpu_mem=gpu_mem, gpus=gpus, ram=ram)
    name, config = config_of(model)
    served = _served_dtype(dtype, config=config, host=host, model=os.fspath(model))
    n_gpus = host.count if host.kind == "gpu" else 0
    engine, est = _estimate(
        model, dtype=served, gpus=n_gpus, max_seqs=max_seqs, max_model_len=max_model_len
    )
    notes = [*est.notes]
    tokenizer = _tokenizer_config(model)
    notes += [n for n in legacy_notes(config, tokenizer) if n not in notes]
    notes += engine.plan_notes(max_model_len=max_model_len)
    if engine.tensor_parallel and shape_of(config).heads % max(n_gpus, 1):
        raise CourseError(
            f"{engine.label} splits the {shape_of(config).heads} attention heads over the GPUs: "
            f"{n_gpus} does not divide them.",
            hint="Use a number of GPUs that divides the head count (1, 2, 4, 8).",
        )
    result = Plan(
        model=name,
        host=host,
        engine=engine.name,
        dtype=served or est.precision,
        gpus=n_gpus,
        max_seqs=max_seqs if engine.batches else 1,
        max_model_len=max_model_len,
        utilization=gpu_memory_utilization,
        estimate=est,
        notes=tuple(notes),
    )
    if result.fits:
        return result
    options = _alternatives(
        model,
        config,
        host=host,
        dtype=served,
        engine=engine,
        gpus=n_gpus,
        max_seqs=max_seqs,
        max_model_len=max_model_len,
        utilization=gpu_memory_utilization,
    )
    return replace(result, alternatives=tuple(options))


def _tokenizer_config(model: str | os.PathLike[str]) -> dict[str, Any] | None:
    """tokenizer_config.json of a checkpoint folder (it may name an early LLaMATokenizer)."""
    import json
    from pathlib import Path

    path = Path(os.fspath(model)) / "tokenizer_config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
