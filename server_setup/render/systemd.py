"""The engine as a hardened systemd service (``courselab-engine.service``).

It runs the engine installed on the host (vLLM or llama-cpp-python in ``venv``, Triton in
``triton_dir``) as a throw-away user (DynamicUser) that can write nothing but its cache
directory: the model and the rendered files are read-only, /home is read-only, no privilege
can be gained. GPU engines keep /dev (the NVIDIA device nodes); the CPU engine gets a private
/dev. ``systemd-analyze verify`` checks the file (it also wants ExecStart's program to exist).

Example (abridged)::

    [Service]
    ExecStart=/opt/courselab/venv/bin/vllm serve /srv/models/m --served-model-name course-chat ...
    DynamicUser=yes
    NoNewPrivileges=yes
    ProtectSystem=strict
    ReadOnlyPaths=/srv/models/m /opt/deploy
    Restart=on-failure
"""

from __future__ import annotations

import shlex

from server_setup.render.engine import EngineRun

UNIT = "courselab-engine.service"
CACHE = "courselab-engine"
"""CacheDirectory= name: /var/cache/courselab-engine, the one place the engine may write."""


def _exec_line(argv: list[str]) -> str:
    # systemd expands %specifiers and $VARIABLES in ExecStart: keep paths literal
    return shlex.join(argv).replace("%", "%%").replace("$", "$$")


def unit(run: EngineRun, *, install_dir: str) -> str:
    """The unit file's text."""
    argv = [run.host_program, *run.argv[1:]]
    # compiled-kernel and Hub caches go under the cache directory instead of $HOME
    env = {**run.env, "HOME": f"%C/{CACHE}", "XDG_CACHE_HOME": f"%C/{CACHE}"}
    read_only = " ".join(dict.fromkeys([run.model_path, install_dir]))
    lines = [
        "# Rendered by python -m server_setup render from deployment.toml: edit that, re-render.",
        "[Unit]",
        f"Description=Class inference server: {run.kind} serving {run.name} on loopback",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={_exec_line(argv)}",
        *(f"Environment={k}={v}" for k, v in env.items()),
        "DynamicUser=yes",
        f"CacheDirectory={CACHE}",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        # explicit, so the weights stay read-only even if ProtectSystem is relaxed later
        f"ReadOnlyPaths={read_only}",
        "PrivateTmp=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
    ]
    if not run.gpus:
        lines.append("PrivateDevices=yes")  # a GPU engine needs /dev/nvidia*
    lines += [
        "Restart=on-failure",
        "RestartSec=10",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)
