"""What the grader puts in the student's kernel, and the data format both sides speak.

The hidden tests never run in the student's kernel (:mod:`autograder.grade.checker` runs them
in the grader's process). The kernel only answers three requests, each one small ``execute``
whose reply is a ``display_data`` of type :data:`MIME` holding JSON:

- ``snap(names)``: the values the next test cell reads from the notebook, taken where the
  test cell stands. Plain data is encoded at once; a function is kept in a slot and named;
- ``call(slot, lab, args)``: call a kept function with plain-data arguments, with ``lab``'s
  reference implementations blocked (:func:`courselib.grading.blocked`) and a watch for their
  code (a copy made before the block runs the same code object); -> its result as data;
- ``probe()``: what the notebook changed that a grader cares about (IPython's input
  transformers, exception handlers and events, tracing hooks, the modules tests use, the
  own-work guard itself), against what the agent saw when it was installed, before any
  student code.

Everything the kernel sends is untrusted: :func:`decode` builds exact built-in types (and
numpy arrays, and the course's own dataclasses by their fields) from JSON, so a value whose
``__eq__`` says yes to anything cannot cross. This file is sent to the kernel as source text
(the sandbox has no ``autograder`` package): it imports only the standard library at the top.

Example, the wire format::

    >>> encode((1, 2.5, "a", None, [True]))
    {'$': 'tuple', 'v': [1, 2.5, 'a', None, [True]]}
    >>> decode(encode({"k": (1, 2)}))
    {'k': (1, 2)}
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import importlib.util
import json
import sys
from typing import Any

MIME = "application/x-courselab-agent+json"
TRUSTED_PACKAGES = ("courselib", "server_setup")
"""Packages whose dataclasses cross by their fields (``server_setup.plan.Option``, ``Plan``)."""
MAX_DEPTH = 64
AGENT_FILE = "courselab-agent"  # the agent's code, as the kernel compiles it


class WireError(ValueError):
    """A value that cannot cross, or a payload that is not what the format allows."""


class Opaque:
    """Stands in, on the grader's side, for a notebook value that cannot cross as data; any use
    fails with the reason (a test that never reads it is not affected)."""

    def __init__(self, name: str, why: str):
        self._why = f"the grader cannot use `{name}` from your notebook: {why}"

    def _fail(self, *_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError(self._why)

    __call__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _fail
    __iter__ = __len__ = __bool__ = __getitem__ = __add__ = __float__ = __int__ = _fail
    __hash__ = None  # type: ignore[assignment]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        self._fail()

    def __repr__(self) -> str:
        return f"<{self._why}>"


# -- encoding ------------------------------------------------------------------------------


def encode(value: Any, *, keep: Any = None, depth: int = 0) -> Any:
    """``value`` as JSON-able data. ``keep(func) -> slot`` keeps a function (kernel side);
    without it a function cannot cross. Raises :class:`WireError` for anything else."""
    if depth > MAX_DEPTH:
        raise WireError("nested too deeply")
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        return (
            value
            if value == value and value not in (float("inf"), float("-inf"))
            else {
                "$": "float",
                "v": repr(value),
            }
        )
    if kind is list:
        return [encode(v, keep=keep, depth=depth + 1) for v in value]
    if kind in (tuple, set, frozenset):
        items = sorted(value, key=repr) if kind is not tuple else value
        return {"$": kind.__name__, "v": [encode(v, keep=keep, depth=depth + 1) for v in items]}
    if kind is dict:
        pairs = [
            [encode(k, keep=keep, depth=depth + 1), encode(v, keep=keep, depth=depth + 1)]
            for k, v in value.items()
        ]
        return {"$": "dict", "v": pairs}
    if kind is bytes:
        return {"$": "bytes", "v": base64.b64encode(value).decode()}
    module = getattr(kind, "__module__", "") or ""
    if module == "numpy" and kind.__name__ == "ndarray":
        if value.dtype.hasobject:
            raise WireError("a numpy array of Python objects")
        data = base64.b64encode(value.tobytes(order="C")).decode()
        return {"$": "ndarray", "dtype": value.dtype.str, "shape": list(value.shape), "v": data}
    if module == "numpy" and hasattr(value, "dtype") and not value.dtype.hasobject:
        return {"$": "npscalar", "dtype": value.dtype.str, "v": encode(value.item())}
    if dataclasses.is_dataclass(value) and module.split(".")[0] in TRUSTED_PACKAGES:
        fields = {
            f.name: encode(getattr(value, f.name), keep=keep, depth=depth + 1)
            for f in dataclasses.fields(value)
            if f.init
        }
        return {"$": "dataclass", "cls": f"{module}:{kind.__qualname__}", "v": fields}
    if (
        module.startswith("transformers.")
        and hasattr(value, "config")
        and hasattr(value, "named_modules")
    ):
        # A model crosses as its class and configuration: the other side builds the same
        # architecture with fresh weights (enough for a question about its layers).
        return {"$": "hf_model", "cls": kind.__name__, "v": value.config.to_dict()}
    if keep is not None and callable(value) and not isinstance(value, type):
        return {"$": "function", "slot": keep(value), "name": getattr(value, "__name__", "?")}
    raise WireError(f"a {kind.__name__}, which is not plain data")


def decode(data: Any, *, function: Any = None, depth: int = 0) -> Any:
    """The value ``data`` encodes, built from exact types only. ``function(slot, name)`` makes
    the grader's stand-in for a kept function; without it a function is refused."""
    if depth > MAX_DEPTH:
        raise WireError("nested too deeply")
    kind = type(data)
    if data is None or kind in (bool, int, float, str):
        return data
    if kind is list:
        return [decode(v, function=function, depth=depth + 1) for v in data]
    if kind is not dict or type(data.get("$")) is not str:
        raise WireError(f"unexpected {kind.__name__} in the payload")
    tag, v = data["$"], data.get("v")

    def items() -> list[Any]:
        if type(v) is not list:
            raise WireError(f"{tag} without items")
        return [decode(x, function=function, depth=depth + 1) for x in v]

    if tag == "float" and v in ("nan", "inf", "-inf"):
        return float(v)
    if tag == "tuple":
        return tuple(items())
    if tag == "set":
        return set(items())
    if tag == "frozenset":
        return frozenset(items())
    if tag == "dict":
        pairs = items()
        if not all(type(p) is list and len(p) == 2 for p in pairs):
            raise WireError("dict without pairs")
        return {k: val for k, val in pairs}
    if tag == "bytes" and type(v) is str:
        return base64.b64decode(v, validate=True)
    if tag == "ndarray":
        import numpy as np

        dtype = np.dtype(str(data["dtype"]))
        if dtype.hasobject:
            raise WireError("a numpy array of objects")
        shape = tuple(int(n) for n in data["shape"])
        return np.frombuffer(base64.b64decode(v), dtype=dtype).reshape(shape).copy()
    if tag == "npscalar":
        import numpy as np

        dtype = np.dtype(str(data["dtype"]))
        if dtype.hasobject or type(v) not in (bool, int, float, str):
            raise WireError("a numpy scalar of objects")
        return dtype.type(v)
    if tag == "dataclass":
        cls = _trusted_class(str(data.get("cls")))
        if type(v) is not dict:
            raise WireError("a dataclass without fields")
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        if set(v) - names:
            raise WireError(f"{cls.__name__} has no fields {sorted(set(v) - names)}")
        fields = {k: decode(x, function=function, depth=depth + 1) for k, x in v.items()}
        return cls(**fields)
    if tag == "hf_model":
        import transformers

        model_cls = getattr(transformers, str(data.get("cls")), None)
        if not isinstance(model_cls, type) or not hasattr(model_cls, "config_class"):
            raise WireError(f"{data.get('cls')!r} is not a transformers model class")
        return model_cls(model_cls.config_class.from_dict(v))
    if tag == "function" and function is not None and type(data.get("slot")) is int:
        return function(data["slot"], str(data.get("name", "?")))
    raise WireError(f"{tag!r} cannot cross here")


