"""README.txt of a rendered folder: what each file is and how to start the engine with it."""

from __future__ import annotations

from server_setup.plan import Plan
from server_setup.render.engine import EngineRun
from server_setup.settings import Deployment

MARK = "Rendered by python -m server_setup render"
"""First words of README.txt: render only replaces a folder that starts with them."""


def readme(files: list[str], *, run: EngineRun, p: Plan, d: Deployment) -> str:
    """The text, given the rendered files' relative paths."""
    install = d.resolved_install_dir()
    what = {
        "deployment.toml": "the settings these files came from (re-render after editing it)",
        "vicuna.jinja": "the Vicuna v1.1 chat template vLLM applies (--chat-template)",
        "compose.yaml": "docker compose: `docker compose up -d` (NVIDIA container toolkit for GPUs)",
        "Dockerfile": "the llama.cpp image compose builds (compiles llama.cpp: minutes)",
        "courselab-engine.service": "systemd unit: copy to /etc/systemd/system/, then "
        "`systemctl daemon-reload && systemctl enable --now courselab-engine`",
        "courselab-engine.def": "Apptainer: `apptainer build courselab-engine.sif "
        "courselab-engine.def` (in this folder)",
        "serve.sbatch": "Slurm: `sbatch serve.sbatch` (needs courselab-engine.sif here)",
        "gateway/nginx.conf": "the students' door (nginx + njs): keys, rate limit, caps, log",
        "gateway/gateway.js": "the gateway's njs checks (key hash, max_tokens, token counts)",
    }
    lines = [
        f"{MARK} from deployment.toml.",
        "",
        f"{run.kind} serves {run.name} ({p.dtype}) on {d.engine_host}:{d.engine_port} only;",
        f"students reach it through the gateway on port {d.gateway_port}.",
        f"Plan: {p.need_bytes / 2**30:.1f} GiB needed per device, "
        f"{p.usable_bytes / 2**30:.1f} GiB usable on {p.host.describe()}.",
        f"On the serving host this folder must be at {install} (the files refer to that path)",
        f"and the weights at {run.model_path}.",
        "",
        "Files:",
    ]
    for f in files:
        if f.startswith("model_repository/"):
            why = "Triton model repository (config.pbtxt: vllm backend; 1/model.json: engine args)"
        else:
            why = what[f]
        lines.append(f"  {f:<28} {why}")
    if run.kind == "triton":
        check = (
            f"curl -s -X POST http://{d.engine_host}:{d.engine_port}/v2/models/{run.name}/generate"
            ' -d \'{"text_input": "USER: Hi ASSISTANT:", "parameters": {"max_tokens": 16}}\''
        )
        lines += ["", "Triton's generate endpoint takes a rendered prompt (no chat template)."]
    else:
        check = f"curl -s http://{d.engine_host}:{d.engine_port}/v1/models"
    lines += ["", "Check from the serving host once it has loaded:", f"  {check}", ""]
    state = d.resolved_state_dir()
    lines += [
        "The gateway (Debian: apt-get install nginx libnginx-mod-http-js):",
        f"  mkdir -p {state}/logs {state}/run {state}/nginx",
        f"  python -m server_setup keys issue roster.csv --state-dir {state} --out keys.csv",
        f"  {d.nginx} -p {state}/nginx -c {install}/gateway/nginx.conf",
        f"Students call http://<this host>:{d.gateway_port}/v1 with their key.",
        "",
    ]
    return "\n".join(lines)
