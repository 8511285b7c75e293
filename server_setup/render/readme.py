"""README.txt of a rendered folder: what each file is, and the steps that start the server."""

from __future__ import annotations

from pathlib import Path

from server_setup.engines import Engine, EngineRun
from server_setup.gateway.nginx import GatewayPaths, gateway_url
from server_setup.plan import Plan
from server_setup.settings import Deployment
from server_setup.templates import render_template

MARK = "Rendered by python -m server_setup render"
"""First words of README.txt: render only replaces a folder that starts with them."""

WHAT = {
    "deployment.toml": "the settings these files came from (re-render after editing it)",
    "compose.yaml": "docker compose: the engine and the gateway (step 2b)",
    "courselab-engine.service": "systemd: the engine, as a throw-away user (step 2a)",
    "courselab-gateway.service": "systemd: nginx with gateway/nginx.conf, after the engine (2a)",
    "courselab-engine.def": "Apptainer: `apptainer build courselab-engine.sif "
    "courselab-engine.def` (in this folder)",
    "serve.sbatch": "Slurm: `sbatch serve.sbatch` (needs courselab-engine.sif here)",
    "gateway/nginx.conf": "the students' door (nginx + njs): keys, rate limit, caps, log",
    "gateway/gateway.js": "the gateway's njs checks (key hash, max_tokens, token counts)",
}
"""What each common file is; the engine describes its own (``Engine.describe``)."""


def readme(files: list[str], *, engine: Engine, run: EngineRun, p: Plan, d: Deployment) -> str:
    """The text, given the rendered files' relative paths.

    Laid out by ``templates/README.txt.j2``; the engine's lines (its files, what the host
    must have installed, its check and notes) come from ``engine``.
    """
    install = d.resolved_install_dir()
    # with TLS the certificate names the host, not 127.0.0.1
    here = "<this host>" if d.tls_cert else "127.0.0.1"
    return render_template(
        "render/README.txt.j2",
        mark=MARK,
        run=run,
        p=p,
        d=d,
        paths=GatewayPaths.of(d, install_dir=Path(install)),
        install=install,
        url=gateway_url(d).replace(d.gateway_host, "<this host>", 1),
        check_url=gateway_url(d).replace(d.gateway_host, here, 1),
        need_gib=f"{p.need_bytes / 2**30:.1f}",
        usable_gib=f"{p.usable_bytes / 2**30:.1f}",
        files=[(f, engine.describe(f) or WHAT[f]) for f in files],
        installed=engine.installed,
        engine_check=engine.readme_check(d, run),
        engine_notes=engine.readme_notes(),
        # off loopback, plain HTTP shows the keys to anyone between student and server
        plain_http_exposed=not d.tls_cert and d.gateway_host != "127.0.0.1",
    )
