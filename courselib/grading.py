"""What the labs' test cells use so that an answer is the student's own (Labs 01-04).

Several graded exercises ask for a formula the course library also implements (Lab 03's
``llama_params`` is :func:`courselib.memory.count_params`, Lab 01's ``vicuna_prompt`` is
:func:`courselib.chat.vicuna.render_vicuna`). A solution that calls the library would pass the
tests without the work. :func:`own_work` wraps a student's function so that, while it runs,
the library's reference implementations for that lab raise ``AssertionError`` with a message
saying so: the test fails, with the reason in the student's feedback.

How: a plain function's code object is swapped for one that raises, so every reference to it
is caught, whatever name it was imported under (``from courselib.memory import count_params
as f``); a method is replaced on its class. Everything is put back when the call returns.

Example (the first line of a Lab 03 test cell)::

    >>> llama_params = own_work(llama_params, lab="lab03")
    >>> llama_params(4096, 32, 32, 32, 11008, 32000)   # a solution calling count_params:
    AssertionError: llama_params called the course's count_params: this exercise asks for your own ...
"""

from __future__ import annotations

import functools
import importlib
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_MEMORY = (
    "courselib.memory.params:count_params",
    "courselib.memory.params:_llama_like",
    "courselib.memory.precision:bits_per_weight",
    "courselib.memory.precision:bytes_per_param",
    "courselib.memory.weights:weight_bytes",
    "courselib.memory.weights:quantized_matrix_bytes",
    "courselib.memory.kv:kv_cache_bytes",
    "courselib.memory.kv:kv_bytes_per_token",
    "courselib.memory.training:lora_params",
    "courselib.memory.training:estimate_training",
    "courselib.memory.estimate:estimate_inference",
    "courselib.memory.preflight:estimate_load_bytes",
)
REFERENCES: dict[str, tuple[str, ...]] = {
    "lab01": (
        "courselib.chat.vicuna:render_vicuna",
        "courselib.chat.template:_render_vicuna_messages",
        "courselib.chat.template:ChatTemplate.render",  # every backend's prompt_text renders here
        *_MEMORY,
    ),
    "lab02": (
        # the ops tools' stream parser and percentile (read_stream, speed_summary's medians);
        # a chat request's body and choose_option have no library twin (the openai client
        # builds its own body; plan() lists options, it does not pick one)
        "server_setup.sse:stream_choices",
        "server_setup.loadtest:percentile",
    ),
    "lab03": _MEMORY,
    "lab04": (
        "courselib.memory.training:lora_params",  # LoRA's trainable parameters
        "courselib.memory.params:count_params",
        "courselib.finetune.methods:trainable_parameters",
        "courselib.models.train:encode_dialogue",  # the labels that mask the prompt
    ),
}
"""Per lab, the library functions ("module:qualname") that compute its graded answers."""

_LOCK = (
    threading.RLock()
)  # re-entrant: a wrapped function may call another (finetune_gb -> bits_per_weight)


def own_work(func: F, *, lab: str) -> F:
    """``func``, failing its call when it calls one of ``lab``'s reference implementations."""
    if getattr(func, "__own_work__", None) == lab:
        return func  # the test cell ran again: wrap once
    delegate = getattr(type(func), "__own_work_for__", None)
    if delegate is not None:  # the autograder's stand-in for a function in a student's kernel
        return delegate(func, lab)
    name = getattr(func, "__name__", "your function")

    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        with blocked(REFERENCES[lab], caller=name):
            return func(*args, **kwargs)

    checked.__own_work__ = lab  # type: ignore[attr-defined]
    return checked  # type: ignore[return-value]


@contextmanager
def blocked(references: tuple[str, ...], *, caller: str) -> Iterator[None]:
    """While the block runs, each of ``references`` raises AssertionError naming ``caller``."""
    undo: list[Callable[[], None]] = []
    with _LOCK:
        try:
            for ref in references:
                undo.append(_block(ref, caller))
            yield
        finally:
            for restore in reversed(undo):
                restore()


def _block(ref: str, caller: str) -> Callable[[], None]:
    """Make ``ref`` raise; -> what puts it back.

    A reference outside courselib (Lab 02's are in server_setup, a package above this one) is
    blocked only when its module is loaded: one not loaded has nothing to call, and courselib
    never imports the tools built on it. (A function that imports it during its own call is
    caught by the autograder, which watches for the reference's code as it runs.)
    """
    module_name, qualname = ref.split(":")
    if module_name.split(".")[0] != __name__.split(".")[0] and module_name not in sys.modules:
        return lambda: None
    owner: Any = importlib.import_module(module_name)
    *path, attr = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    target = getattr(owner, attr)
    message = (
        f"{caller} called the course's {attr}: this exercise asks for your own "
        "formula or code, not the course library's. Write it yourself."
    )
    if isinstance(owner, type) or target.__code__.co_freevars:
        # A method (replaced on its class), or a closure (its code cannot be swapped).
        def refuse(*_args: Any, **_kwargs: Any) -> Any:
            raise AssertionError(message)

        setattr(owner, attr, refuse)
        return lambda: setattr(owner, attr, target)
    original = target.__code__
    target.__code__ = _raising_code(attr, message)
    return lambda: setattr(target, "__code__", original)


def _raising_code(name: str, message: str):
    """A code object that raises AssertionError(message); it names only builtins, since it runs
    with the replaced function's module globals."""
    scope: dict[str, Any] = {}
    exec(f"def {name}(*args, **kwargs):\n    raise AssertionError({message!r})", scope)
    return scope[name].__code__
