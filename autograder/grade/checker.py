"""Run a test cell in the grader's process, on what the student's kernel sends as data.

The instructor writes ordinary nbgrader test cells (asserts, ``### BEGIN HIDDEN TESTS``). The
grader never sends them to the student's kernel: :class:`Checker` executes each one here, in a
fresh namespace with the grader's own builtins and modules (``math``, numpy, courselib, the
test's own imports), and the verdict is whether *this* execution raised.

The names a test reads from the notebook (:func:`notebook_names`) are taken from the kernel
where the test cell stands (``Agent.snap``): plain data (exact ``bool``/``int``/``float``/
``str``/``None``, lists, tuples, dicts, sets, bytes, numpy arrays and scalars, the course's own
dataclasses) crosses as a copy; a module by its name (the grader imports its own copy, if it is
one a test may use); a function as a :class:`StudentFunction`, whose calls send plain-data
arguments to the kernel and get plain data back. A transformers model argument crosses as its
class and config (Lab 04's ``linear_targets``: the kernel builds the same architecture). Any
other value becomes an ``Opaque`` whose use fails with the reason.

So nothing student code does in its kernel (input transformers, exception handlers, events,
``math.isclose = lambda *a: True``, an object equal to everything) reaches a verdict: a test
passes only if the student's function returned the right data for the test's arguments.

Example::

    >>> notebook_names("import math\\nx = f(2)\\nassert math.isclose(x, g.y)")
    ['f', 'g']
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import io
import json
import re
import signal
import symtable
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from autograder.course import hidden_lines
from autograder.grade.agent import Opaque, WireError, decode, dumps, encode

MODULES = {
    "math", "cmath", "statistics", "json", "re", "collections", "itertools", "functools",
    "fractions", "decimal", "string", "random", "dataclasses", "typing", "numpy", "pandas",
    "torch", "transformers", "courselib", "server_setup",
}  # fmt: skip
"""Top-level packages whose modules the grader imports for a test (its own copy, never the
kernel's); a notebook name bound to any other module is not given to the tests."""
BUILTIN_ERRORS = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, Exception)
}


class KernelGone(Exception):
    """The student's kernel died or had to be killed; ``str()`` says which."""


class CallTimeout(Exception):
    """A request to the kernel took longer than the test cell's time left."""


class CheckTimeout(CallTimeout):
    """The test cell's own code (in the grader) ran past its time; no kernel call was late."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`CheckTimeout` in the block after ``seconds`` (a test cell's own loop).

    Only in the main thread (a grading worker process runs its submission there); elsewhere,
    e.g. a dask worker's thread, the kernel requests' own limits are all there is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise CheckTimeout(f"{seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


Request = Callable[[str], dict[str, Any]]
"""Send code to the kernel agent, -> its JSON payload (raises KernelGone, CallTimeout)."""


def notebook_names(source: str) -> list[str]:
    """The names ``source`` reads that it neither imports nor finds in builtins, in order."""
    try:
        top = symtable.symtable(source, "<test>", "exec")
    except SyntaxError:
        return []
    wanted: dict[str, None] = {}

    def visit(table: symtable.SymbolTable, top_level: bool) -> None:
        for sym in table.get_symbols():
            name = sym.get_name()
            if sym.is_imported() or not sym.is_referenced() or name in vars(builtins):
                continue
            if top_level or sym.is_global():
                wanted[name] = None
        for child in table.get_children():
            visit(child, False)

    visit(top, True)
    imported = {s.get_name() for s in top.get_symbols() if s.is_imported()}
    return [n for n in wanted if n not in imported]


class StudentFunction:
    """The grader's stand-in for a function in the student's kernel."""

    def __init__(self, request: Request, slot: int, name: str, lab: str = ""):
        self._request, self._slot, self.__name__, self._lab = request, slot, name, lab

    def __own_work_for__(self, lab: str) -> StudentFunction:
        """What ``courselib.grading.own_work(f, lab=...)`` returns for a stand-in: the same
        function, called in the kernel with ``lab``'s reference implementations blocked."""
        return StudentFunction(self._request, self._slot, self.__name__, lab)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            payload = dumps(encode([list(args), kwargs]))
        except WireError as err:
            raise TypeError(f"the grader cannot pass {err} to {self.__name__}") from None
        reply = self._request(
            f"_courselab_agent.call({self._slot}, {self._lab!r}, {json.dumps(payload)})"
        )
        if "value" in reply:
            try:
                return decode(reply["value"], function=self._function)
            except (WireError, ValueError, TypeError) as err:
                raise AssertionError(f"{self.__name__} returned {err}") from None
        if "raised" in reply:
            ename, message = str(reply["raised"]), str(reply.get("message", ""))
            error = getattr(builtins, ename) if ename in BUILTIN_ERRORS else StudentError
            raise error(f"{self.__name__} raised {ename}: {message}".rstrip(": "))
        if "refused" in reply:
            raise AssertionError(str(reply["refused"]))
        if "unreadable" in reply:
            raise AssertionError(
                f"{reply['unreadable']}: return plain data (numbers, strings, lists, tuples, "
                "dicts), which the grader can check"
            )
        raise AssertionError(f"calling {self.__name__}: {reply.get('error', 'no answer')}")

    def _function(self, slot: int, name: str) -> StudentFunction:
        return StudentFunction(self._request, slot, name, self._lab)

    def __repr__(self) -> str:
        return f"<your function {self.__name__}>"


