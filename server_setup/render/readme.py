"""README.txt of a rendered folder: what each file is, and the steps that start the server."""

from __future__ import annotations

from pathlib import Path

from server_setup.engines import Engine, EngineRun
from server_setup.gateway.nginx import GatewayPaths, gateway_url
from server_setup.plan import Plan
from server_setup.settings import Deployment

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
    """The text, given the rendered files' relative paths."""
    install = d.resolved_install_dir()
    paths = GatewayPaths.of(d, install_dir=Path(install))
    state = paths.state_dir
    url = gateway_url(d).replace(d.gateway_host, "<this host>", 1)
    lines = [
        f"{MARK} from deployment.toml.",
        "",
        f"{run.kind} serves {run.name} ({p.dtype}) on {d.engine_host}:{d.engine_port} only;",
        f"students reach it through the gateway, {url}, with their own keys.",
        f"Plan: {p.need_bytes / 2**30:.1f} GiB needed per device, "
        f"{p.usable_bytes / 2**30:.1f} GiB usable on {p.host.describe()}.",
        f"On the serving host this folder must be at {install} (the files refer to that path),",
        f"the weights at {run.model_path} and the state dir (keys, logs) at {state}.",
        "",
        "Files:",
    ]
    for f in files:
        lines.append(f"  {f:<28} {engine.describe(f) or WHAT[f]}")
    lines += [
        "",
        "1. Keys, on the serving host, as root (nginx's master reads them before its workers",
        "   drop their privileges). No file here holds a key; they live in the state dir:",
        f"     python -m server_setup keys issue roster.csv --state-dir {state} --out keys.csv",
        "   keys.csv (0600) is what you hand out, once; the server keeps only the hashes.",
        f"   The engine's own key, {paths.engine_env} and engine-auth.conf beside it",
        "   (0600; render and keys write it when missing), is known to the engine and the",
        "   gateway alone, so no local user can go around the gateway. New one:",
        f"     python -m server_setup keys engine --rotate --state-dir {state}",
        "   then restart the engine and reload the gateway.",
        "",
        f"2a. systemd: {engine.installed}, and Debian's nginx + njs",
        "    (apt-get install nginx libnginx-mod-http-js):",
        "     cp courselab-engine.service courselab-gateway.service /etc/systemd/system/",
        "     systemctl daemon-reload",
        "     systemctl enable --now courselab-engine courselab-gateway",
        "   `keys issue` and `keys revoke` reload the gateway themselves; after a re-render:",
        "     systemctl restart courselab-engine; systemctl reload courselab-gateway",
        "",
        "2b. docker compose instead (the official nginx image has njs; GPUs: the NVIDIA",
        "    container toolkit):",
        "     docker compose up -d",
        "   after `keys issue` or `keys revoke`: docker compose kill -s HUP gateway",
        "",
        "3. Check, from the serving host, once the engine has loaded:",
    ]
    lines += engine.readme_check(d, run)
    # with TLS the certificate names the host, not 127.0.0.1
    here = "<this host>" if d.tls_cert else "127.0.0.1"
    lines.append(
        f"     python -m server_setup check {gateway_url(d).replace(d.gateway_host, here, 1)}"
        " --key <a student's key>"
    )
    lines += engine.readme_notes()
    if d.tls_cert:
        lines += [
            "",
            f"TLS and HTTP/2 with {d.tls_cert}. After renewing it:",
            "  systemctl reload courselab-gateway (compose: docker compose restart gateway)",
        ]
    elif d.gateway_host != "127.0.0.1":
        lines += [
            "",
            "Plain HTTP: keys travel readable. On a network you do not trust, set tls_cert and",
            "tls_key (the gateway then serves HTTPS and HTTP/2) and re-render.",
        ]
    lines.append("")
    return "\n".join(lines)
