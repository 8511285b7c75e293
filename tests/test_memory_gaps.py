"""What the class server's `plan` needs from the estimator, each against a published figure.

- GGUF file types: llama.cpp's quantize table for Llama-3.1-8B (tools/quantize/README.md:
  bits per weight to 4 decimals, size in GiB), every type including Q2_K, Q3_K_* and IQ*.
- AWQ / GPTQ 4-bit, group size 128: TheBloke's Llama-2-13B-GPTQ "main" branch (4 bit, 128g,
  AutoGPTQ): 7.26 GB.
- Parameter counts of other architectures (the numbers their model cards and papers give).
- 16-bit AdamW states: accelerate's "training using Adam" for fp16 is 4 x the fp16 model
  (8 bytes per parameter).

Configs are the published config.json values, written inline (nothing is downloaded).
"""

from __future__ import annotations

import pytest

from courselib.errors import CourseError
from courselib.gguf.mix import file_tensor_bytes, tensor_type_counts, tensor_types
from courselib.memory import count_params, estimate_inference, load_config, shape_of, weight_bytes
from courselib.memory.configs import legacy_notes
from courselib.memory.precision import bits_per_weight, kind, normalize
from courselib.memory.training import estimate_training
from courselib.memory.weights import group_quant_matrix_bytes

GiB = 2**30

# Llama-3.1-8B has Llama-3-8B's shape (8,030,261,248 parameters): (type, bits/weight, GiB)
LLAMA31_8B_TABLE = [
    ("IQ1_S", 2.0042, 1.87),
    ("IQ1_M", 2.1460, 2.01),
    ("IQ2_XXS", 2.3824, 2.23),
    ("IQ2_XS", 2.5882, 2.42),
    ("IQ2_S", 2.7403, 2.56),
    ("IQ2_M", 2.9294, 2.74),
    ("IQ3_XXS", 3.2548, 3.04),
    ("IQ3_XS", 3.4977, 3.27),
    ("IQ3_S", 3.6606, 3.42),
    ("IQ3_M", 3.7628, 3.52),
    ("IQ4_XS", 4.4597, 4.17),
    ("IQ4_NL", 4.6818, 4.38),
    ("Q2_K_S", 2.9697, 2.78),
    ("Q2_K", 3.1593, 2.95),
    ("Q3_K_S", 3.6429, 3.41),
    ("Q3_K_L", 4.2979, 4.02),
    ("Q4_K_S", 4.6672, 4.36),
    ("Q4_K_M", 4.8944, 4.58),
    ("Q5_K_S", 5.5704, 5.21),
    ("Q5_K_M", 5.7036, 5.33),
    ("Q6_K", 6.5633, 6.14),
    ("Q8_0", 8.5008, 7.95),
    ("F16", 16.0005, 14.96),
]


@pytest.mark.parametrize(("file_type", "bpw", "gib"), LLAMA31_8B_TABLE)
def test_gguf_sizes_match_llamacpp_quantize_table(file_type, bpw, gib):
    config = load_config("llama-3-8b")
    tensor_bytes = file_tensor_bytes(shape_of(config), file_type)
    assert tensor_bytes * 8 / count_params(config).total == pytest.approx(bpw, abs=1e-4)
    assert round(tensor_bytes / GiB, 2) == pytest.approx(gib, abs=0.01)
    # the estimator's weights are the same replay (one formula)
    assert weight_bytes(config, precision=file_type) == tensor_bytes


def test_iq4_xs_is_a_mix_not_one_plain_type():
    shape = shape_of(load_config("llama-3-8b"))
    types = tensor_types(shape, "IQ4_XS")
    assert types["output.weight"] == "Q6_K"
    assert types["blk.0.attn_v.weight"] == "Q5_K"  # 4 query heads per KV head
    assert types["blk.3.ffn_down.weight"] == "Q5_K" and types["blk.4.ffn_down.weight"] == "IQ4_XS"
    plain = (count_params(load_config("llama-3-8b")).total * bits_per_weight("IQ4_XS")) / 8
    assert round(plain / GiB, 2) == 3.97  # what counting it as one plain type said
    assert round(file_tensor_bytes(shape, "IQ4_XS") / GiB, 2) == 4.17


