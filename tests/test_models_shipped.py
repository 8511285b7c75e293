"""The shipped course-chat checkpoint, `make models` from it, and a llama.cpp that runs here.

Every machine runs the same course-chat weights (courselib/data/course-chat): its files match
their sha256 sums, it is the only weights file in git, `models build` publishes it without
training, and llama.cpp generates from its 4-bit file in a child process without dying.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from courselib.errors import CourseError
from courselib.models import COURSE_MODELS, shipped

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_files_match_their_manifest() -> None:
    manifest = shipped.verify()
    files = {p.name for p in shipped.SHIPPED_DIR.iterdir()} - {shipped.MANIFEST}
    assert files == set(manifest["files"])  # nothing unlisted beside them
    assert sum(f["bytes"] for f in manifest["files"].values()) <= shipped.MAX_BYTES
    training = manifest["training"]
    for key in ("seed", "threads", "steps", "gate", "commit", "libraries", "cpu"):
        assert key in training, key
    assert training["gate"][-1]["promises_kept"] == training["gate"][-1]["promises"]
    assert set(manifest["heldout_by_family_q4_k_m"]) >= {"capital", "add", "unknown"}


def test_shipped_checkpoint_was_trained_on_this_corpus() -> None:
    # a change to the corpus, the spec or the training code makes the shipped weights stale:
    # the maintainer retrains and ships (python -m courselib models train course-chat --ship)
    from courselib.models.build import training_inputs_hash

    recorded = shipped.read_manifest()["training"]["training_inputs"]
    assert recorded == training_inputs_hash(COURSE_MODELS["course-chat"])


def test_a_damaged_checkpoint_is_named(tmp_path) -> None:
    copy = tmp_path / "course-chat"
    shutil.copytree(shipped.SHIPPED_DIR, copy)
    with open(copy / "model.safetensors", "r+b") as fh:
        fh.seek(-8, 2)
        fh.write(b"\0" * 8)
    with pytest.raises(CourseError, match="model.safetensors does not match its sha256"):
        shipped.verify(copy)
    shutil.copy(shipped.SHIPPED_DIR / "model.safetensors", copy)
    (copy / "tokenizer.model").unlink()
    with pytest.raises(CourseError, match="tokenizer.model is missing"):
        shipped.verify(copy)


def test_the_shipped_checkpoint_is_the_only_big_file_in_git() -> None:
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True
    ).stdout.split(b"\0")
    names = [n.decode() for n in listed if n]
    if not names:
        pytest.skip("not a git checkout")
    big = [n for n in names if (ROOT / n).is_file() and (ROOT / n).stat().st_size > 2**20]
    allowed = [f"courselib/data/course-chat/{n}" for n in shipped.read_manifest()["files"]]
    assert [n for n in big if n not in allowed] == []
    weights = [n for n in names if n.endswith((".safetensors", ".gguf", ".bin", ".pt"))]
    assert weights == ["courselib/data/course-chat/model.safetensors"]


def test_models_build_publishes_course_chat_without_training(tmp_path, monkeypatch) -> None:
    from courselib.models import build, train

    def no_training(*_a, **_k):
        raise AssertionError("make models must not train")

    monkeypatch.setattr(train, "train_chat_model", no_training)
    manifests = build.build_all(["course-chat"], data_dir=tmp_path, log=lambda *_: None)
    made = manifests["course-chat"]
    assert made["training"]["checkpoint"] == "shipped"
    assert made["training"]["seed"] == shipped.read_manifest()["training"]["seed"]
    assert made["heldout_accuracy_q4_k_m"] >= 0.9
    assert build.is_current(COURSE_MODELS["course-chat"], data_dir=tmp_path)
    # fp32 in the data dir, as every course model (Lab 04 fine-tunes it)
    config = json.loads((tmp_path / "models" / "course-chat" / "hf" / "config.json").read_text())
    assert config["torch_dtype"] == "float32"


def test_a_quantized_model_generates_in_a_child_without_dying(course_gguf) -> None:
    from courselib.gguf.runtime import probe

    for quant in ("Q8_0", "Q4_0", "Q4_K_M"):
        result = probe(course_gguf("course-chat", quant))
        assert result["ok"], result
        assert result["text"].strip()


def test_the_installed_llama_cpp_has_no_amx_kernels() -> None:
    from courselib.gguf.runtime import build_features

    features = build_features()
    assert features.get("AVX2") is True  # the portable baseline
    assert not [name for name, on in features.items() if on and name.startswith("AMX")]


def test_a_signal_in_the_probe_becomes_a_sentence(monkeypatch, tmp_path) -> None:
    # a unit test of the caller (the real child is tested above): SIGILL -> what to do
    from courselib.gguf import runtime

    monkeypatch.setattr(
        runtime.subprocess,
        "run",
        lambda *a, **k: subprocess.CompletedProcess(a, returncode=-4, stdout="", stderr=""),
    )
    result = runtime.probe(tmp_path / "x.gguf")
    assert not result["ok"] and result["signal"] == "SIGILL"
    assert "illegal instruction (SIGILL)" in result["reason"]
    monkeypatch.setenv("COURSELAB_DATA_DIR", str(tmp_path))
    with pytest.raises(CourseError) as info:
        runtime.ensure_llama_runs(tmp_path / "x.gguf")
    assert "Reinstall the course's portable build" in info.value.hint
    assert not list(tmp_path.glob("runtime/*"))  # a failure is never cached


def _doctor(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [sys.executable, "-m", "courselib", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_doctor_passes_here_one_line_per_check(course_models) -> None:
    proc = _doctor("--only", "llama-build", "--only", "llama-generate", "--only", "torch")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:3]] == [
        ["PASS", "llama-build"],
        ["PASS", "llama-generate"],
        ["PASS", "torch"],
    ]
    assert "no AMX" in lines[0] and lines[-1] == "3 of 3 checks passed."


def test_doctor_says_what_to_do_when_a_check_fails(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = _doctor("--only", "data-dir", env={"COURSELAB_DATA_DIR": str(blocker / "data")})
    assert proc.returncode == 1
    assert proc.stdout.startswith("FAIL  data-dir")
    assert "What to do: Point COURSELAB_DATA_DIR" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
