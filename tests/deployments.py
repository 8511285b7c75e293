"""The test deployments render is checked on, one per engine, and helpers for their files.

Shared by test_server_setup_render.py, test_server_setup_templates.py and test_gateway.py
(tests import helpers from here, not from each other): :data:`CASES` (engine -> settings,
the files rendered besides the common ones, the GPUs reserved), :func:`deployment` (a case's
settings with every path under a test's tmp_path), :func:`unit_sections` (a systemd unit,
parsed) and :func:`self_signed` (a TLS certificate for the gateway).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from server_setup.settings import Deployment, load

ROOT = Path(__file__).resolve().parent.parent

GPU_AWQ = {"model": "wizard-vicuna-13b", "gpu_mem": "40GiB", "dtype": "awq"}
# engine -> (settings, files rendered besides the common ones, GPUs reserved)
CASES = {
    "vllm": (GPU_AWQ, {"vicuna.jinja"}, 1),
    "vllm-tp2": (
        {"model": "llama-13b", "gpu_mem": "40GiB", "gpus": 2, "dtype": "fp16"},
        {"vicuna.jinja"},
        2,
    ),
    "triton": (
        {**GPU_AWQ, "engine": "triton", "served_model_name": "course-chat"},
        {
            "model_repository/course-chat/config.pbtxt",
            "model_repository/course-chat/1/model.json",
        },
        1,
    ),
    "llamacpp": ({"model": "llama-7b", "ram": "16GiB", "dtype": "Q4_K_M"}, {"Dockerfile"}, 0),
}

GATEWAY = "courselab-gateway.service"
"""The gateway's systemd unit, as render names it."""


def deployment(tmp_path: Path, case: str, **extra) -> Deployment:
    """The settings of ``CASES[case]`` (and ``extra``), with weights, output and state under
    ``tmp_path``."""
    settings, _, _ = CASES[case]
    model_dir = tmp_path / "models" / "weights"
    model_dir.mkdir(parents=True, exist_ok=True)
    overrides = {
        "model_path": str(model_dir),
        "output_dir": str(tmp_path / "deploy"),
        "state_dir": str(tmp_path / "state"),  # never the home directory's
        **settings,
        **extra,
    }
    return load(None, overrides=overrides, environ={})


def unit_sections(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as section -> key -> values (a key may repeat, as ExecStartPre does)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, value = line.split("=", 1)  # a line that is no key=value fails here
        current.setdefault(key, []).append(value)
    return sections


def self_signed(folder: Path) -> dict[str, str]:
    """tls_cert and tls_key settings for a fresh self-signed certificate (openssl's CLI)."""
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.skip("the openssl program is not installed: no certificate to test TLS with")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return {"tls_cert": str(cert), "tls_key": str(key)}
