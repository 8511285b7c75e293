"""One deployment's settings, read by the one settings mechanism (:mod:`courselib.config`).

Every rendered file comes from a :class:`Deployment`; nothing in the scripts is typed out by
hand. Each field's environment variable is ``COURSELAB_SERVER_<FIELD>``
(``COURSELAB_SERVER_MAX_SEQS=8``), its key in the TOML settings file is its name
(``max_seqs = 8``) and its flag ``--max-seqs``. ``python -m server_setup init FILE`` writes a
commented example (:func:`example_toml`).

Example::

    >>> d = load(None, overrides={"model": "wizard-vicuna-13b", "dtype": "awq"}, environ={})
    >>> d.engine, d.engine_host, d.engine_port, d.max_seqs
    ('auto', '127.0.0.1', 8001, 16)
    >>> load(None, overrides={"model": "m"}, environ={"COURSELAB_SERVER_MAX_SEQS": "8"}).max_seqs
    8
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from courselib.config import Schema, setting
from courselib.errors import CourseError
from server_setup import engines
from server_setup.plan import DEFAULT_MAX_MODEL_LEN, DEFAULT_MAX_SEQS, DEFAULT_UTILIZATION

ENV_PREFIX = "COURSELAB_SERVER_"


@dataclass(frozen=True)
class Deployment:
    """Everything ``render`` needs for one class server. Field docs go into ``init``'s file."""

    # --- the model
    model: str = setting(
        "What plan reads: a shipped name (wizard-vicuna-13b), a checkpoint folder or a .gguf.",
        "",
    )
    model_path: str = setting(
        "Where the weights are on the serving host (default: model, when it is a path).", ""
    )
    served_model_name: str = setting(
        "The name clients ask for (OpenAI 'model', Triton's model folder); default: the model's "
        "(its folder's, or a Hugging Face hub cache snapshot's repository name).",
        "",
    )
    # --- what is served and how
    engine: str = setting(
        f"{engines.AUTO} (vLLM on a GPU host, llama.cpp for a GGUF on a CPU host), "
        f"{', '.join(engines.ENGINES)}.",
        engines.AUTO,
    )
    dtype: str = setting(
        "fp16, bf16, fp32, awq, gptq (vLLM/Triton) or a GGUF type (llama.cpp); default: plan's.",
        "",
    )
    gpus: int = setting("GPUs the engine uses (tensor parallel size).", 1)
    gpu_mem: str = setting("Memory of one GPU, e.g. 40GiB (empty: detect, else use ram).", "")
    ram: str = setting("A CPU host's RAM, e.g. 16GiB (llama.cpp).", "")
    max_seqs: int = setting("Sequences served at once (vLLM --max-num-seqs).", DEFAULT_MAX_SEQS)
    max_model_len: int = setting("Context per sequence, prompt + answer.", DEFAULT_MAX_MODEL_LEN)
    gpu_memory_utilization: float = setting(
        "Share of each GPU (or of RAM) the engine may take.", DEFAULT_UTILIZATION
    )
    chat_format: str = setting(
        "llama.cpp chat format; '' uses the template stored in the GGUF (the course models "
        "keep system messages that way; 'vicuna' drops them).",
        "vicuna",
    )
    # --- network: the engine answers on loopback only, the gateway is the one public door
    engine_host: str = setting("Address the engine binds: loopback only.", "127.0.0.1")
    engine_port: int = setting("Port of the engine (the gateway forwards to it).", 8001)
    gateway_port: int = setting("Port of the gateway students call.", 8000)
    gateway_host: str = setting(
        "Address the gateway binds: 127.0.0.1 for a laptop dry run, 0.0.0.0 on the class host.",
        "127.0.0.1",
    )
    # --- the gateway's limits, per student key (nginx: limit_req, client_max_body_size, njs)
    rate_per_minute: int = setting("Requests per minute one student may make (then 429).", 30)
    rate_burst: int = setting("Requests over the rate a student may make at once before 429.", 10)
    max_tokens: int = setting(
        "Most tokens one request may ask for (over it: 400; none asked: this many).", 512
    )
    max_body_kib: int = setting("Largest request body in KiB (over it: 413).", 256)
    nginx: str = setting("The nginx program (Debian: /usr/sbin/nginx).", "/usr/sbin/nginx")
    nginx_js_module: str = setting(
        "njs module nginx loads (Debian's libnginx-mod-http-js; the official nginx image "
        "has it at the same path, so one nginx.conf serves systemd and compose).",
        "/usr/lib/nginx/modules/ngx_http_js_module.so",
    )
    nginx_image: str = setting(
        "Container image of the gateway in compose.yaml (the official image ships njs).",
        "nginx:1.28",
    )
    tls_cert: str = setting(
        "PEM certificate (with its chain) the gateway serves HTTPS and HTTP/2 with, on the "
        "host; empty: plain HTTP (then put TLS in front if the network is not trusted).",
        "",
    )
    tls_key: str = setting(
        "The certificate's private key (PEM) on the host; set with tls_cert.", ""
    )
    state_dir: str = setting(
        "Keys (students' hashes, the engine's key), logs, pid and temp files of the gateway "
        "and of `up` (default: $XDG_STATE_HOME/courselab-server, else "
        "~/.local/state/courselab-server; on a class host e.g. /var/lib/courselab-server).",
        "",
    )
    # --- where files go and what runs them
    output_dir: str = setting("Folder the files are rendered into.", "deploy")
    install_dir: str = setting(
        "Where that folder lives on the serving host (default: output_dir, absolute).", ""
    )
    venv: str = setting(
        "systemd: the virtual environment with vllm or llama-cpp-python[server].",
        "/opt/courselab/venv",
    )
    triton_dir: str = setting(
        "systemd with Triton: the Triton install (bin/tritonserver, backends/vllm).",
        "/opt/tritonserver",
    )
    vllm_image: str = setting(
        "Container image of vLLM's OpenAI server.", "vllm/vllm-openai:v0.32.0"
    )
    triton_image: str = setting(
        "Container image of Triton with the vLLM backend (NGC).",
        "nvcr.io/nvidia/tritonserver:25.11-vllm-python-py3",
    )
    python_image: str = setting(
        "Base image the llama.cpp container is built on.", "python:3.11-slim"
    )
    llama_cpp_version: str = setting("llama-cpp-python version in the llama.cpp image.", "0.3.36")
    slurm_time: str = setting("Slurm: the job's time limit.", "08:00:00")
    slurm_cpus: int = setting("Slurm: CPU cores for the job.", 8)
    slurm_partition: str = setting("Slurm: partition (empty: the cluster's default).", "")

    def resolved_model_path(self) -> str:
        """The weights' path on the host (a shipped name has none: say what to set)."""
        if self.model_path:
            return self.model_path
        if Path(self.model).expanduser().exists():
            return str(Path(self.model).expanduser().resolve())
        raise CourseError(
            f"{self.model!r} is a name, not a path: render needs the weights' path on the host.",
            hint="Set model_path in the settings file (or --model-path) to the checkpoint folder.",
        )

    def resolved_install_dir(self) -> str:
        return self.install_dir or str(Path(self.output_dir).expanduser().resolve())

    def resolved_state_dir(self, *, environ: Mapping[str, str] | None = None) -> Path:
        """``state_dir``, else ``$XDG_STATE_HOME/courselab-server`` (~/.local/state/...)."""
        if self.state_dir:
            return Path(self.state_dir).expanduser().resolve()
        env = os.environ if environ is None else environ
        base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(base).expanduser().resolve() / "courselab-server"


