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
