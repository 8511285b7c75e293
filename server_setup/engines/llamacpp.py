"""llama-cpp-python's OpenAI server: a GGUF file on a CPU host, one request at a time.

The server holds one context of ``max_model_len`` tokens; concurrent requests wait in its
queue. PyPI has only its sdist, so the container is built on a Python image and compiles
llama.cpp (``build``). The server takes its settings' field names as flags (underscores,
docs/facts.md#llamacpp-server-flags) and its key from the environment (``API_KEY``, from the
state dir's ``keys/engine.env``), never from its command line (docs/facts.md#engine-key).

Example::

    >>> d = load(None, overrides={"model": "llama-7b", "ram": "16GiB", "dtype": "Q4_K_M",
    ...     "model_path": "/srv/models/llama-7b.Q4_K_M.gguf"})
    >>> ENGINE.run(plan_of(d), resolved(plan_of(d), d), key_file="/k/engine.env").argv[:4]
    ('python', '-m', 'llama_cpp.server', '--model')
"""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from courselib.errors import CourseError
from courselib.memory.estimate import Estimate, estimate_inference
from courselib.memory.precision import kind
from server_setup.engines.base import Engine, EngineRun, flags

if TYPE_CHECKING:
    from server_setup.plan import Plan
    from server_setup.settings import Deployment


class LlamaCpp(Engine):
    """llama.cpp (llama-cpp-python[server]): GGUF types, one context, batch 1."""

    name = "llamacpp"
    label = "llama.cpp"
    plans_as = "llamacpp"
    needs = "a GGUF type on a CPU host"
    batches = False
    tensor_parallel = False
    utilization_flag = "--gpu-memory-utilization"  # plan and render's flag, for RAM too
    out_of_memory = (
        "llama.cpp would fail to allocate, or the host would swap and the kernel kill it"
    )
    health_path = "/v1/models"
    # the OpenAI API, and llama-cpp-python's tokenizer (courselib's remote backend counts
    # prompt tokens with it)
    gateway_prefixes = ("/v1/", "/extras/")
    installed = "llama-cpp-python[server] installed in venv"

    def serves(self, dtype: str) -> bool:
        return not dtype or kind(dtype) == "gguf"

    def estimate(
        self,
        model: str | os.PathLike[str],
        *,
        dtype: str,
        gpus: int,
        max_seqs: int,
        max_model_len: int,
    ) -> Estimate:
        # one context whatever the concurrency (batch 1), on one device
        return estimate_inference(
            model, precision=dtype or None, n_ctx=max_model_len, engine="llama.cpp"
        )

    def plan_notes(self, *, max_model_len: int) -> tuple[str, ...]:
        return (
            f"llama.cpp: one context of {max_model_len} tokens; concurrent requests wait in "
            "the server's queue (llama-cpp-python answers one at a time).",
        )

    def check(self, p: Plan) -> None:
        if p.host.kind == "gpu":
            raise CourseError(
                f"{p.dtype} is a GGUF type (llama.cpp) and this is a GPU host: render serves "
                "GGUF files on CPU hosts only.",
                hint="On GPUs serve fp16, awq or gptq with vLLM (--dtype awq); or give --ram.",
            )

    def run(self, p: Plan, d: Deployment, *, key_file: str) -> EngineRun:
        # llama-cpp-python's server takes its settings' field names as flags (underscores)
        args = {"model": d.model_path, "model_alias": d.served_model_name, "n_ctx": p.max_model_len}
        if d.chat_format:
            args["chat_format"] = d.chat_format
        # llama-cpp-python ends a streamed reply early whenever another request is waiting
        # (interrupt_requests defaults to True): with a class, most streams would be cut short
        args.update(host=d.engine_host, port=str(d.engine_port), interrupt_requests=False)
        return EngineRun(
            self.name,
            ("python", "-m", "llama_cpp.server", *flags(args, style="underscore")),
            gpus=0,
            image=d.python_image,
            host_program=str(PurePosixPath(d.venv) / "bin" / "python"),
            model_path=d.model_path,
            name=d.served_model_name,
            env={"HF_HUB_OFFLINE": "1"},
            build=(
                # PyPI has only the sdist: pip compiles llama.cpp (a C/C++ toolchain, minutes)
                "apt-get update",
                "apt-get install -y --no-install-recommends build-essential",
                "rm -rf /var/lib/apt/lists/*",
                f"pip install --no-cache-dir 'llama-cpp-python[server]=={d.llama_cpp_version}'",
            ),
            key_file=key_file,
        )

    def describe(self, rel: str) -> str | None:
        if rel == "Dockerfile":
            return "the llama.cpp image compose builds (compiles llama.cpp: minutes)"
        return None


ENGINE = LlamaCpp()