class StudentError(Exception):
    """A student's function raised an exception that is not one of Python's own."""


@dataclass
class Verdict:
    """One test cell's run in the grader."""

    passed: bool
    outputs: list[dict[str, Any]] = field(default_factory=list)
    """nbformat outputs: what the test printed, and its error (the cell's score reads it)."""
    why: str = ""
    """For a failed test, in words a student understands; never a hidden test's text."""


class Checker:
    """Runs a notebook's test cells, in order, against one student kernel."""

    def __init__(self, request: Request):
        self._request = request
        self._earlier: dict[str, Any] = {}  # names bound by earlier test cells (nbgrader's order)

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        """The grader's values for a ``snap`` payload: name -> value (unbound names left out)."""
        out: dict[str, Any] = {}
        for name, data in values.items():
            tag = data.get("$") if type(data) is dict else None
            if tag == "missing":
                continue
            if tag == "module":
                module = str(data.get("v", ""))
                if module.split(".")[0] in MODULES:
                    try:
                        out[name] = importlib.import_module(module)
                    except ImportError:
                        out[name] = Opaque(name, f"module {module} is not installed here")
                else:
                    out[name] = Opaque(name, f"it is the module {module}, not one tests use")
                continue
            if tag == "opaque":
                out[name] = Opaque(name, f"it is {data.get('v', 'not plain data')}")
                continue
            try:
                out[name] = decode(data, function=self._function)
            except Exception as err:  # noqa: BLE001 - hostile data: any failure is a refusal
                out[name] = Opaque(name, f"it could not be read ({err})")
        return out

    def _function(self, slot: int, name: str) -> StudentFunction:
        return StudentFunction(self._request, slot, name)

    def run(
        self, source: str, values: dict[str, Any], *, count: int, limit: float | None = None
    ) -> Verdict:
        """Execute the test ``source`` with the notebook's ``values`` (from :meth:`resolve`);
        ``count`` is the execution count its traceback names (``Cell In[count], line N``);
        past ``limit`` seconds of the test's own code, :class:`CheckTimeout`."""
        namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        namespace |= self._earlier
        namespace |= values
        printed = io.StringIO()
        filename = f"<test cell {count}>"
        try:
            code = compile(source, filename, "exec")
            with contextlib.ExitStack() as stack:
                stack.enter_context(contextlib.redirect_stdout(printed))
                stack.enter_context(contextlib.redirect_stderr(printed))
                if limit is not None:
                    stack.enter_context(time_limit(limit))
                exec(code, namespace)
        except (KernelGone, CallTimeout):
            raise
        except Exception as err:  # noqa: BLE001 - a failed test, whatever it raised
            verdict = self._failed(source, err, filename, count)
        else:
            verdict = Verdict(passed=True)
        self._earlier |= {
            k: v for k, v in namespace.items() if k not in values and not k.startswith("__")
        }
        if printed.getvalue():
            verdict.outputs.insert(
                0, {"output_type": "stream", "name": "stdout", "text": printed.getvalue()}
            )
        return verdict

    @staticmethod
    def _failed(source: str, err: Exception, filename: str, count: int) -> Verdict:
        frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == filename]
        line = frames[-1].lineno if frames and frames[-1].lineno else None
        lines = source.split("\n")
        hidden = hidden_lines(source)
        ename = type(err).__name__
        message = str(err)
        in_hidden = line is None or line in hidden
        if in_hidden:
            # A message can echo the hidden arguments (a student's error text, an Opaque's
            # name): the hidden test's failure shows only what kind of failure it was.
            message = ""
            shown = f"{ename} (in a hidden test)"
        else:
            shown = f"{ename}: {message}".rstrip(": ")
        text = lines[line - 1].strip() if line and not in_hidden else ""
        trace = [f"Cell In[{count}], line {line}" if line else "in the test", f"    {text}", shown]
        if isinstance(err, SyntaxError):
            why = f"the test could not run ({err.msg})"
        elif in_hidden:
            why = f"a hidden test failed ({ename})"
        else:
            visible = 1 + sum(1 for n in range(1, line or 1) if n not in hidden)
            why = f"line {visible} `{_short(text)}` failed" + (
                f": {_short(message, 160)}" if message else f" ({ename})"
            )
        error = {
            "output_type": "error",
            "ename": ename,
            "evalue": message,
            "traceback": [t for t in trace if t.strip()],
        }
        return Verdict(passed=False, outputs=[error], why=why)


def _short(text: str, limit: int = 100) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
