"""Measure what the estimator predicts, each measurement in a fresh process (Lab 03, bench).

Every function here runs inside :func:`courselib.measure.runner.run_isolated` (a new process),
so nothing loaded before (a notebook's torch, an earlier model) pollutes the numbers. Use
:func:`run` to call one: ``run("train_step", model_dir=..., method="lora")``.

How memory is read, and why:

- Peak RSS is the kernel's high-water mark, reset right before the work, minus the RSS after
  the imports (:mod:`courselib.measure.process`).
- glibc keeps freed memory for reuse (as PyTorch's caching allocator does on a GPU), so RSS
  would count tensors that are already dead. ``mallopt(M_MMAP_THRESHOLD, 64 KiB)`` makes every
  tensor its own mapping, returned to the OS on free: RSS then follows the live tensors.
  ``malloc_cache=True`` keeps glibc's default, to see what the cache adds.
- transformers memory-maps safetensors: weights it keeps as they are stay *file pages*,
  counted in RSS only once touched, and a 4-bit load leaves the whole fp32 file mapped after
  quantizing it. After loading we copy file-backed tensors into private memory
  (:func:`materialize`), so RSS counts the model exactly once, as it is used.
"""

from __future__ import annotations

import ctypes
import gc
import re
import time
import warnings
from typing import TYPE_CHECKING, Any

from courselib.measure.process import peak_rss_bytes, reset_peak, rss_bytes
from courselib.measure.runner import run_isolated
from courselib.nf4 import require_bitsandbytes

if TYPE_CHECKING:
    from courselib.finetune.methods import Method, Precision

M_MMAP_THRESHOLD = -3  # mallopt parameter number (glibc malloc.h)


# ---- process memory ------------------------------------------------------------------


def free_memory_eagerly() -> None:
    """Make glibc return every freed block >= 64 KiB to the OS (see the module docstring)."""
    ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 64 * 1024)


def _file_mappings() -> list[tuple[int, int]]:
    """(start, end) of this process's file-backed mappings of model files."""
    spans = []
    with open("/proc/self/maps") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 6 and parts[5].endswith((".safetensors", ".bin", ".gguf")):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                spans.append((lo, hi))
    return spans


def materialize(model) -> int:
    """Copy tensors that live in a memory-mapped checkpoint into private memory; return bytes."""
    spans = _file_mappings()
    copied = 0
    for t in [*model.parameters(), *model.buffers()]:
        ptr = t.data_ptr()
        if any(lo <= ptr < hi for lo, hi in spans):
            t.data = t.data.clone()
            copied += t.numel() * t.element_size()
    gc.collect()
    return copied


def tensor_bytes(model) -> int:
    """Bytes of every parameter and buffer, with bitsandbytes' quantization state (absmax ...).

    ``model.get_memory_footprint()`` counts parameters and buffers only, so it misses the
    absmax blocks of 4-bit weights and the row scales of int8 weights.
    """
    import torch

    seen: dict[int, int] = {}

    def add(t) -> None:
        if isinstance(t, torch.Tensor) and t.numel():
            seen.setdefault(t.data_ptr(), t.numel() * t.element_size())

    for p in [*model.parameters(), *model.buffers()]:
        add(p)
        state = getattr(p, "quant_state", None)
        while state is not None:  # 4-bit: absmax, code, offset; nested for double quant
            for name in ("absmax", "code", "offset"):
                add(getattr(state, name, None))
            state = getattr(state, "state2", None)
        add(getattr(p, "SCB", None))  # int8 row scales
    return sum(seen.values())


# ---- loading --------------------------------------------------------------------------


def _import_model_class(model_dir: str, *, quantized: bool = False):
    """Import transformers and the model's class (and bitsandbytes when ``quantized``), so
    their code is in the baseline RSS and not counted as the model's memory."""
    import torch
    import transformers

    if quantized:
        require_bitsandbytes()  # imported without its CPU kernel-hub warning on stderr
    # a measurement prints its table, not loading bars and deprecation notes on stderr
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore")

    config = transformers.AutoConfig.from_pretrained(model_dir)
    transformers.AutoModelForCausalLM._model_mapping[type(config)]
    return torch, transformers