SCHEMA = Schema(
    Deployment,
    env_prefix=ENV_PREFIX,
    missing_file_hint="Write an example with `python -m server_setup init {path}`.",
)
FIELDS = SCHEMA.fields


def env_name(name: str) -> str:
    """``max_seqs`` -> ``COURSELAB_SERVER_MAX_SEQS``."""
    return SCHEMA.env_name(name)


def load(
    path: str | os.PathLike[str] | None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Deployment:
    """The deployment from ``overrides`` (None = not given), ``environ`` (default
    ``os.environ``) and the settings file at ``path`` (None: none), checked."""
    deployment = SCHEMA.load(args=overrides, environ=environ, path=path)
    check(deployment)
    return deployment


def check(d: Deployment) -> None:
    """Refuse settings that would deploy something unsafe or unservable."""
    choices = (engines.AUTO, *engines.ENGINES)  # the registry as it is now, not a copy
    if d.engine not in choices:
        raise CourseError(f"Unknown engine {d.engine!r}.", hint=f"Use one of {', '.join(choices)}.")
    try:
        loopback = ipaddress.ip_address(d.engine_host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:  # students reach the engine only through the gateway (keys, limits)
        raise CourseError(
            f"engine_host {d.engine_host!r} is not a loopback address.",
            hint="The engine listens on 127.0.0.1 only; students go through the gateway.",
        )
    for name in ("engine_port", "gateway_port"):
        if not 1 <= getattr(d, name) <= 65535:
            raise CourseError(f"{name} {getattr(d, name)} is not a port.", hint="Use 1-65535.")
    try:
        ipaddress.ip_address(d.gateway_host)
    except ValueError:
        raise CourseError(
            f"gateway_host {d.gateway_host!r} is not an IP address.",
            hint="Use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface).",
        ) from None
    for name in ("rate_per_minute", "rate_burst", "max_tokens", "max_body_kib"):
        if getattr(d, name) < (0 if name == "rate_burst" else 1):
            raise CourseError(
                f"{name} = {getattr(d, name)} is too small.", hint=FIELDS[name].metadata["doc"]
            )
    if bool(d.tls_cert) != bool(d.tls_key):
        raise CourseError(
            "tls_cert and tls_key come together: one is set, the other is empty.",
            hint="Set both (the certificate and its private key), or neither for plain HTTP.",
        )
    if d.engine_port == d.gateway_port:
        raise CourseError(
            f"engine_port and gateway_port are both {d.engine_port}.",
            hint="Give the engine and the gateway different ports (defaults 8001 and 8000).",
        )
    if d.served_model_name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", d.served_model_name):
        # it is also Triton's model folder name
        raise CourseError(
            f"served_model_name {d.served_model_name!r} has characters a folder name should not.",
            hint="Use letters, digits, '.', '_' and '-', e.g. course-chat.",
        )


def to_toml(d: Deployment) -> str:
    """Every setting of ``d`` as a TOML file (what ``render`` used, to re-render it later)."""
    return SCHEMA.to_toml(d)


def example_toml(*, model: str = "wizard-vicuna-13b") -> str:
    """A commented settings file: every field with its doc, env var and default.

    Example (start)::

        # What plan reads: a shipped name (wizard-vicuna-13b), a checkpoint folder or a .gguf.
        # env COURSELAB_SERVER_MODEL
        model = "wizard-vicuna-13b"
    """
    examples = {
        "model": model,
        "model_path": "/srv/models/wizard-vicuna-13b-awq",
        "dtype": "awq",
        "gpu_mem": "40GiB",
    }
    return SCHEMA.commented_toml(
        title="Settings of one class-server deployment (python -m server_setup render FILE).",
        examples={name: value for name, value in examples.items() if value},
    )


def add_settings(p: argparse.ArgumentParser) -> None:
    """One flag per Deployment field (--max-seqs ...); each overrides its env var and the file."""
    SCHEMA.add_arguments(p)


def load_settings(args: argparse.Namespace) -> Deployment:
    """The Deployment from args.settings (a file or None) and the settings flags."""
    return load(args.settings, overrides=SCHEMA.flag_values(args))