def _trusted_class(ref: str) -> type:
    module, _, qualname = ref.partition(":")
    if module.split(".")[0] not in TRUSTED_PACKAGES or not qualname:
        raise WireError(f"{ref} is not one of the course's own classes")
    owner: Any = importlib.import_module(module)
    for part in qualname.split("."):
        owner = getattr(owner, part)
    if not (isinstance(owner, type) and dataclasses.is_dataclass(owner)):
        raise WireError(f"{ref} is not a dataclass")
    return owner


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


# -- the kernel side -----------------------------------------------------------------------

WATCHED_MODULES = ("builtins", "math", "statistics", "json", "numpy", "courselib.grading")
"""Modules whose attributes the probe compares with the agent's first look."""


class Agent:
    """Lives in the student's kernel as ``_courselab_agent``; see the module docstring."""

    def __init__(self) -> None:
        from courselib import grading

        self._slots: list[Any] = []
        self._blocked = grading.blocked  # held here: rebinding the module's name changes nothing
        self._references = {lab: tuple(refs) for lab, refs in grading.REFERENCES.items()}
        self._codes = {lab: self._reference_codes(refs) for lab, refs in self._references.items()}
        self._guard_code = (grading.blocked.__code__, grading._block.__code__)
        self._baseline = self._look()  # before any student code: the kernel's own hooks

    # requests ----------------------------------------------------------------------------

    def snap(self, names: list[str]) -> None:
        """Encode the notebook's ``names`` (``{"$": "missing"}`` for an unbound one)."""
        namespace = self._user_ns()
        out: dict[str, Any] = {}
        for name in names:
            if name not in namespace:
                out[name] = {"$": "missing"}
                continue
            value = namespace[name]
            if type(value).__name__ == "module":
                out[name] = {"$": "module", "v": getattr(value, "__name__", "")}
                continue
            try:
                out[name] = encode(value, keep=self._keep)
            except Exception as err:  # noqa: BLE001 - whatever the value is, it is reported
                out[name] = {"$": "opaque", "v": str(err)[:200]}
        self._send({"values": out})

    def call(self, slot: int, lab: str, args: str) -> None:
        """Call the function in ``slot`` with ``args`` (JSON: [positional, keyword])."""
        try:
            positional, keywords = decode(json.loads(args))
            func = self._slots[slot]
        except Exception as err:  # noqa: BLE001
            self._send({"error": f"the grader's request could not be read: {err}"})
            return
        name = getattr(func, "__name__", "your function")
        seen: list[str] = []
        watched = self._codes.get(lab, {})
        previous = sys.getprofile()

        def watch(frame: Any, event: str, _arg: Any) -> None:
            if event == "call":
                hit = watched.get((frame.f_code.co_filename, frame.f_code.co_qualname))
                if hit is not None:
                    seen.append(hit)

        try:
            with self._blocked(self._references.get(lab, ()), caller=name):
                sys.setprofile(watch if watched else previous)
                try:
                    result = func(*positional, **keywords)
                finally:
                    still = sys.getprofile()
                    sys.setprofile(previous)
        except BaseException as err:  # noqa: BLE001 - the student's exception, reported
            if isinstance(err, KeyboardInterrupt):
                raise
            self._send({"raised": type(err).__name__, "message": str(err)[:2000]})
            return
        if watched and still is not watch:
            self._send({"refused": f"{name} turned off the grader's watch for courselib's code"})
        elif seen:
            self._send(
                {
                    "refused": f"{name} ran the course's {seen[0]}: this exercise asks for your "
                    "own formula or code, not the course library's. Write it yourself."
                }
            )
        else:
            try:
                self._send({"value": encode(result, keep=self._keep)})
            except Exception as err:  # noqa: BLE001
                self._send({"unreadable": f"{name} returned {err}"})

    def probe(self) -> None:
        """What changed since the agent was installed, one finding per line."""
        now = self._look()
        findings = [
            f"{what}: {', '.join(code)}"
            for what, code in sorted(now.items())
            if code and code != self._baseline.get(what, ())
        ]
        from courselib import grading

        if (grading.blocked.__code__, grading._block.__code__) != self._guard_code:
            findings.append("courselib.grading's own-work guard was rewritten")
        for lab, codes in self._codes.items():
            current = self._reference_codes(self._references[lab])
            if set(current) != set(codes):
                findings.append(f"courselib's reference functions for {lab} were replaced")
                break
        self._send({"findings": findings})

    # helpers -------------------------------------------------------------------------------

    def _keep(self, func: Any) -> int:
        self._slots.append(func)
        return len(self._slots) - 1

    @staticmethod
    def _send(payload: dict[str, Any]) -> None:
        from IPython.display import publish_display_data

        publish_display_data({MIME: dumps(payload)})

    @staticmethod
    def _user_ns() -> dict[str, Any]:
        from IPython import get_ipython

        return get_ipython().user_ns

    @staticmethod
    def _reference_codes(refs: tuple[str, ...]) -> dict[tuple[str, str], str]:
        """(file, qualname) of each reference's code -> its name: a copy, a reload and the
        original all run code with that file and qualname."""
        out: dict[tuple[str, str], str] = {}
        for ref in refs:
            module_name, qualname = ref.split(":")
            # where the module's source is, without running it (a module loaded from its
            # file names that file in its code objects, as a copy loaded by path does)
            try:
                spec = importlib.util.find_spec(module_name)
            except ImportError:  # not installed here (the sandbox shows courselib only)
                continue
            if spec is not None and spec.origin:
                out[(spec.origin, qualname)] = qualname.split(".")[-1]
        return out

    def _look(self) -> dict[str, tuple[str, ...]]:
        """Each hook a notebook could set -> the student code in it (hooks whose code lives in
        an installed library, such as matplotlib's inline backend, are not the student's)."""
        from IPython import get_ipython

        ip = get_ipython()
        hooks: dict[str, list[Any]] = {
            "IPython input transformers": [
                *ip.input_transformers_cleanup,
                *ip.input_transformers_post,
            ],
            "IPython AST transformers": list(ip.ast_transformers),
            "sys.excepthook": [sys.excepthook],
            "sys.settrace": [sys.gettrace()],
            "sys.setprofile": [sys.getprofile()],
        }
        for method in ("showtraceback", "transform_cell", "run_cell", "run_code", "_showtraceback"):
            hooks[f"IPython {method}"] = [getattr(ip, method, None)]
        for event, callbacks in ip.events.callbacks.items():
            hooks[f"IPython {event} events"] = list(callbacks)
        out = {
            what: tuple(_describe(h) for h in found if h is not None and _student_code(h))
            for what, found in hooks.items()
        }
        for name in WATCHED_MODULES:  # math.isclose = lambda *a: True, and the like
            module = sys.modules.get(name)
            if module is not None:
                out[f"module {name}"] = tuple(
                    f"{attr} = {_describe(value)}"
                    for attr, value in sorted(vars(module).items())
                    if callable(value) and _student_code(value)
                )
        # set_custom_exc wraps the handler in IPython's own code: the exceptions tell
        out["IPython custom exception handler"] = tuple(
            getattr(e, "__name__", str(e)) for e in ip.custom_exceptions
        )
        return out


