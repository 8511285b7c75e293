"""The engine as a docker compose service (``compose.yaml``), plus the llama.cpp image recipe.

The service uses the host's network, so the engine's ``--host 127.0.0.1`` means the host's
loopback: the gateway on the host reaches it and nothing outside does (a published port would
need the engine to bind 0.0.0.0 inside the container). GPU engines reserve their GPUs through
the NVIDIA container toolkit. The model and the rendered files are mounted read-only at the
same paths as on the host, so the command line is the one systemd and Slurm run.

Example (vLLM, abridged)::

    services:
      engine:
        image: vllm/vllm-openai:v0.32.0
        entrypoint: [vllm, serve, /srv/models/m, --served-model-name, course-chat, ...]
        network_mode: host
        volumes: ['/srv/models/m:/srv/models/m:ro', './vicuna.jinja:/opt/deploy/vicuna.jinja:ro']
        deploy: {resources: {reservations: {devices: [{driver: nvidia, count: 1, ...}]}}}
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from courselib.errors import MissingDependencyError
from server_setup.render.engine import EngineRun

DOCKERFILE = "Dockerfile"
"""The llama.cpp image recipe beside compose.yaml (vLLM and Triton use published images)."""


def dockerfile(run: EngineRun) -> str:
    """The image a CPU engine runs in: the base image plus the engine's build commands."""
    steps = " \\\n && ".join(run.build)
    return (
        "# Rendered by python -m server_setup render: llama-cpp-python's OpenAI server.\n"
        f"FROM {run.image}\n"
        f"RUN {steps}\n"
        "# the server needs no privileges: it reads the model and answers on loopback\n"
        "USER nobody\n"
    )


def compose_yaml(run: EngineRun, *, install_dir: str) -> str:
    """compose.yaml with one service, ``engine``."""
    try:
        import yaml
    except ImportError:
        raise MissingDependencyError("pyyaml", extra="serve") from None
    install = PurePosixPath(install_dir)
    volumes = [f"{run.model_path}:{run.model_path}:ro"]
    volumes += [f"./{f}:{install / f}:ro" for f in run.files]
    service: dict[str, Any] = {}
    if run.build:
        service["build"] = {"context": ".", "dockerfile": DOCKERFILE}
        service["image"] = f"courselab-{run.kind}:local"
    else:
        service["image"] = run.image
    service.update(
        entrypoint=list(run.argv),
        network_mode="host",
        volumes=volumes,
        environment=dict(run.env),
        restart="on-failure",
        security_opt=["no-new-privileges:true"],
    )
    if run.gpus:
        service["ipc"] = "host"  # tensor-parallel workers exchange tensors in shared memory
        service["deploy"] = {
            "resources": {
                "reservations": {
                    "devices": [{"driver": "nvidia", "count": run.gpus, "capabilities": ["gpu"]}]
                }
            }
        }
    header = (
        "# Rendered by python -m server_setup render from deployment.toml: edit that, re-render.\n"
        f"# {run.kind} serving {run.name} on 127.0.0.1 of this host (network_mode: host).\n"
    )
    return header + yaml.safe_dump({"services": {"engine": service}}, sort_keys=False, width=100)
