"""Shared fixtures: the course models (built once, cached), free ports, notebook execution.

The course models live in the course data dir (built by `make models`, or here on first use,
then cached across sessions: rebuilding takes minutes). Everything a test writes goes to a
temp dir; the user's config file is never read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

# Resolve the data dir once, before any test can change the environment, then pin it.
from courselib import settings

_DATA_DIR = settings.data_dir()
os.environ["COURSELAB_DATA_DIR"] = str(_DATA_DIR)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path_factory, monkeypatch):
    """Point the config file at an empty temp location: tests never read ~/.config."""
    monkeypatch.setenv("COURSELAB_CONFIG", str(tmp_path_factory.getbasetemp() / "no-config.toml"))


@pytest.fixture(scope="session")
def course_models() -> dict:
    """Build the course models if they are missing or stale (no-op when `make models` ran)."""
    from courselib.models.build import build_all

    return build_all(data_dir=_DATA_DIR, log=lambda *_: None)


@pytest.fixture(scope="session")
def course_hf(course_models) -> Callable[[str], Path]:
    """``course_hf("course-chat")`` -> the HF checkpoint folder of a built course model."""
    from courselib.models import hf_dir

    return lambda name="course-chat": hf_dir(name, data_dir=_DATA_DIR)


@pytest.fixture(scope="session")
def chat(course_hf) -> Path:
    """course-chat's HF checkpoint folder (the fine-tuning tests, Lab 04)."""
    return course_hf("course-chat")


@pytest.fixture(scope="session")
def tokenizer(chat):
    """course-chat's tokenizer, loaded once per test session."""
    from courselib.finetune.data import load_tokenizer

    return load_tokenizer(chat)


@pytest.fixture(scope="session")
def course_gguf(course_models) -> Callable[..., Path]:
    """``course_gguf("course-chat", "Q4_K_M")`` -> a GGUF file of a built course model."""
    from courselib.models import gguf_file

    return lambda name="course-chat", quant="Q4_K_M": gguf_file(name, quant, data_dir=_DATA_DIR)


@pytest.fixture(scope="session")
def training_llama(tmp_path_factory) -> Path:
    """A random 58M-parameter LLaMA checkpoint (``memory_tiny.TRAINING``), written once per
    session: the training-memory tests (Lab 03, Lab 04) measure their peaks on it."""
    from memory_tiny import TRAINING, save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("training-llama"), **TRAINING)


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    from servers import free_port as pick

    return pick()


@pytest.fixture(scope="module")
def server(tmp_path_factory, course_gguf):
    """``server_setup up`` on course-chat (Q4_K_M) with four students' keys, once per test
    module that asks for it; ``down`` afterwards, which must leave no process behind. A dict:
    url, engine_url, keys (student -> key), engine_key, state, flags, up_stdout."""
    from servers import (
        free_port,
        issue_keys,
        our_processes,
        process_groups,
        require_nginx,
        server_setup_cli,
        up_flags,
    )

    require_nginx()
    state = tmp_path_factory.mktemp("server-state")
    engine_port, gateway_port = free_port(), free_port()
    flags = up_flags(state, engine_port, gateway_port, str(course_gguf("course-chat", "Q4_K_M")))
    up = server_setup_cli("up", *flags)
    process_groups(state)
    try:
        info = issue_keys(state, flags, up.stdout, engine_port, gateway_port)
    except BaseException:
        server_setup_cli("down", *flags)
        raise
    yield info
    server_setup_cli("down", *flags)
    assert our_processes(state) == []


@pytest.fixture
def run_notebook(tmp_path) -> Callable[..., dict]:
    """``run_notebook(path, parameters={...})`` -> the executed notebook (papermill, kernel python3).

    Runs in a temp working directory; a failing cell raises papermill's PapermillExecutionError
    with the cell's traceback.
    """
    import papermill

    def run(path: Path, parameters: dict | None = None, *, timeout_s: int = 600) -> dict:
        out = tmp_path / f"executed-{Path(path).name}"
        return papermill.execute_notebook(
            str(path),
            str(out),
            parameters=parameters or {},
            kernel_name="python3",
            cwd=str(tmp_path),
            progress_bar=False,
            execution_timeout=timeout_s,
        )

    return run
