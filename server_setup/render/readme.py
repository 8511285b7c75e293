"""README.txt of a rendered folder: what each file is, and the steps that start the server."""

from __future__ import annotations

from pathlib import Path

from server_setup.gateway.nginx import GatewayPaths, gateway_url
from server_setup.plan import Plan
from server_setup.render.engine import EngineRun
from server_setup.settings import Deployment

MARK = "Rendered by python -m server_setup render"
"""First words of README.txt: render only replaces a folder that starts with them."""

WHAT = {
    "deployment.toml": "the settings these files came from (re-render after editing it)",
    "vicuna.jinja": "the Vicuna v1.1 chat template vLLM applies (--chat-template)",
    "compose.yaml": "docker compose: the engine and the gateway (step 2b)",
    "Dockerfile": "the llama.cpp image compose builds (compiles llama.cpp: minutes)",
    "courselab-engine.service": "systemd: the engine, as a throw-away user (step 2a)",
    "courselab-gateway.service": "systemd: nginx with gateway/nginx.conf, after the engine (2a)",
    "courselab-engine.def": "Apptainer: `apptainer build courselab-engine.sif "
    "courselab-engine.def` (in this folder)",
    "serve.sbatch": "Slurm: `sbatch serve.sbatch` (needs courselab-engine.sif here)",
    "gateway/nginx.conf": "the students' door (nginx + njs): keys, rate limit, caps, log",
    "gateway/gateway.js": "the gateway's njs checks (key hash, max_tokens, token counts)",
}

INSTALLED = {
    "vllm": "vLLM installed in venv",
    "triton": "Triton installed in triton_dir",
    "llamacpp": "llama-cpp-python[server] installed in venv",
}


def readme(files: list[str], *, run: EngineRun, p: Plan, d: Deployment) -> str:
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
        if f.startswith("model_repository/"):
            why = "Triton model repository (config.pbtxt: vllm backend; 1/model.json: engine args)"
        else:
            why = WHAT[f]
        lines.append(f"  {f:<28} {why}")
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
        f"2a. systemd: {INSTALLED[run.kind]}, and Debian's nginx + njs",
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
    if run.kind == "triton":
        lines.append(
            f"     curl -s -X POST http://{d.engine_host}:{d.engine_port}/v2/models/{run.name}"
            '/generate -d \'{"text_input": "USER: Hi ASSISTANT:", '
            '"parameters": {"max_tokens": 16}}\''
        )
    else:
        lines.append(
            f"     curl -s http://{d.engine_host}:{d.engine_port}/v1/models"
            "          # 401: the engine wants its key"
        )
    # with TLS the certificate names the host, not 127.0.0.1
    here = "<this host>" if d.tls_cert else "127.0.0.1"
    lines.append(
        f"     python -m server_setup check {gateway_url(d).replace(d.gateway_host, here, 1)}"
        " --key <a student's key>"
    )
    if run.kind == "triton":
        lines += [
            "   Triton's generate endpoint takes a rendered prompt (no chat template). Triton",
            "   takes no key from a file (only --http-restricted-api, on its command line, which",
            "   any local user can read with ps): its loopback port is open to the users of this",
            "   host, so keep untrusted users off it.",
        ]
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
