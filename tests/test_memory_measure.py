"""Estimates against measurements on tiny random LLaMAs built in tmp (no course model needed).

Every measurement loads a real model in a fresh process (transformers, bitsandbytes, llama.cpp);
the GGUF type rules are checked against llama.cpp's own quantizer.
"""

from __future__ import annotations

import pytest
from memory_tiny import TINY, save_tiny_llama, write_tiny_gguf

from courselib.gguf.mix import tensor_types
from courselib.measure.compare import (
    compare_gguf,
    compare_kv,
    compare_training,
    compare_weights,
    error_table,
)
from courselib.measure.memory import run
from courselib.memory import shape_of

# (name, config): every rule of llama.cpp's quantizer the course meets
SHAPES = {
    "8-layers": {**TINY, "num_hidden_layers": 8},  # use_more_bits picks layers 0, 2, 5, 7
    "odd-rows": {  # rows of 320 and 640: K-quants fall back to Q5_0 / Q8_0
        **TINY,
        "hidden_size": 320,
        "num_attention_heads": 5,
        "num_key_value_heads": 5,
        "intermediate_size": 640,
        "num_hidden_layers": 3,
    },
    "tied": {**TINY, "tie_word_embeddings": True, "num_hidden_layers": 3},  # embedding = head
}


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("hf") / "tiny-llama")


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-F16.gguf", file_type="F16")


def test_weights_at_every_precision_match_the_tensors(tiny_hf):
    rows = compare_weights(tiny_hf, precisions=("fp32", "fp16", "int8", "nf4", "nf4-dq"))
    tensors = [r for r in rows if r.how == "tensor bytes"]
    assert [r.quantity for r in tensors] == ["fp32", "fp16", "int8", "nf4", "nf4-dq"]
    for r in tensors:  # only the 256-byte rotary buffer is not a weight
        assert abs(r.estimate - r.measured) <= 256, r
    footprint = {r.quantity: r for r in rows if r.how == "get_memory_footprint"}
    # the footprint leaves out the absmax blocks: 0.5 bit per quantized weight for plain NF4
    assert footprint["nf4"].measured < footprint["nf4"].estimate and footprint["nf4"].note
    assert footprint["fp16"].measured == footprint["fp16"].estimate + 256


def test_kv_caches_and_compute_buffer_match_llama_cpp(tiny_hf, tiny_gguf):
    rows = {r.quantity: r for r in compare_kv(tiny_hf, tiny_gguf, n_ctx=300, n_tokens=64)}
    # transformers: 2 layers x K,V x 64 tokens x 2 KV heads x 64 dims x 4 bytes
    assert rows["transformers fp32, 64 tokens"].measured == 2 * 2 * 64 * 2 * 64 * 4
    kv = rows["llama.cpp f16, n_ctx=300"]
    assert kv.measured == kv.estimate == 512 * 2 * 2 * 2 * 64 * 2  # rounded up to 512 cells
    assert kv.note == "512 cells"
    compute = rows["compute buffer, n_ctx=300"]
    assert abs(compute.error) < 0.01
    rss = rows["load + 299-token prompt, tiny-F16.gguf"]
    assert abs(rss.error) < 0.25  # a 3 MB model: llama.cpp's fixed few MB dominate


@pytest.mark.parametrize("shape", list(SHAPES))
def test_llama_cpp_quantizer_picks_the_predicted_types(tmp_path, shape):
    from courselib.gguf.quantize import quantize_gguf

    config = SHAPES[shape]
    src = write_tiny_gguf(tmp_path / "m-F32.gguf", file_type="F32", config=config)
    files = {
        q: quantize_gguf(src, tmp_path / f"m-{q}.gguf", quant=q)
        for q in ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0")
    }
    import gguf

    for quant, path in files.items():
        real = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
        assert real == tensor_types(shape_of(config), quant), (shape, quant)
    for row in compare_gguf(files):
        assert row.note == "" and abs(row.error) < 0.01, row


# file types the class server's plan offers beyond the course's own (no importance matrix)
MORE_TYPES = (
    "Q2_K",
    "Q3_K_S",
    "Q3_K_M",
    "Q3_K_L",
    "Q4_K_S",
    "Q5_K_S",
    "IQ3_S",
    "IQ3_M",
    "IQ4_NL",
    "IQ4_XS",
)
GQA4 = {**TINY, "num_hidden_layers": 16, "num_attention_heads": 8, "num_key_value_heads": 2}


@pytest.mark.parametrize("shape", [*SHAPES, "gqa4-16-layers"])
def test_llama_cpp_quantizer_picks_the_predicted_types_of_low_bit_mixes(tmp_path, shape):
    from courselib.gguf.quantize import quantize_gguf

    config = SHAPES.get(shape, GQA4)  # GQA4: 4 query heads per KV head, n/16 = 1 layer
    src = write_tiny_gguf(tmp_path / "m-F32.gguf", file_type="F32", config=config)
    import gguf

    for quant in MORE_TYPES:
        path = quantize_gguf(src, tmp_path / f"m-{quant}.gguf", quant=quant)
        real = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
        assert real == tensor_types(shape_of(config), quant), (shape, quant)


@pytest.mark.slow
def test_training_step_peaks_match_estimates(training_llama):
    # 58M parameters (memory_tiny.TRAINING): fixed costs are a few % of full's and LoRA's peaks
    table = error_table(compare_training(training_llama, batch=2, seq_len=128))
    # full and LoRA within 10%. QLoRA's peak here is ~100 MiB, of which 20-25 MiB are fixed
    # costs that vary from run to run: this test bounds it at 25%; bench_memory checks 10% on
    # course-bench, where the model dominates.
    assert table["within 10%"].iloc[:2].all(), table.to_string()
    assert abs(table["error %"].iloc[2]) < 25, table.to_string()
    full, lora, qlora = table["measured"]
    assert full > 2 * lora > 2 * qlora  # what the methods are for


def test_measurements_are_free_of_the_parent_process(tiny_hf):
    # the parent holds 300 MB; a child's ru_maxrss would inherit it, its VmHWM does not
    ballast = bytearray(300_000_000)
    ballast[::4096] = b"\1" * len(ballast[::4096])
    measured = run("hf_weights", model_dir=str(tiny_hf), precision="fp32")
    assert measured["rss_added"] < 50_000_000
