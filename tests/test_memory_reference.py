"""Every reference figure of docs/facts.md#memory, one table row each.

The figures are what the course material and the papers state; the estimator must reproduce
them from the model shapes alone (or say how they were rounded).
"""

from __future__ import annotations

import pytest

from courselib.errors import CourseError
from courselib.memory import count_params, kv_cache_bytes, load_config, shape_of, weight_bytes
from courselib.memory.precision import BNB_BITS, bits_per_weight, bytes_per_param
from courselib.memory.table import classic_4bit_table, llama_table
from courselib.memory.training import ALL_LINEAR, estimate_training, lora_params

GB = 1e9

# model, exact count (sum of the HF checkpoint's tensors), the figure as usually quoted (1e9)
PARAMS = [
    ("llama-7b", 6_738_415_616, 6.74),
    ("llama-13b", 13_015_864_320, 13.02),
    ("llama-30b", 32_528_943_616, 32.53),
    ("llama-65b", 65_285_660_672, 65.29),
    ("wizard-vicuna-13b", 13_015_864_320, 13.02),
    ("llama-2-7b", 6_738_415_616, 6.74),
    ("llama-2-70b", 68_976_648_192, 68.98),
    ("llama-3-8b", 8_030_261_248, 8.03),
    ("llama-3.2-1b", 1_235_814_400, 1.24),  # tied embeddings: counted once
]


@pytest.mark.parametrize(("model", "exact", "quoted"), PARAMS)
def test_parameter_counts(model, exact, quoted):
    count = count_params(load_config(model))
    assert count.total == exact
    assert round(count.total / 1e9, 2) == quoted


def test_gpt2_counted_exactly_by_its_own_layout():
    gpt2 = {
        "model_type": "gpt2",
        "n_embd": 768,
        "n_layer": 12,
        "n_head": 12,
        "vocab_size": 50257,
        "n_positions": 1024,
    }
    assert count_params(gpt2).total == 124_439_808  # GPT-2 small as transformers reports it


def test_unknown_architecture_is_refused_not_counted_as_llama():
    with pytest.raises(CourseError, match="mystery"):
        count_params({**load_config("llama-7b"), "model_type": "mystery"})


# (model, precision, GB as quoted, tolerance in GB): docs/facts.md#memory
WEIGHTS = [
    ("wizard-vicuna-13b", "fp32", 52.1, 0.05),  # "about 52 GB (13.0e9 x 4 B)", "52.1 GB"
    ("wizard-vicuna-13b", "fp16", 26.0, 0.05),  # "fp16 is 26 GB"
    ("llama-13b", "nf4-dq", 7.5, 0.5),  # "4-bit about 7-8 GB"
    ("llama-13b", "Q4_K_M", 7.5, 0.5),
    ("llama-13b", "Q4_0", 7.5, 0.5),
]


@pytest.mark.parametrize(("model", "precision", "quoted", "tol"), WEIGHTS)
def test_weight_sizes(model, precision, quoted, tol):
    assert (
        abs(weight_bytes(load_config(model), precision=precision, other_dtype="fp16") / GB - quoted)
        <= tol
    )


@pytest.mark.parametrize(
    ("precision", "bits"),
    [
        ("fp32", 32),
        ("fp16", 16),
        ("bf16", 16),
        ("int8", 8),
        ("nf4", 4.5),
        ("fp4", 4.5),
        ("nf4-dq", 4.127),
        ("Q8_0", 8.5),
        ("Q6_K", 6.5625),
        ("Q4_K_M", 4.5),
        ("Q4_0", 4.5),
    ],
)
def test_bits_per_weight(precision, bits):
    assert bits_per_weight(precision) == pytest.approx(bits, abs=5e-4)


def test_double_quantisation_saves_0_373_bits_per_parameter():
    saved = BNB_BITS["nf4"] - BNB_BITS["nf4-dq"]
    assert round(saved, 3) == 0.373  # 32/64 - (8/64 + 32/(64*256)) = 0.5 - 0.127
    assert round(BNB_BITS["nf4-dq"] - 4, 3) == 0.127
    assert round(bytes_per_param("nf4-dq"), 3) == 0.516  # docs/facts.md#memory: 0.516P


def test_llama_13b_kv_cache_at_512_tokens_is_400_mib():
    shape = shape_of(load_config("llama-13b"))
    # 2 x 40 layers x 40 heads x 128 dims x 2 bytes x 512 tokens
    assert kv_cache_bytes(shape, n_ctx=512, dtype="fp16") == 400 * 2**20


