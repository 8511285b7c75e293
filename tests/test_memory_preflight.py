"""Preflight: estimate_load_bytes / check_fits on a tiny GGUF and a tiny HF checkpoint in tmp."""

from __future__ import annotations

import json

import pytest
from memory_tiny import TINY, save_tiny_llama, write_tiny_gguf

from courselib.errors import CourseError
from courselib.gguf.read import read_gguf
from courselib.memory import count_params, kv_cache_bytes, shape_of
from courselib.memory.estimate import llama_cpp_overhead_bytes
from courselib.memory.preflight import check_fits, estimate_load_bytes


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("hf") / "tiny-llama")


@pytest.mark.parametrize("file_type", ["F32", "F16", "Q8_0"])
def test_gguf_estimate_is_header_tensors_plus_kv_plus_compute(tmp_path, file_type):
    path = write_tiny_gguf(tmp_path / f"tiny-{file_type}.gguf", file_type=file_type)
    info = read_gguf(path)
    shape = shape_of(info.config)
    assert info.config["num_key_value_heads"] == 2 and info.config["vocab_size"] == 320
    assert info.file_type == file_type
    # 512 cells x 2 layers x (K + V) x 2 KV heads x 64 dims x 2 bytes (f16)
    kv = 512 * 2 * 2 * 2 * 64 * 2
    assert kv_cache_bytes(shape, n_ctx=512) == kv
    expected = info.tensor_bytes + kv + llama_cpp_overhead_bytes(shape, n_ctx=512)
    assert estimate_load_bytes(path, n_ctx=512) == expected


def test_gguf_kv_rounds_up_to_llama_cpp_cells_and_scales_with_batch(tmp_path):
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    base = estimate_load_bytes(path, n_ctx=256)
    # 300 tokens -> 512 cells: 256 more cells x 1024 bytes per token (2 x 2 x 2 x 64 x 2)
    grown = estimate_load_bytes(path, n_ctx=300)
    compute_delta = llama_cpp_overhead_bytes(
        shape_of(read_gguf(path).config), n_ctx=300
    ) - llama_cpp_overhead_bytes(shape_of(read_gguf(path).config), n_ctx=256)
    assert grown - base == 256 * 1024 + compute_delta
    assert estimate_load_bytes(path, n_ctx=256, batch=2) - base == 256 * 1024


def test_hf_checkpoint_uses_exact_params_times_dtype(tiny_hf):
    import torch
    from safetensors.torch import load_file

    from courselib.memory import estimate_inference

    config = json.loads((tiny_hf / "config.json").read_text())
    params = count_params(config).total
    stored = load_file(tiny_hf / "model.safetensors")
    assert params == sum(t.numel() for t in stored.values())
    assert stored["lm_head.weight"].dtype == torch.float32  # config dtype float32 -> 4 B/param
    for dtype, width in ((None, 4), ("fp16", 2)):
        e = estimate_inference(config, precision=dtype, n_ctx=128)
        assert e.weights == width * params
        assert estimate_load_bytes(tiny_hf, n_ctx=128, dtype=dtype) == e.total > e.weights


def test_check_fits_returns_estimate_or_raises_course_error(tiny_hf, tmp_path):
    gguf_path = write_tiny_gguf(tmp_path / "tiny.gguf")
    need = estimate_load_bytes(gguf_path, n_ctx=512)
    assert check_fits(gguf_path, n_ctx=512, available_bytes=need) == need
    with pytest.raises(CourseError) as err:
        check_fits(gguf_path, n_ctx=512, available_bytes=need - 1, where="GPU memory")
    assert "tiny.gguf needs about" in err.value.message
    assert "n_ctx=512" in err.value.message and "GPU memory" in err.value.message
    assert "Q4_K_M" in err.value.hint
    # default: what psutil says is free; a tiny model always fits
    assert check_fits(tiny_hf) == estimate_load_bytes(tiny_hf)


def test_wizard_vicuna_fp32_does_not_fit_48_gb(tmp_path):
    # the real checkpoint's config.json: LLaMA-13B shape stored in fp32 (52 GB of weights)
    from courselib.memory import load_config

    ckpt = tmp_path / "wizard-vicuna-13b"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps(load_config("wizard-vicuna-13b")))
    with pytest.raises(CourseError, match=r"needs about 5\d\.\d GB .* only 48\.0 GB of GPU"):
        check_fits(ckpt, available_bytes=48 * 10**9, where="GPU memory")
    assert check_fits(ckpt, dtype="fp16", available_bytes=48 * 10**9) < 30e9


def test_bnb_quantization_config_is_honoured(tmp_path):
    ckpt = tmp_path / "q"
    ckpt.mkdir()
    config = {
        **TINY,
        "quantization_config": {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_use_double_quant": True,
        },
    }
    (ckpt / "config.json").write_text(json.dumps(config))
    assert estimate_load_bytes(ckpt) == estimate_load_bytes(ckpt, dtype="nf4-dq")
    assert estimate_load_bytes(ckpt) < estimate_load_bytes(ckpt, dtype="fp16")


def test_missing_or_broken_files_say_what_to_do(tmp_path):
    with pytest.raises(CourseError, match="does not exist"):
        estimate_load_bytes(tmp_path / "nope.gguf")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(CourseError, match="not a GGUF file"):
        estimate_load_bytes(bad)
    with pytest.raises(CourseError, match="does not exist"):
        estimate_load_bytes(tmp_path)  # a folder without config.json
