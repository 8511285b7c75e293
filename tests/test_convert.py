"""The HF -> GGUF converter and quantizer on tiny random checkpoints, and every bad input."""

from __future__ import annotations

import errno
import json
import shutil

import numpy as np
import pytest

from courselib.atomic import atomic_path, clean_partials
from courselib.errors import CourseError
from courselib.gguf.convert import convert_hf_to_gguf, permute_qk
from courselib.gguf.quantize import quantize_gguf

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _tiny_checkpoint(path, course_hf, *, heads=4, kv_heads=2, shards=False, bin_format=False):
    """A random 2-layer LLaMA with the course tokenizer, saved like a hub checkpoint."""
    tok_dir = course_hf("course-chat")
    vocab = json.loads((tok_dir / "config.json").read_text())["vocab_size"]
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=128,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config).eval()
    model.save_pretrained(
        str(path), max_shard_size="100KB" if shards else "5GB", safe_serialization=not bin_format
    )
    if bin_format:  # transformers 5 writes only safetensors: make the legacy .bin layout by hand
        for f in path.glob("*.safetensors*"):
            f.unlink()
        torch.save(model.state_dict(), path / "pytorch_model.bin")
    for f in tok_dir.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy2(f, path / f.name)
    return model


def _llama_cpp_logits(gguf, ids):
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(gguf), n_ctx=64, logits_all=True, verbose=False, type_k=0, type_v=0
    )
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)])


@pytest.mark.parametrize(
    "layout",
    [dict(), dict(kv_heads=4), dict(shards=True), dict(bin_format=True)],
    ids=["gqa", "mha", "sharded-safetensors", "pytorch-bin"],
)
def test_converted_logits_match_hf(tmp_path, course_hf, layout):
    model = _tiny_checkpoint(tmp_path / "ckpt", course_hf, **layout)
    if layout.get("shards"):
        assert len(list((tmp_path / "ckpt").glob("*.safetensors"))) > 1
    out = convert_hf_to_gguf(
        tmp_path / "ckpt", tmp_path / "tiny-F32.gguf", out_type="F32", progress=False
    )
    ids = [1, 5, 300, 42, 17, 900, 3]
    with torch.no_grad():
        hf = model(torch.tensor([ids])).logits[0].numpy()
    assert np.abs(hf - _llama_cpp_logits(out, ids)).max() < 1e-3


def test_f16_and_quantized_files_load_and_shrink(tmp_path, course_hf):
    _tiny_checkpoint(tmp_path / "ckpt", course_hf)
    f32 = convert_hf_to_gguf(
        tmp_path / "ckpt", tmp_path / "t-F32.gguf", out_type="F32", progress=False
    )
    f16 = convert_hf_to_gguf(
        tmp_path / "ckpt", tmp_path / "t-F16.gguf", out_type="F16", progress=False
    )
    q8 = quantize_gguf(f32, tmp_path / "t-Q8_0.gguf", quant="Q8_0")
    sizes = [p.stat().st_size for p in (f32, f16, q8)]
    assert sizes[0] > sizes[1] > sizes[2]
    ids = [1, 5, 300, 42]
    assert np.abs(_llama_cpp_logits(f32, ids) - _llama_cpp_logits(f16, ids)).max() < 0.05


def test_permute_qk_interleaves_rotary_halves():
    # one head of dim 4, rows [x0, x1, y0, y1] -> llama.cpp pairs [x0, y0, x1, y1]
    w = np.arange(4, dtype=np.float32).reshape(4, 1)
    assert permute_qk(w, 1).ravel().tolist() == [0.0, 2.0, 1.0, 3.0]


def test_unsupported_architecture_names_what_is_supported(tmp_path):
    (tmp_path / "gpt2").mkdir()
    (tmp_path / "gpt2" / "config.json").write_text(
        json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]})
    )
    with pytest.raises(CourseError, match="'gpt2' model.*supports LLaMA-architecture"):
        convert_hf_to_gguf(tmp_path / "gpt2", tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


@pytest.mark.parametrize(
    "damage, message",
    [
        ("no_dir", "does not exist"),
        ("no_config", "no config.json"),
        ("bad_json", "not valid JSON"),
        ("no_weights", "has no weights"),
        ("truncated", "truncated"),
        ("no_tokenizer", "no tokenizer.model"),
        ("missing_tensor", "missing 1 tensors"),
    ],
)
def test_broken_checkpoints_get_one_clear_error(tmp_path, course_hf, damage, message):
    ckpt = tmp_path / "ckpt"
    _tiny_checkpoint(ckpt, course_hf)
    weights = ckpt / "model.safetensors"
    if damage == "no_dir":
        shutil.rmtree(ckpt)
    elif damage == "no_config":
        (ckpt / "config.json").unlink()
    elif damage == "bad_json":
        (ckpt / "config.json").write_text("{not json")
    elif damage == "no_weights":
        weights.unlink()
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:50_000])
    elif damage == "no_tokenizer":
        (ckpt / "tokenizer.model").unlink()
    elif damage == "missing_tensor":
        from safetensors.torch import load_file, save_file

        state = load_file(str(weights))
        del state["model.layers.1.mlp.up_proj.weight"]
        save_file(state, str(weights))
    with pytest.raises(CourseError, match=message) as info:
        convert_hf_to_gguf(ckpt, tmp_path / "out.gguf", progress=False)
    assert info.value.hint  # every error says what to do
    assert not (tmp_path / "out.gguf").exists()
    assert not list(tmp_path.glob(".partial-*"))