def test_kv_cache_scales_with_batch_and_grouped_query_attention():
    l2_70 = shape_of(load_config("llama-2-70b"))  # 8 KV heads for 64 query heads
    l65 = shape_of(load_config("llama-65b"))
    assert kv_cache_bytes(l65, n_ctx=4096) == 8 * kv_cache_bytes(l2_70, n_ctx=4096)
    assert kv_cache_bytes(l2_70, n_ctx=4096, batch=3) == 3 * kv_cache_bytes(l2_70, n_ctx=4096)


# The classic 4-bit table: which entries are rounded, by how much (GB against 0.5 B/param)
CLASSIC = [
    ("llama-7b", 4, 3.37, 0.63),  # rounded UP by 0.63 GB (+19%)
    ("llama-13b", 8, 6.51, 1.49),  # rounded UP by 1.49 GB (+23%)
    ("llama-30b", 16, 16.26, -0.26),  # rounded DOWN by 0.26 GB (-1.6%)
    ("llama-65b", 32, 32.64, -0.64),  # rounded DOWN by 0.64 GB (-2.0%)
]


@pytest.mark.parametrize(("model", "table_gb", "exact_gb", "rounded_by"), CLASSIC)
def test_classic_4bit_table(model, table_gb, exact_gb, rounded_by):
    row = classic_4bit_table().loc[model]
    assert row["table (GB)"] == table_gb
    assert row["4 bits exactly (GB)"] == exact_gb
    assert row["rounded by (GB)"] == rounded_by
    # a real 4-bit file is bigger than 0.5 B/param: the 30B and 65B entries are too small for it
    assert (row["Q4_0 file (GB)"] > table_gb) == (model in ("llama-30b", "llama-65b"))


def test_fp32_needs_8x_the_4bit_table():
    table = llama_table(precisions=("fp32",))
    for model, row in table.iterrows():
        assert row["fp32"] == pytest.approx(
            8 * count_params(load_config(model)).total * 0.5 / GB, abs=0.01
        )


def test_qlora_65b_fits_48_gb_where_16bit_full_finetuning_needs_over_780():
    full = estimate_training("llama-65b", method="full", precision="bf16")
    assert full.total / GB > 780  # 12 B/param: bf16 weights + grads, fp32 Adam m and v
    assert (full.weights + full.gradients + full.optimizer) / GB == pytest.approx(783.4, abs=0.1)
    qlora = estimate_training(
        "llama-65b",
        method="qlora",
        precision="bf16",  # qlora.py: bf16 adapters, embeddings and head
        optimizer="paged-adamw-32bit",
        lora_rank=64,
        lora_targets=ALL_LINEAR,
        batch=1,
        seq_len=512,
        gradient_checkpointing=True,
    )
    assert qlora.total / GB < 48
    assert qlora.trainable_params == 799_539_200  # qlora.py prints half of it for 4-bit models


def test_alpaca_7b_full_finetune_is_16_bytes_per_parameter():
    mixed = estimate_training("llama-7b", method="full", precision="mixed")
    fp32 = estimate_training("llama-7b", method="full", precision="fp32")
    for e in (mixed, fp32):
        assert e.weights + e.gradients + e.optimizer == 16 * 6_738_415_616  # 107.8 GB
    assert 7e9 * 16 / GB == 112  # the quoted ~112 GB is the nominal 7B x 16 B


def test_lora_paper_10000x_fewer_trainable_parameters_for_gpt3():
    gpt3 = {
        "model_type": "gpt2",
        "n_embd": 12288,
        "n_layer": 96,
        "n_head": 96,
        "vocab_size": 50257,
        "n_positions": 2048,
    }
    total = count_params(gpt3).total
    assert round(total / 1e9) == 175
    adapted = 2 * 96 * 4 * (12288 + 12288)  # r=4 on W_q and W_v in every layer
    assert 5_000 < total / adapted < 20_000


def test_lora_parameter_counts():
    count = count_params(load_config("llama-7b"))
    assert lora_params(count, rank=8, targets=("q_proj", "v_proj")) == 4_194_304  # alpaca-lora
    assert lora_params(count, rank=64, targets=ALL_LINEAR) == 64 * 32 * (
        4 * (4096 + 4096) + 3 * (4096 + 11008)
    )
