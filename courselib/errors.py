"""The one exception type the course shows to people.

Every predictable mistake (a missing model file, a server that does not answer, a prompt
longer than the context ...) is raised as a :class:`CourseError` carrying two sentences:
what happened, and what to do. The CLI prints exactly those two lines, and notebooks show
them without a traceback from deep inside a library.

Example::

    raise CourseError("Model file /x.gguf does not exist.",
                      hint="Run `python -m courselib models build` or pass another path.")
"""

from __future__ import annotations

import logging


class CourseError(Exception):
    """A mistake a student, instructor or ops engineer can fix; ``hint`` says how."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  What to do: {self.hint}" if self.hint else self.message

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of printing a traceback: students see two lines.
        return [f"CourseError: {self}"]


class MissingDependencyError(CourseError):
    """A heavy optional package (torch, llama_cpp, ...) is not installed."""

    def __init__(self, package: str, *, extra: str) -> None:
        super().__init__(
            f"This feature needs the Python package '{package}', which is not installed.",
            hint=f"pip install 'courselab[{extra}]'  (or run `make venv` in the course repo)",
        )
        self.package = package


def require(module: str, *, package: str | None = None, extra: str = "lab"):
    """Import ``module`` lazily, turning ImportError into a :class:`MissingDependencyError`.

    Example: ``torch = require("torch", extra="models")``
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(package or module.split(".")[0], extra=extra) from exc


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