def test_q3_k_m_follows_llamacpp_rules():
    shape = shape_of(load_config("llama-13b"))  # 40 layers, no grouped-query attention
    counts = tensor_type_counts(shape, "Q3_K_M")
    # attn_v: Q5_K in the first 2 layers, else Q4_K; ffn_down: Q5_K in the first 40/16 = 2
    # layers, else Q4_K; attn_output Q4_K; output Q6_K; the rest Q3_K; norms F32
    assert counts == {"Q5_K": 4, "Q4_K": 38 + 38 + 40, "Q6_K": 1, "Q3_K": 1 + 4 * 40, "F32": 81}


def test_mixtral_gguf_keeps_attention_in_q8_0():
    mixtral = {**MIXTRAL, "model_type": "mixtral"}
    types = tensor_types(shape_of(mixtral), "Q4_K_M")
    assert types["blk.0.attn_v.weight"] == types["blk.0.attn_k.weight"] == "Q8_0"
    assert types["blk.0.ffn_gate_inp.weight"] == "F32"  # the router is never quantized


def test_gguf_of_another_layout_is_refused():
    with pytest.raises(CourseError, match="LLaMA-layout"):
        weight_bytes(OPT_13B, precision="Q4_K_M")


# --- AWQ / GPTQ ------------------------------------------------------------------------------


def test_gptq_4bit_128g_matches_published_13b_file():
    config = load_config("llama-2-13b")
    assert round(weight_bytes(config, precision="gptq") / 1e9, 2) == 7.26  # TheBloke main
    # AWQ stores the same per group (fp16 scale + 4-bit zero) without GPTQ's g_idx
    g_idx = 4 * sum(lin.in_features * lin.count for lin in count_params(config).linears)
    assert weight_bytes(config, precision="gptq") - weight_bytes(config, precision="awq") == g_idx


def test_group_quant_bytes_per_group_are_counted():
    # 4096 x 4096: 32 groups per column; 0.5 B per weight + 2 B scale + 0.5 B zero per group
    assert group_quant_matrix_bytes(4096, 4096, precision="awq") == 8388608 + 262144 + 65536
    assert bits_per_weight("awq") == bits_per_weight("gptq") == 4 + 20 / 128
    assert kind("AWQ") == "group" and normalize("gptq-4bit") == "gptq"


def test_awq_is_served_by_vllm_in_fp16():
    e = estimate_inference("llama-13b", precision="awq", n_ctx=2048, batch=16)
    assert e.method == "inference (vllm)"
    # KV cache in fp16: 16 x 2048 tokens x 800 KiB (2 x 40 layers x 5120 x 2 B)
    assert e.kv_cache == 16 * 2048 * 2 * 40 * 5120 * 2


# --- GGUF float types stay GGUF ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "engine"),
    [
        ("F16", "llama.cpp"),
        ("BF16", "llama.cpp"),
        ("F32", "llama.cpp"),
        ("fp16", "transformers"),
        ("f16", "transformers"),
        ("bf16", "transformers"),
    ],
)
def test_gguf_float_types_stay_on_llamacpp(asked, engine):
    e = estimate_inference("llama-7b", precision=asked, n_ctx=512)
    assert e.method == f"inference ({engine})"


def test_gguf_f16_keeps_norms_in_f32():
    config = load_config("llama-7b")
    norms = count_params(config).norms
    assert (
        weight_bytes(config, precision="F16") - weight_bytes(config, precision="fp16") == 2 * norms
    )


# --- 16-bit optimizer states -------------------------------------------------------------------


def test_adamw_with_bf16_states_is_8_bytes_per_parameter():
    p = count_params(load_config("llama-7b")).total
    e = estimate_training("llama-7b", method="full", precision="bf16", optimizer_dtype="bf16")
    assert e.weights + e.gradients + e.optimizer == 8 * p  # accelerate: 4 x the fp16 model
    default = estimate_training("llama-7b", method="full", precision="bf16")
    assert default.weights + default.gradients + default.optimizer == 12 * p  # unchanged


def test_16bit_states_do_not_apply_to_8bit_optimizers():
    with pytest.raises(CourseError, match="adamw-8bit"):
        estimate_training("llama-7b", optimizer="adamw-8bit", optimizer_dtype="bf16")


# --- architectures -----------------------------------------------------------------------------

