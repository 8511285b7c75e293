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
from server_setup.templates import render_template

UNIT = "courselab-engine.service"
GATEWAY_UNIT = "courselab-gateway.service"
CACHE = "courselab-engine"
"""CacheDirectory= name: /var/cache/courselab-engine, the one place the engine may write."""

# what nginx's root master needs: chown its temp folders to the workers' user (CHOWN), start
# workers as that user (SETUID, SETGID), signal them (KILL, another user's processes: when
# its channel to them fails, and SIGKILL when a fast stop takes too long), a port under 1024
# such as 443 (NET_BIND_SERVICE). tests/test_gateway.py runs it within exactly these.
GATEWAY_CAPABILITIES = "CAP_CHOWN CAP_KILL CAP_NET_BIND_SERVICE CAP_SETGID CAP_SETUID"


def _exec_line(argv: list[str]) -> str:
    # systemd expands %specifiers and $VARIABLES in ExecStart: keep paths literal
    return shlex.join(argv).replace("%", "%%").replace("$", "$$")


def unit(run: EngineRun, *, install_dir: str) -> str:
    """The unit file's text (laid out by ``templates/courselab-engine.service.j2``)."""
    argv = [run.host_program, *run.argv[1:]]
    # compiled-kernel and Hub caches go under the cache directory instead of $HOME
    env = {**run.env, "HOME": f"%C/{CACHE}", "XDG_CACHE_HOME": f"%C/{CACHE}"}
    return render_template(
        "render/courselab-engine.service.j2",
        run=run,
        exec_start=_exec_line(argv),
        environment=env,
        key_file=_path(run.key_file) if run.key_file else "",
        cache=CACHE,
        read_only=" ".join(dict.fromkeys([run.model_path, install_dir])),
    )


def _path(path: object) -> str:
    """A path in a unit file, with systemd's % specifiers kept literal."""
    return str(path).replace("%", "%%")


def gateway_unit(d: Deployment, *, paths: GatewayPaths) -> str:
    """courselab-gateway.service: nginx with the rendered configuration, after the engine.

    Laid out by ``templates/courselab-gateway.service.j2``.
    """
    return render_template(
        "render/courselab-gateway.service.j2",
        engine_unit=UNIT,
        readme=_path(paths.install_dir / "README.txt"),
        writable=" ".join(_path(p) for p in paths.writable),
        exec_check=_exec_line(paths.argv(d.nginx, "-t", "-q")),
        exec_start=_exec_line(paths.argv(d.nginx)),
        exec_reload=_exec_line(paths.argv(d.nginx, "-s", "reload")),
        capabilities=GATEWAY_CAPABILITIES,
        read_write=" ".join(f"-{_path(p)}" for p in paths.writable),  # "-": may not exist yet
    )