def load_kwargs(precision: str, *, other_dtype: str = "bf16") -> dict[str, Any]:
    """from_pretrained arguments that load a checkpoint at ``precision`` (fp32 ... nf4-dq)."""
    import torch
    import transformers

    from courselib.memory.precision import normalize

    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    name = normalize(precision)
    if name in dtypes:
        return {"dtype": dtypes[name]}
    if name == "int8":
        quant = transformers.BitsAndBytesConfig(load_in_8bit=True)
    else:
        quant = transformers.BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=name.removesuffix("-dq"),
            bnb_4bit_use_double_quant=name.endswith("-dq"),
            bnb_4bit_compute_dtype=dtypes[other_dtype],
        )
    return {"dtype": dtypes[other_dtype], "quantization_config": quant}


def hf_weights(model_dir: str, *, precision: str, other_dtype: str = "bf16") -> dict[str, int]:
    """Load a checkpoint at ``precision``: tensor bytes, get_memory_footprint, RSS it added."""
    from courselib.memory.precision import kind

    free_memory_eagerly()
    _, transformers = _import_model_class(model_dir, quantized=kind(precision) == "bnb")
    base = rss_bytes()
    kwargs = load_kwargs(precision, other_dtype=other_dtype)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    materialize(model)
    return {
        "tensor_bytes": tensor_bytes(model),
        "footprint": int(model.get_memory_footprint()),
        "rss_added": rss_bytes() - base,
    }


def hf_kv_cache(model_dir: str, *, n_tokens: int, batch: int = 1, precision: str = "fp32") -> int:
    """Bytes of the transformers KV cache (DynamicCache) after a prefill of ``n_tokens``."""
    torch, transformers = _import_model_class(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, **load_kwargs(precision))
    ids = torch.randint(3, model.config.vocab_size, (batch, n_tokens))
    with torch.no_grad():
        cache = model(input_ids=ids, use_cache=True).past_key_values
    total = 0
    for layer in cache.layers:
        for t in (layer.keys, layer.values):
            total += t.numel() * t.element_size()
    return total


# ---- llama.cpp ------------------------------------------------------------------------

_MIB = re.compile(r"([\w ]+?) buffer size =\s+([\d.]+) MiB")
_KV = re.compile(r"llama_kv_cache: size =\s+([\d.]+) MiB \(\s*(\d+) cells")


def llama_cpp_load(gguf_path: str, *, n_ctx: int, threads: int = 2) -> dict[str, int]:
    """Load a GGUF in llama.cpp and read what it allocated from its own log.

    Returns the KV cache bytes and cells, the compute buffer, the mapped model buffer, the
    weights llama.cpp repacked for this CPU's SIMD into private memory, and the RSS that loading and one full batch of prompt tokens added (a full batch touches the whole
    compute buffer; mapped weights count once they are read).
    """
    import llama_cpp

    from courselib.gguf.runtime import ensure_llama_runs

    logs: list[str] = []

    @llama_cpp.llama_log_callback
    def collect(level, text, user_data):  # llama.cpp logs line by line through this
        logs.append(text.decode("utf-8", "replace"))

    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    ensure_llama_runs(gguf_path)  # its child process adds nothing to this one's RSS
    base = rss_bytes()
    llm = llama_cpp.Llama(gguf_path, n_ctx=n_ctx, n_threads=threads, verbose=False)
    llm.eval([i % llm.n_vocab() for i in range(n_ctx - 1)])  # token ids: no tokenizer needed
    rss = rss_bytes() - base
    text = "".join(logs)
    kv = _KV.search(text)
    buffers: dict[str, float] = {}
    for name, mib in _MIB.findall(text):
        key = name.strip()  # "CPU compute", "CPU_Mapped model", "CPU_REPACK model", "CPU KV"
        buffers[key] = buffers.get(key, 0.0) + float(mib)
    llm.close()
    if kv is None:
        raise RuntimeError("llama.cpp did not log its KV cache size; its log format changed.")
    return {
        "kv_bytes": round(float(kv.group(1)) * 2**20),
        "kv_cells": int(kv.group(2)),
        "compute_bytes": round(buffers.get("CPU compute", 0.0) * 2**20),
        "mapped_bytes": round(buffers.get("CPU_Mapped model", 0.0) * 2**20),
        "repack_bytes": round(buffers.get("CPU_REPACK model", 0.0) * 2**20),
        "rss_added": rss,
    }


