"""Will this model fit? A check to run before loading a model (chat backends, class server).

:func:`estimate_load_bytes` reads only the GGUF header or the checkpoint's ``config.json``,
so it is instant even for a 40 GB file; :func:`check_fits` turns a "no" into a CourseError
that says what to do instead of letting the process die of an out-of-memory kill.

Example::

    >>> check_fits("wizard-vicuna-13b/", available_bytes=16 * 2**30)   # fp32, 52 GB
    Traceback (most recent call last):
    CourseError: wizard-vicuna-13b needs about 53.0 GB to load with n_ctx=512, but only
    17.2 GB of RAM is available.
"""

from __future__ import annotations

import os
from pathlib import Path

from courselib.errors import CourseError
from courselib.gguf.read import GGUFInfo, read_gguf
from courselib.memory import kv
from courselib.memory.configs import load_config, shape_of
from courselib.memory.estimate import estimate_inference, llama_cpp_overhead_bytes


def estimate_load_bytes(
    model_path: str | os.PathLike[str] | GGUFInfo,
    *,
    n_ctx: int = 512,
    batch: int = 1,
    dtype: str | None = None,
) -> int:
    """Bytes needed to load ``model_path`` and run it for inference with ``n_ctx`` tokens.

    - ``.gguf``: the tensor bytes listed in its header + llama.cpp's KV cache (``dtype`` is
      the cache type, default fp16) + llama.cpp's compute buffer, logits and runtime.
    - checkpoint folder (or config.json): exact parameter count x ``dtype`` (default: the
      config's dtype; a bitsandbytes ``quantization_config`` is honoured) + KV cache + the
      transformers prefill workspace.

    A GGUF header already read (:class:`~courselib.gguf.read.GGUFInfo`) is not read again.

    Example: ``estimate_load_bytes("llama-2-13b.Q4_K_M.gguf", n_ctx=2048)`` is about 9.9e9.
    """
    if isinstance(model_path, GGUFInfo) or Path(model_path).suffix == ".gguf":
        info = model_path if isinstance(model_path, GGUFInfo) else read_gguf(model_path)
        shape = shape_of(info.config)
        cells = kv.llama_cpp_cells(n_ctx)
        kv_bytes = kv.kv_cache_bytes(shape, n_ctx=cells, batch=batch, dtype=dtype or "fp16")
        return info.tensor_bytes + kv_bytes + llama_cpp_overhead_bytes(shape, n_ctx=n_ctx)
    config = load_config(Path(model_path))
    quant = config.get("quantization_config") or {}
    if dtype is None and quant.get("load_in_4bit"):
        dtype = str(quant.get("bnb_4bit_quant_type", "nf4"))
        dtype += "-dq" if quant.get("bnb_4bit_use_double_quant") else ""
    elif dtype is None and quant.get("load_in_8bit"):
        dtype = "int8"
    return estimate_inference(config, precision=dtype, n_ctx=n_ctx, batch=batch).total


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def check_fits(
    model_path: str | os.PathLike[str] | GGUFInfo,
    *,
    n_ctx: int = 512,
    dtype: str | None = None,
    available_bytes: int | None = None,
    where: str = "RAM",
) -> int:
    """Return :func:`estimate_load_bytes`; raise CourseError if it exceeds what is available.

    ``available_bytes`` defaults to ``psutil.virtual_memory().available`` (free RAM now);
    pass free GPU memory and ``where="GPU memory"`` for a GPU.

    Example: ``check_fits(gguf_file("course-chat"), n_ctx=512)`` returns about 2.0e7 (20 MB).
    """
    need = estimate_load_bytes(model_path, n_ctx=n_ctx, dtype=dtype)
    if available_bytes is None:
        from courselib.errors import require

        available_bytes = int(require("psutil", extra="models").virtual_memory().available)
    if need > available_bytes:
        path = model_path.path if isinstance(model_path, GGUFInfo) else model_path
        name = Path(path).name or str(path)
        raise CourseError(
            f"{name} needs about {_gb(need)} to load with n_ctx={n_ctx}, "
            f"but only {_gb(available_bytes)} of {where} is available.",
            hint="use a smaller quantization (e.g. Q4_K_M) / smaller context / a bigger machine",
        )
    return need
