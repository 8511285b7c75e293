"""A plan as ops read it: one table of what is counted, then the verdict (``plan`` command).

Example (abridged)::

    wizard-vicuna-13b on 1 x 40.0 GiB GPU: vLLM, fp32, 16 sequences x 2048 tokens
      weights        48.49 GiB   13.0e9 parameters at fp32
      KV cache       50.00 GiB   16 x 2048 tokens
      engine          1.59 GiB   activations, buffers, runtime
      total         100.08 GiB   per GPU
      usable         36.00 GiB   40.0 GiB x 0.90 (--gpu-memory-utilization)
    DOES NOT FIT: wizard-vicuna-13b at fp32 needs 100.1 GiB per GPU (...)
    What fits instead (each alone):
      --dtype fp16 --max-seqs 6                            needs   34.9 GiB per GPU
      --dtype awq                                          needs   33.0 GiB per GPU
      ...
"""

from __future__ import annotations

from server_setup import engines
from server_setup.plan import Plan

GiB = 2**30


def _gib(n: int) -> str:
    return f"{n / GiB:8.2f} GiB"


def _what(plan: Plan) -> str:
    engine = engines.get(plan.engine)
    if engine.batches:
        tp = f", tensor parallel {plan.gpus}" if engine.tensor_parallel and plan.gpus > 1 else ""
        load = f"{plan.max_seqs} sequences x {plan.max_model_len} tokens{tp}"
    else:
        load = f"one context of {plan.max_model_len} tokens"
    return f"{engine.label}, {plan.dtype}, {load}"


def table(plan: Plan) -> str:
    """The breakdown per device, the usable memory and the verdict line."""
    e = plan.estimate
    engine = engines.get(plan.engine)
    device = "GPU" if plan.host.kind == "gpu" else "host"
    # a batching engine holds a KV cache per sequence, the others one context
    kv = f"{plan.max_seqs} x " if engine.batches else ""
    rows = [
        ("weights", e.weights, f"{e.params / 1e9:.1f}e9 parameters at {plan.dtype}"),
        ("KV cache", e.kv_cache, f"{kv}{plan.max_model_len} tokens"),
        ("engine", e.overhead, "activations, buffers, runtime"),
        ("total", e.total, f"per {device}"),
        (
            "usable",
            plan.usable_bytes,
            f"{plan.host.device_bytes / GiB:.1f} GiB x {plan.utilization:.2f} "
            f"({engine.utilization_flag})",
        ),
    ]
    lines = [f"{plan.model} on {plan.host.describe()}: {_what(plan)}"]
    lines += [f"  {label:<10}{_gib(n)}   {why}" for label, n, why in rows]
    lines += [f"  note: {n}" for n in plan.notes]
    if plan.fits:
        spare = plan.usable_bytes - plan.need_bytes
        lines.append(f"FITS, with {spare / GiB:.2f} GiB to spare per {device}.")
    return "\n".join(lines)


def refusal(plan: Plan) -> str:
    """One paragraph saying why it does not fit, then what would (the options)."""
    e = plan.estimate
    where = "GPU" if plan.host.kind == "gpu" else "host"
    crash = engines.get(plan.engine).out_of_memory
    text = (
        f"DOES NOT FIT: {plan.model} at {plan.dtype} needs {e.total / GiB:.1f} GiB per {where} "
        f"(weights {e.weights / GiB:.1f} + KV cache {e.kv_cache / GiB:.1f} + engine "
        f"{e.overhead / GiB:.1f}), but {plan.host.describe()} gives {plan.usable_bytes / GiB:.1f}"
        f" GiB at utilization {plan.utilization:.2f}: {crash}."
    )
    if not plan.alternatives:
        return text + " Nothing smaller fits this host: use a bigger one or a smaller model."
    lines = [text, "What fits instead (each alone):"]
    for o in plan.alternatives:
        lines.append(f"  {o.change:<52} needs {o.need_bytes / GiB:6.1f} GiB per {where}")
    return "\n".join(lines)