def _describe(hook: Any) -> str:
    func = getattr(hook, "__func__", hook)
    return str(getattr(func, "__qualname__", None) or type(func).__qualname__)


def _student_code(hook: Any) -> bool:
    """Is ``hook`` code from the notebook (or built at run time), not from an installed
    library? Library code has its file under the Python installation."""
    func = getattr(hook, "__func__", hook)
    code = getattr(func, "__code__", None)
    if code is None:
        code = getattr(vars(type(func)).get("__call__"), "__code__", None)  # a callable object
    if code is None:
        return False  # a builtin: no notebook code runs through it
    return code.co_filename != AGENT_FILE and not code.co_filename.startswith(_library_roots())


def _library_roots() -> tuple[str, ...]:
    import os

    roots = [sys.prefix, sys.base_prefix, sys.exec_prefix]
    for package in TRUSTED_PACKAGES:
        path = getattr(sys.modules.get(package), "__file__", None)
        if path:
            roots.append(os.path.dirname(path))
    return tuple(os.path.join(root, "") for root in roots)


def install_source() -> str:
    """The code that installs the agent in a fresh kernel (sent before any student cell)."""
    source = open(__file__, encoding="utf-8").read()  # noqa: SIM115 - read once, small
    return (
        "def _courselab_install():\n"
        "    import types, sys\n"
        "    module = types.ModuleType('_courselab_agent_module')\n"
        f"    exec(compile({source!r}, {AGENT_FILE!r}, 'exec'), module.__dict__)\n"
        "    return module.Agent()\n"
        "_courselab_agent = _courselab_install()\n"
        "del _courselab_install\n"
        "_courselab_agent._send({'installed': True})\n"
    )
