"""render's files, byte for byte, against tests/rendered/: what the code rendered before its
configuration files became jinja2 templates and its engines modules (the same output).

tests/rendered/<case>/ holds each case's rendered files with the folder the case ran in
written as ``@BASE@``; gateway.js and vicuna.jinja are copied verbatim and left out. A change
that means to change the output rewrites them: ``COURSELAB_UPDATE_RENDERED=1 pytest`` on this
file, then review the diff like code.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from memory_tiny import TINY, write_tiny_gguf

from server_setup.render import render
from server_setup.settings import load

RENDERED = Path(__file__).parent / "rendered"
VERBATIM = {"gateway.js", "vicuna.jinja"}
TLS = {"tls_cert": "/etc/ssl/course/cert.pem", "tls_key": "/etc/ssl/course/key.pem"}


def cases(base: Path) -> dict[str, dict]:
    weights = str(base / "models" / "weights")
    gguf = str(base / "models" / "tiny-F16.gguf")
    awq = {"model": "wizard-vicuna-13b", "gpu_mem": "40GiB", "dtype": "awq", "model_path": weights}
    triton = {**awq, "engine": "triton", "served_model_name": "course-chat"}
    return {
        "vllm-awq": awq,
        "vllm-awq-tls-burst0": {**awq, **TLS, "gateway_host": "0.0.0.0", "rate_burst": 0},
        "vllm-awq-tls-burst5": {
            **awq,
            **TLS,
            "rate_burst": 5,
            "rate_per_minute": 7,
            "slurm_partition": "gpu",
        },
        "vllm-tp2": {
            "model": "llama-13b",
            "gpu_mem": "40GiB",
            "gpus": 2,
            "dtype": "fp16",
            "model_path": weights,
        },
        "triton": triton,
        "triton-tls-burst0": {**triton, **TLS, "rate_burst": 0},
        "llamacpp-7b": {
            "model": "llama-7b",
            "ram": "16GiB",
            "dtype": "Q4_K_M",
            "model_path": weights,
        },
        "llamacpp-gguf-burst0": {
            "model": gguf,
            "ram": "8GiB",
            "rate_burst": 0,
            "gateway_host": "0.0.0.0",
            "chat_format": "vicuna",
        },
        "llamacpp-gguf-tls": {
            "model": gguf,
            "ram": "8GiB",
            **TLS,
            "rate_burst": 20,
            "max_body_kib": 64,
            "max_tokens": 100,
        },
    }


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("rendered")
    (base / "models" / "weights").mkdir(parents=True)
    write_tiny_gguf(base / "models" / "tiny-F16.gguf", file_type="F16", config=TINY)
    return base


@pytest.mark.parametrize("case", list(cases(Path("/"))))
def test_rendered_files_are_byte_for_byte_what_they_were(base, case):
    settings = cases(base)[case]
    overrides = {"output_dir": str(base / "deploy" / case), "state_dir": str(base / "state" / case)}
    result = render(load(None, overrides={**overrides, **settings}, environ={}))
    assert result.plan.fits
    files = {
        rel: text.replace(str(base), "@BASE@")
        for rel, text in result.files.items()
        if Path(rel).name not in VERBATIM
    }
    folder = RENDERED / case
    if os.environ.get("COURSELAB_UPDATE_RENDERED") == "1":
        for rel, text in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(text.encode("utf-8"))
    kept = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    assert sorted(files) == sorted(kept)  # no file appeared or went away
    changed = [rel for rel, text in files.items() if (folder / rel).read_bytes() != text.encode()]
    assert changed == []
