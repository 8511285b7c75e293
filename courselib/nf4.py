"""bitsandbytes, for 4-bit NF4 weights (Lab 03's measurements, Lab 04's QLoRA, the
transformers backend): imported without its CPU notice on stderr, or a :class:`CourseError`
saying why this machine cannot have 4-bit weights."""

from __future__ import annotations

import logging

from courselib.errors import CourseError, MissingDependencyError, require

_BNB_KERNELS_HUB_WARNING = "Failed to load CPU gemm_4bit_forward from kernels-community"


def _not_kernels_hub_warning(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(_BNB_KERNELS_HUB_WARNING)


def require_bitsandbytes():
    """Import bitsandbytes (extra ``train``) without its CPU kernel-hub warning on stderr.

    bitsandbytes 0.50, when imported on a CPU with AVX512-BF16, tries the optional ``kernels``
    package (which would download a kernel from the Hub) and, without it, logs "Failed to load
    CPU gemm_4bit_forward from kernels-community: No module named 'kernels'" at WARNING on the
    logger ``bitsandbytes.backends.cpu.ops``, in every process that imports it; it then uses its
    own CPU kernel, so nothing is lost. A notebook shows that as red stderr, and stderr in an
    nbgrader test cell scores 0. A filter on that one logger drops only this message; it is
    installed before the import because the message is logged while bitsandbytes imports.
    Example: ``bnb = require_bitsandbytes()``.
    """
    # bitsandbytes' optional Hub kernel is not wanted (no downloads): drop its "failed" warning.
    logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_not_kernels_hub_warning)
    return require("bitsandbytes", extra="train")


BNB_CPU_4BIT = (0, 47)
"""The first bitsandbytes release that runs 4-bit weights on an x86-64 CPU (docs/facts.md#bnb-cpu)."""


def require_4bit(*, cuda: bool, instead: str):
    """Import bitsandbytes for 4-bit NF4 weights, or say why this machine cannot have them.

    4-bit runs on a CUDA GPU, or on an x86-64 CPU with AVX2 from bitsandbytes 0.47 on.
    ``instead`` is the hint's alternative (e.g. "method='lora' works on this machine").
    Example: ``require_4bit(cuda=False, instead="Use dtype='fp32'.")``.
    """
    import importlib.metadata
    import re

    torch = require("torch", extra="models")
    if not cuda and torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        raise CourseError(
            "4-bit NF4 needs a CUDA GPU or an x86-64 CPU with AVX2; this machine has neither.",
            hint=instead,
        )
    try:
        bnb = require_bitsandbytes()
    except MissingDependencyError:
        raise CourseError(
            "4-bit NF4 needs the Python package 'bitsandbytes', which is not installed.",
            hint=f"pip install 'courselab[train]'. Or: {instead}",
        ) from None
    version = importlib.metadata.version("bitsandbytes")
    if not cuda and tuple(int(x) for x in re.findall(r"\d+", version)[:2]) < BNB_CPU_4BIT:
        raise CourseError(
            f"bitsandbytes {version} runs 4-bit NF4 on CUDA GPUs only; on a CPU it needs "
            f"{'.'.join(map(str, BNB_CPU_4BIT))} or later.",
            hint=f"pip install -U 'bitsandbytes>={'.'.join(map(str, BNB_CPU_4BIT))}'. Or: {instead}",
        )
    return bnb