# ---- one training step ----------------------------------------------------------------


def train_step(
    model_dir: str,
    *,
    method: Method = "full",
    batch: int = 1,
    seq_len: int = 128,
    gradient_checkpointing: bool = False,
    lora_rank: int = 8,
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj"),
    lora_dropout: float = 0.05,
    grad_accum: int = 1,
    precision: Precision = "fp32",
    autocast: bool = False,
    steps: int = 2,
    threads: int = 2,
    malloc_cache: bool = False,
) -> dict[str, float]:
    """Peak RSS and time of optimizer step ``steps`` (AdamW, lr 1e-4) for full / lora / qlora.

    The model comes from :func:`courselib.finetune.methods.load_for_training` (what Lab 04
    trains), on the CPU, weights at ``precision`` (QLoRA: NF4 + double quantisation computed
    in it). Each optimizer step runs ``grad_accum`` forward and backward passes of ``batch``
    sequences of ``seq_len`` random tokens; ``autocast`` runs the forward passes in bf16
    autocast (what Trainer's ``bf16=True`` does). LoRA's alpha is 2 x its rank.
    Returns ``peak`` (bytes above the RSS after the imports), ``after_load``, ``trainable``
    and ``seconds_per_step`` (wall time of the last optimizer step; the first one also
    allocates the optimizer's states).
    """
    from courselib.finetune.methods import load_for_training
    from courselib.finetune.presets import LoraSettings
    from courselib.finetune.quiet import import_bitsandbytes_quietly

    if not malloc_cache:
        free_memory_eagerly()
    torch, _ = _import_model_class(model_dir, quantized=method == "qlora")
    # load_for_training and peft import bitsandbytes whenever it is installed: its code (tens
    # of MB of RSS) and peft's belong to the baseline, not to the model
    import_bitsandbytes_quietly()
    if method != "full":
        import peft  # noqa: F401
    torch.set_num_threads(threads)
    base = rss_bytes()
    lora = LoraSettings(
        r=lora_rank, alpha=2 * lora_rank, dropout=lora_dropout, target_modules=tuple(lora_targets)
    )
    model = load_for_training(
        model_dir,
        method=method,
        lora=lora,
        gradient_checkpointing=gradient_checkpointing,
        precision=precision,
        device="cpu",
    )
    materialize(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    torch.manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (batch, seq_len))
    after_load = rss_bytes() - base
    peak, seconds = 0, 0.0
    for _ in range(steps):  # the last step has optimizer states, as every later one does
        reset_peak()
        start = time.perf_counter()
        for _ in range(grad_accum):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = model(input_ids=ids, labels=ids).loss / grad_accum
            loss.backward()
            del loss
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - start
        peak = peak_rss_bytes() - base
    return {
        "peak": peak,
        "after_load": after_load,
        "trainable": sum(p.numel() for p in params),
        "seconds_per_step": seconds,
    }


def run(name: str, *, timeout_s: float = 600, **kwargs: Any) -> Any:
    """Run measurement ``name`` (a function of this module) in a fresh process; its result."""
    return run_isolated(f"{__name__}:{name}", timeout_s=timeout_s, **kwargs).value