def test_interrupted_write_leaves_no_file(tmp_path):
    target = tmp_path / "model.gguf"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b"GGUF half")
        raise KeyboardInterrupt
    assert not target.exists() and not list(tmp_path.iterdir())


def test_full_disk_is_one_clear_error(tmp_path):
    with pytest.raises(CourseError, match="disk is full") as info, atomic_path(tmp_path / "m.gguf"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert "COURSELAB_DATA_DIR" in info.value.hint
    assert not list(tmp_path.iterdir())


def test_clean_partials_removes_leftovers_of_a_killed_build(tmp_path):
    (tmp_path / ".partial-999999999-course-chat").mkdir()  # no such pid
    (tmp_path / "keep.gguf").write_bytes(b"GGUF")
    assert clean_partials(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep.gguf"]


def test_quantize_rejects_missing_input_and_unknown_type(tmp_path):
    with pytest.raises(CourseError, match="does not exist"):
        quantize_gguf(tmp_path / "nope.gguf", tmp_path / "o.gguf", quant="Q4_0")
    with pytest.raises(CourseError, match="Unknown GGUF file type .Q3_XYZ."):
        quantize_gguf(tmp_path / "nope.gguf", tmp_path / "o.gguf", quant="Q3_XYZ")


def test_quantize_reports_llama_cpp_failure_on_a_non_gguf(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all" * 100)
    with pytest.raises(CourseError, match="could not quantize"):
        quantize_gguf(bad, tmp_path / "o.gguf", quant="Q8_0")
    assert not (tmp_path / "o.gguf").exists()


def _with_old_names(ckpt) -> None:
    """Rewrite a checkpoint's .json files as the first LLaMA conversions wrote them."""
    config = json.loads((ckpt / "config.json").read_text())
    config["architectures"] = ["LLaMAForCausalLM"]
    config["max_sequence_length"] = config.pop("max_position_embeddings")
    del config["model_type"]
    (ckpt / "config.json").write_text(json.dumps(config))
    tokenizer = json.loads((ckpt / "tokenizer_config.json").read_text())
    tokenizer["tokenizer_class"] = "LLaMATokenizer"
    (ckpt / "tokenizer_config.json").write_text(json.dumps(tokenizer))


def test_an_early_llama_checkpoint_converts_with_one_note_per_old_name(tmp_path, course_hf):
    model = _tiny_checkpoint(tmp_path / "ckpt", course_hf, kv_heads=4)
    _with_old_names(tmp_path / "ckpt")
    notes: list[str] = []
    out = convert_hf_to_gguf(
        tmp_path / "ckpt", tmp_path / "old-F32.gguf", out_type="F32", progress=False,
        log=notes.append,
    )  # fmt: skip
    assert notes == [
        "config.json names LLaMAForCausalLM (an early LLaMA conversion): read as LlamaForCausalLM.",
        "tokenizer_config.json names LLaMATokenizer (an early LLaMA conversion): read as "
        "LlamaTokenizer.",
    ]
    from courselib.gguf.read import read_gguf

    assert read_gguf(out).config["max_position_embeddings"] == 128  # max_sequence_length
    ids = [1, 5, 300, 42]
    with torch.no_grad():
        hf = model(torch.tensor([ids])).logits[0].numpy()
    assert np.abs(hf - _llama_cpp_logits(out, ids)).max() < 1e-3


def test_the_transformers_backend_opens_an_early_llama_checkpoint(tmp_path, course_hf):
    from courselib.backends.base import GenerationConfig, Message
    from courselib.backends.transformers_hf import TransformersBackend

    _tiny_checkpoint(tmp_path / "ckpt", course_hf, kv_heads=4)
    _with_old_names(tmp_path / "ckpt")
    notes: list[str] = []
    with TransformersBackend(tmp_path / "ckpt", log=notes.append) as backend:
        assert [n.split(" (")[0] for n in notes] == [
            "config.json names LLaMAForCausalLM",
            "tokenizer_config.json names LLaMATokenizer",
        ]
        assert backend.context_size == 128 and backend.model.config.max_position_embeddings == 128
        reply = list(backend.stream([Message("user", "Hi")], config=GenerationConfig(max_tokens=2)))
        assert backend.generated_tokens == 2 and reply is not None