OPT_13B = {
    "model_type": "opt",
    "architectures": ["OPTForCausalLM"],
    "hidden_size": 5120,
    "num_hidden_layers": 40,
    "num_attention_heads": 40,
    "ffn_dim": 20480,
    "vocab_size": 50272,
    "max_position_embeddings": 2048,
    "word_embed_proj_dim": 5120,
    "do_layer_norm_before": True,
    "torch_dtype": "float16",
}
OPT_350M = {
    **OPT_13B,
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "ffn_dim": 4096,
    "word_embed_proj_dim": 512,  # projected embeddings, post-LayerNorm, no final norm
    "do_layer_norm_before": False,
}
MIXTRAL = {
    "model_type": "mixtral",
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "vocab_size": 32000,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "tie_word_embeddings": False,
}
MISTRAL_7B = {**MIXTRAL, "model_type": "mistral", "num_local_experts": None}
QWEN2_7B = {
    "model_type": "qwen2",
    "hidden_size": 3584,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "intermediate_size": 18944,
    "vocab_size": 152064,
    "tie_word_embeddings": False,
}
GEMMA_7B = {  # no tie_word_embeddings key: GemmaConfig ties by default
    "model_type": "gemma",
    "hidden_size": 3072,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "head_dim": 256,
    "intermediate_size": 24576,
    "vocab_size": 256000,
}
GPT_NEOX_20B = {
    "model_type": "gpt_neox",
    "hidden_size": 6144,
    "num_hidden_layers": 44,
    "num_attention_heads": 64,
    "intermediate_size": 24576,
    "vocab_size": 50432,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
}

# (config, exact count, the figure as published, its precision)
ARCHITECTURES = [
    pytest.param(OPT_13B, 12_853_473_280, 12.85, 2, id="opt-13b"),
    pytest.param(OPT_350M, 331_196_416, 0.331, 3, id="opt-350m"),
    pytest.param(MIXTRAL, 46_702_792_704, 46.7, 1, id="mixtral-8x7b"),
    pytest.param(MISTRAL_7B, 7_241_732_096, 7.24, 2, id="mistral-7b"),
    pytest.param(QWEN2_7B, 7_615_616_512, 7.62, 2, id="qwen2-7b"),
    pytest.param(GEMMA_7B, 8_537_680_896, 8.54, 2, id="gemma-7b"),
    pytest.param(GPT_NEOX_20B, 20_554_567_680, 20.55, 2, id="gpt-neox-20b"),  # the paper's count
]


@pytest.mark.parametrize(("config", "exact", "published", "digits"), ARCHITECTURES)
def test_other_architectures_are_counted_from_their_own_fields(config, exact, published, digits):
    total = count_params(config).total
    assert total == exact
    assert round(total / 1e9, digits) == published


def test_opt_13b_is_not_counted_as_a_gated_mlp_any_more():
    # a LLaMA-style count (gate + up + down, untied head) said 17.04e9
    assert round(count_params(OPT_13B).total / 1e9, 2) != 17.04
    assert shape_of(OPT_13B).tied  # OPT ties its head to the embedding by default


def test_unknown_model_type_is_refused_with_what_is_supported():
    with pytest.raises(CourseError, match="'falcon'") as err:
        count_params({**QWEN2_7B, "model_type": "falcon"})
    assert "opt" in err.value.hint and "mixtral" in err.value.hint


# --- old checkpoints ---------------------------------------------------------------------------

EARLY_LLAMA_7B = {  # an early conversion: LLaMA* class names, max_sequence_length
    "architectures": ["LLaMAForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "max_sequence_length": 2048,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "vocab_size": 32000,
    "torch_dtype": "float16",
}


def test_early_llama_names_are_read_as_llama_with_a_note():
    assert count_params(EARLY_LLAMA_7B).total == 6_738_415_616
    notes = legacy_notes(EARLY_LLAMA_7B, {"tokenizer_class": "LLaMATokenizer"})
    assert len(notes) == 2 and "LlamaForCausalLM" in notes[0] and "LlamaTokenizer" in notes[1]
    e = estimate_inference(EARLY_LLAMA_7B, precision="fp16", n_ctx=512)
    assert any("LLaMAForCausalLM" in n for n in e.notes)
    assert legacy_notes(load_config("llama-7b")) == []
