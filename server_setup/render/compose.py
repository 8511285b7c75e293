"""The engine and the gateway as docker compose services (``compose.yaml``), plus the
llama.cpp image recipe.

Both services use the host's network, so the engine's ``--host 127.0.0.1`` means the host's
loopback: the gateway reaches it and nothing outside does (a published port would need the
engine to bind 0.0.0.0 inside the container), and the gateway listens on ``gateway_host``
of the host itself. GPU engines reserve their GPUs through the NVIDIA container toolkit. The
model and the rendered files are mounted read-only at the same paths as on the host, so the
command lines are the ones systemd and Slurm run, and the gateway's nginx.conf is the one
file for all: the official nginx image keeps njs where Debian does
(/usr/lib/nginx/modules). The engine's key comes from the state dir's ``keys/engine.env``
(``env_file``); the gateway reads the key folder read-only and writes only its logs (pid
and temp files on tmpfs, root file system read-only).

Example (vLLM, abridged)::

    services:
      engine:
        image: vllm/vllm-openai:v0.32.0
        entrypoint: [vllm, serve, /srv/models/m, --served-model-name, course-chat, ...]
        network_mode: host
        env_file: [/var/lib/courselab-server/keys/engine.env]
        volumes: ['/srv/models/m:/srv/models/m:ro', './vicuna.jinja:/opt/deploy/vicuna.jinja:ro']
        deploy: {resources: {reservations: {devices: [{driver: nvidia, count: 1, ...}]}}}
      gateway:
        image: nginx:1.28
        entrypoint: [nginx, -p, /var/lib/courselab-server/nginx, -c, /opt/deploy/gateway/nginx.conf]
        network_mode: host
        volumes: ['./gateway:/opt/deploy/gateway:ro', '/var/lib/courselab-server/keys:...:ro', ...]
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from courselib.errors import MissingDependencyError
from server_setup.engines import EngineRun
from server_setup.gateway.nginx import GatewayPaths
from server_setup.settings import Deployment

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


def gateway_service(d: Deployment, *, paths: GatewayPaths) -> dict[str, Any]:
    """The ``gateway`` service: the official nginx image running the rendered nginx.conf."""
    state = [paths.keys_dir, *paths.writable]
    keys, logs, run, prefix = (str(p) for p in state)
    volumes = [
        f"./gateway:{paths.install_dir / 'gateway'}:ro",
        # the folder, not the files: keys writes them anew (rename), a file mount would keep
        # showing the old one
        f"{keys}:{keys}:ro",
        f"{logs}:{logs}",
    ]
    volumes += [f"{p}:{p}:ro" for p in (d.tls_cert, d.tls_key) if p]
    return {
        "image": d.nginx_image,
        "entrypoint": paths.argv("nginx"),
        "network_mode": "host",
        "depends_on": ["engine"],
        "volumes": volumes,
        "tmpfs": [run, prefix],
        "read_only": True,
        "restart": "on-failure",
        "stop_signal": "SIGQUIT",  # graceful: streams in flight end first
        "security_opt": ["no-new-privileges:true"],
        "cap_drop": ["ALL"],
        # the root master: temp folders for its workers, their user, signals, a port < 1024
        "cap_add": ["CHOWN", "SETUID", "SETGID", "KILL", "NET_BIND_SERVICE"],
    }


def compose_yaml(run: EngineRun, *, install_dir: str, d: Deployment, paths: GatewayPaths) -> str:
    """compose.yaml with two services, ``engine`` and ``gateway``."""
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
    if run.key_file:
        service["env_file"] = [run.key_file]  # read by compose on the host, at `up`
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
        f"# {run.kind} serving {run.name} on 127.0.0.1 of this host (network_mode: host), the\n"
        f"# gateway on {d.gateway_host}:{d.gateway_port}. Keys: python -m server_setup keys "
        "(reload: docker compose kill -s HUP gateway).\n"
    )
    services = {"engine": service, "gateway": gateway_service(d, paths=paths)}
    return header + yaml.safe_dump({"services": services}, sort_keys=False, width=100)
