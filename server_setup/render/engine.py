"""How the engine starts: one command line, used as is by compose, systemd, Apptainer and Slurm.

The engine follows from the plan (vLLM for fp16/bf16/fp32/AWQ/GPTQ on GPUs, llama.cpp for a
GGUF on a CPU host) unless the settings ask for Triton (Triton Inference Server running the
same vLLM engine). vLLM's engine arguments are built once (:func:`vllm_engine_args`) and become
both ``vllm serve`` flags and Triton's ``model.json``. The flags used are listed in
docs/facts.md#vllm-serve-flags and #llamacpp-server-flags.

vLLM and llama-cpp-python's server require the engine's key (``key_file``: the state dir's
``keys/engine.env``, loaded into their environment, never on the command line). Triton has
no such option to take from a file: its ``--http-restricted-api`` key would sit in its
command line, readable by every local user (docs/facts.md#engine-key).

Example::

    >>> d = load(None, overrides={"model": "wizard-vicuna-13b", "dtype": "awq",
    ...     "gpu_mem": "40GiB", "model_path": "/srv/models/wizard-vicuna-13b-awq"})
    >>> run = engine_run(plan(d.model, gpu_mem=d.gpu_mem, dtype=d.dtype), d)
    >>> run.argv[:3], run.gpus
    (('vllm', 'serve', '/srv/models/wizard-vicuna-13b-awq'), 1)
    >>> " ".join(run.argv[3:9])
    '--served-model-name wizard-vicuna-13b --dtype float16 --quantization awq'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from courselib.errors import CourseError
from server_setup.gateway.nginx import GatewayPaths
from server_setup.plan import Plan
from server_setup.settings import Deployment

EngineKind = Literal["vllm", "triton", "llamacpp"]

CHAT_TEMPLATE = "vicuna.jinja"
"""The Vicuna chat template file vLLM loads (--chat-template), in the install dir."""
MODEL_REPOSITORY = "model_repository"
"""Triton's model repository folder, in the install dir."""

# plan's dtype -> (vLLM --dtype, --quantization); AWQ/GPTQ kernels compute in fp16
VLLM_DTYPES: dict[str, tuple[str, str | None]] = {
    "fp16": ("float16", None),
    "bf16": ("bfloat16", None),
    "fp32": ("float32", None),
    "awq": ("float16", "awq"),
    "gptq": ("float16", "gptq"),
}

# vLLM and Triton cache compiled kernels under $HOME unless told where; Hub lookups are off
# because the weights are a local path (a classroom server must not download at start)
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


@dataclass(frozen=True)
class EngineRun:
    """One engine's start: ``argv`` (program first, as on the image's PATH) and what it needs."""

    kind: EngineKind
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


def choose_engine(p: Plan, d: Deployment) -> EngineKind:
    """The engine for this plan and setting ("auto": what plan chose)."""
    planned: EngineKind = "vllm" if p.engine == "vllm" else "llamacpp"
    if planned == "llamacpp" and p.host.kind == "gpu":
        raise CourseError(
            f"{p.dtype} is a GGUF type (llama.cpp) and this is a GPU host: render serves GGUF "
            "files on CPU hosts only.",
            hint="On GPUs serve fp16, awq or gptq with vLLM (--dtype awq); or give --ram.",
        )
    if d.engine == "auto":
        return planned
    wanted: EngineKind = d.engine
    if (wanted == "llamacpp") != (planned == "llamacpp"):
        needs = "a GGUF type on a CPU host" if wanted == "llamacpp" else "fp16/bf16/awq/gptq"
        raise CourseError(
            f"engine {wanted} does not serve {p.dtype} here: it needs {needs}.",
            hint="Set engine = auto, or a dtype that engine serves.",
        )
    return wanted


def vllm_engine_args(p: Plan, *, model_path: str, name: str) -> dict[str, Any]:
    """vLLM's engine arguments (snake_case) for the plan: the same for vllm serve and Triton.

    Example: AWQ on one GPU -> ``{"model": ..., "served_model_name": ..., "dtype": "float16",
    "quantization": "awq", "max_model_len": 2048, "max_num_seqs": 16,
    "gpu_memory_utilization": 0.9, "tensor_parallel_size": 1}``
    """
    dtype, quantization = VLLM_DTYPES[p.dtype]
    args: dict[str, Any] = {"model": model_path, "served_model_name": name, "dtype": dtype}
    if quantization:
        args["quantization"] = quantization
    args.update(
        max_model_len=p.max_model_len,
        max_num_seqs=p.max_seqs,
        gpu_memory_utilization=p.utilization,
        tensor_parallel_size=max(p.gpus, 1),
    )
    return args


def _flags(args: dict[str, Any], *, style: Literal["dash", "underscore"]) -> list[str]:
    out: list[str] = []
    for key, value in args.items():
        out += ["--" + (key.replace("_", "-") if style == "dash" else key), str(value)]
    return out


def engine_run(p: Plan, d: Deployment) -> EngineRun:
    """The engine's command line and needs, from a plan that fits and the settings."""
    kind = choose_engine(p, d)
    model_path = d.resolved_model_path()
    name = d.served_model_name or p.model.removesuffix(".gguf")
    install = PurePosixPath(d.resolved_install_dir())
    venv_bin = PurePosixPath(d.venv) / "bin"
    port = str(d.engine_port)
    key_file = str(GatewayPaths.of(d, install_dir=Path(install)).engine_env)
    if kind == "vllm":
        args = vllm_engine_args(p, model_path=model_path, name=name)
        del args["model"]  # vllm serve takes it as the positional model tag
        argv = ["vllm", "serve", model_path, *_flags(args, style="dash")]
        argv += ["--host", d.engine_host, "--port", port]
        argv += ["--chat-template", str(install / CHAT_TEMPLATE)]
        return EngineRun(
            kind,
            tuple(argv),
            gpus=max(p.gpus, 1),
            image=d.vllm_image,
            host_program=str(venv_bin / "vllm"),
            model_path=model_path,
            name=name,
            files=(CHAT_TEMPLATE,),
            env=dict(OFFLINE_ENV),
            key_file=key_file,
        )
    if kind == "triton":
        # getopt-style --flag=value, as Triton documents them; gRPC and metrics are off so
        # nothing listens beyond the one loopback HTTP port
        argv = [
            "tritonserver",
            f"--model-repository={install / MODEL_REPOSITORY}",
            f"--http-address={d.engine_host}",
            f"--http-port={port}",
            "--allow-grpc=false",
            "--allow-metrics=false",
        ]
        return EngineRun(
            kind,
            tuple(argv),
            gpus=max(p.gpus, 1),
            image=d.triton_image,
            host_program=str(PurePosixPath(d.triton_dir) / "bin" / "tritonserver"),
            model_path=model_path,
            name=name,
            files=(MODEL_REPOSITORY,),
            env=dict(OFFLINE_ENV),
        )
    # llama-cpp-python's server takes its settings' field names as flags (underscores)
    args = {"model": model_path, "model_alias": name, "n_ctx": p.max_model_len}
    if d.chat_format:
        args["chat_format"] = d.chat_format
    # llama-cpp-python ends a streamed reply early whenever another request is waiting
    # (interrupt_requests defaults to True): with a class, most streams would be cut short
    args.update(host=d.engine_host, port=port, interrupt_requests=False)
    return EngineRun(
        "llamacpp",
        ("python", "-m", "llama_cpp.server", *_flags(args, style="underscore")),
        gpus=0,
        image=d.python_image,
        host_program=str(venv_bin / "python"),
        model_path=model_path,
        name=name,
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
