"""The engine and the gateway as hardened systemd services.

``courselab-engine.service`` runs the engine installed on the host (vLLM or llama-cpp-python
in ``venv``, Triton in ``triton_dir``) as a throw-away user (DynamicUser) that can write
nothing but its cache directory: the model and the rendered files are read-only, /home is
read-only, no privilege can be gained. GPU engines keep /dev (the NVIDIA device nodes); the
CPU engine gets a private /dev. Its API key comes from the state dir's ``keys/engine.env``
(``EnvironmentFile=``, read by systemd as root before the user is dropped).

``courselab-gateway.service`` runs nginx with the rendered ``gateway/nginx.conf`` after the
engine (``Wants=``, not ``Requires=``: while the engine loads or restarts the gateway stays up
and answers 503 with a message). Its master runs as root, as Debian's own nginx service does:
it reads the 0600 key files, then its workers drop to nginx's unprivileged user. It may write
only its logs, pid and temp folders; ``systemctl reload`` re-reads the configuration and the
key map (``keys issue`` and ``keys revoke`` send the same signal themselves).
``systemd-analyze verify`` checks both files (it also wants ExecStart's program to exist).

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

from server_setup.engines import EngineRun
from server_setup.gateway.nginx import GatewayPaths
from server_setup.settings import Deployment

UNIT = "courselab-engine.service"
GATEWAY_UNIT = "courselab-gateway.service"
CACHE = "courselab-engine"
"""CacheDirectory= name: /var/cache/courselab-engine, the one place the engine may write."""
HEADER = "# Rendered by python -m server_setup render from deployment.toml: edit that, re-render."

# what nginx's root master needs: chown its temp folders to the workers' user (CHOWN), start
# workers as that user (SETUID, SETGID), signal them (KILL, another user's processes: when
# its channel to them fails, and SIGKILL when a fast stop takes too long), a port under 1024
# such as 443 (NET_BIND_SERVICE). tests/test_gateway.py runs it within exactly these.
GATEWAY_CAPABILITIES = "CAP_CHOWN CAP_KILL CAP_NET_BIND_SERVICE CAP_SETGID CAP_SETUID"


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
        HEADER,
        "[Unit]",
        f"Description=Class inference server: {run.kind} serving {run.name} on loopback",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=exec",
        f"ExecStart={_exec_line(argv)}",
        *(f"Environment={k}={v}" for k, v in env.items()),
    ]
    if run.key_file:
        # the key as environment variables: /proc/PID/environ is the owner's alone, while
        # every local user can read a command line
        lines.append(f"EnvironmentFile={_path(run.key_file)}")
    lines += [
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


def _path(path: object) -> str:
    """A path in a unit file, with systemd's % specifiers kept literal."""
    return str(path).replace("%", "%%")


def gateway_unit(d: Deployment, *, paths: GatewayPaths) -> str:
    """courselab-gateway.service: nginx with the rendered configuration, after the engine."""
    writable = " ".join(f"-{_path(p)}" for p in paths.writable)  # "-": may not exist yet
    lines = [
        HEADER,
        "[Unit]",
        f"Description=Class gateway: per-student keys and limits in front of {UNIT}",
        f"Documentation=file:{_path(paths.install_dir / 'README.txt')}",
        f"Wants=network-online.target {UNIT}",
        f"After=network-online.target {UNIT}",
        "",
        "[Service]",
        "Type=exec",
        # nginx creates its temp folders but not their parents; "+": outside the sandbox below
        f"ExecStartPre=+/bin/mkdir -p {' '.join(_path(p) for p in paths.writable)}",
        # a broken configuration or a missing key file fails here, with nginx's message
        f"ExecStartPre={_exec_line(paths.argv(d.nginx, '-t', '-q'))}",
        f"ExecStart={_exec_line(paths.argv(d.nginx))}",
        # new workers with the configuration and key map as they are now
        f"ExecReload={_exec_line(paths.argv(d.nginx, '-s', 'reload'))}",
        # graceful stop: streams in flight end first
        "KillSignal=SIGQUIT",
        "KillMode=mixed",
        "TimeoutStopSec=60",
        "Restart=on-failure",
        "RestartSec=5",
        "NoNewPrivileges=yes",
        f"CapabilityBoundingSet={GATEWAY_CAPABILITIES}",
        "ProtectSystem=strict",
        "ProtectHome=read-only",  # read-only, not hidden: state_dir may be under /root
        f"ReadWritePaths={writable}",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectProc=invisible",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)
