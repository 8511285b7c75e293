"""What an inference engine tells the rest of server_setup: :class:`Engine`, :class:`EngineRun`.

plan, render, the gateway, README.txt and the report ask the engine (its memory, command
line, files, health check, the URL prefixes the gateway guards, its lines for people); none
of them compares its name. One module of :mod:`server_setup.engines` per engine subclasses
:class:`Engine` and makes one instance, ``ENGINE``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # annotations only: plan and settings import the registry
    from courselib.memory.estimate import Estimate
    from server_setup.plan import Plan
    from server_setup.settings import Deployment


@dataclass(frozen=True)
class EngineRun:
    """One engine's start: ``argv`` (program first, as on the image's PATH) and what it needs."""

    kind: str
    """The engine's name (:attr:`Engine.name`)."""
    argv: tuple[str, ...]
    gpus: int
    """GPUs to reserve (0: a CPU host)."""
    image: str
    """Container image it runs in (llama.cpp: the base image its container is built on)."""
    host_program: str
    """argv[0] on the host for systemd (inside the venv or the Triton install)."""
    model_path: str
    name: str
    """The served model name."""
    files: tuple[str, ...] = ()
    """Rendered files argv refers to, relative to the install dir (mounted read-only)."""
    env: dict[str, str] = field(default_factory=dict)
    build: tuple[str, ...] = ()
    """Shell commands that install the engine on ``image`` (empty: the image ships it)."""
    key_file: str = ""
    """The host's env file with the engine's API key ('': the engine takes none, Triton)."""


class Engine(ABC):
    """One inference engine: what plan, render, the gateway and the report need of it.

    Subclass it, set the attributes, implement :meth:`run` (and :meth:`serves` and
    :meth:`estimate` when plan picks the engine itself); the other methods have defaults
    that fit an engine with an OpenAI-compatible server and no files of its own.
    """

    name: str
    """The one spelling: settings' ``engine``, ``Plan.engine``, ``EngineRun.kind``."""
    label: str
    """For people: vLLM, Triton, llama.cpp."""
    plans_as: str
    """The engine whose plan this one serves. Its own name: plan picks it for the dtypes it
    :meth:`serves`. Another's (Triton: vllm, whose engine it runs): plan never picks it, the
    settings name it and it serves that engine's plan."""
    needs: str
    """What it serves, for the error when the settings ask it to serve a plan of another."""
    batches: bool
    """True: several sequences at once (``max_seqs``, each with its KV cache); False: one
    context, concurrent requests queue (plan then holds ``max_seqs`` at 1)."""
    tensor_parallel: bool
    """Whether it splits the attention heads over several GPUs (plan's ``--gpus N`` option)."""
    utilization_flag: str
    """The report's name for the share of memory it may take (``--gpu-memory-utilization``)."""
    out_of_memory: str
    """What happens when the model does not fit, for the report's refusal."""
    health_path: str
    """What a health check polls on the engine's port (``/v1/models``)."""
    gateway_prefixes: tuple[str, ...]
    """The URL prefixes the gateway forwards to it, each behind the students' keys."""
    installed: str
    """README.txt's systemd step: what the host must have installed."""

    def serves(self, dtype: str) -> bool:
        """Whether it serves ``dtype`` (plan's: fp16, awq, Q4_K_M ...; '': a GGUF file's own)."""
        return False

    def estimate(
        self,
        model: str | os.PathLike[str],
        *,
        dtype: str,
        gpus: int,
        max_seqs: int,
        max_model_len: int,
    ) -> Estimate:
        """Bytes per device to serve ``model`` at ``dtype`` (courselib's estimator)."""
        raise NotImplementedError(f"plan does not pick {self.name}: it serves {self.plans_as}'s")

    def plan_notes(self, *, max_model_len: int) -> tuple[str, ...]:
        """Notes the plan adds when this engine serves it."""
        return ()

    def check(self, p: Plan) -> None:
        """Raise a CourseError when render cannot deploy the plan on this engine."""
        return None  # by default, any plan it serves

    @abstractmethod
    def run(self, p: Plan, d: Deployment, *, key_file: str) -> EngineRun:
        """The command line and what it needs. ``d``: the settings with ``model_path``,
        ``served_model_name`` and ``install_dir`` filled in (``render.resolved``), as every
        rendered file names them; ``key_file``: the env file with the engine's key."""

    def files(self, p: Plan, run: EngineRun) -> dict[str, str]:
        """Files it needs beside the common ones: relative path -> text."""
        return {}

    def describe(self, rel: str) -> str | None:
        """README.txt's line for a file rendered for it (its :meth:`files`, the Dockerfile of
        its ``build``); None: not one of them."""
        return None

    def readme_check(self, d: Deployment, run: EngineRun) -> list[str]:
        """README.txt's check of the engine from the serving host: GET its health path."""
        line = f"     curl -s http://{d.engine_host}:{d.engine_port}{self.health_path}"
        if run.key_file:
            line += "          # 401: the engine wants its key"
        return [line]

    def readme_notes(self) -> list[str]:
        """README.txt's lines after the check (what people must know of this engine)."""
        return []


def flags(args: dict[str, Any], *, style: Literal["dash", "underscore"]) -> list[str]:
    """``{"max_model_len": 2048}`` as ``--max-model-len 2048`` (dash) or ``--max_model_len``."""
    out: list[str] = []
    for key, value in args.items():
        out += ["--" + (key.replace("_", "-") if style == "dash" else key), str(value)]
    return out
