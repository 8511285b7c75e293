"""The one exception type the course shows to people.

Every predictable mistake (a missing model file, a server that does not answer, a prompt
longer than the context ...) is raised as a :class:`CourseError` carrying two sentences:
what happened, and what to do. The CLI prints exactly those two lines, and notebooks show
them without a traceback from deep inside a library.

Example::

    raise CourseError("Model file /x.gguf does not exist.",
                      hint="Run `python -m courselib models build` or pass another path.")

Every command of the course (``python -m courselib``, ``python -m autograder``,
``python -m server_setup``) exits with the same status for the same outcome::

    0    done: the work ran and everything passed
    1    the work ran and found failures (a check failed, a model does not fit, a grade
         differs from the expected one); the output says which
    2    nothing was done: a mistake in the command, its settings or its input (a
         CourseError, printed as "error: what happened" and "  What to do: ..."; argparse's
         usage errors use 2 too)
    130  interrupted (Ctrl-C)

:func:`run_command` is what each CLI's ``main`` calls to apply it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_MISTAKE = 2
EXIT_INTERRUPTED = 130


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


def run_command(command: Callable[[], int | None]) -> int:
    """Run a CLI command; its exit status by the convention above.

    A :class:`CourseError` is printed as its two lines on stderr (no traceback) and exits 2;
    Ctrl-C exits 130. Example: ``sys.exit(run_command(lambda: args.func(args)))``.
    """
    try:
        return int(command() or EXIT_OK)
    except CourseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MISTAKE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


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
