"""Lab 03 notebook: nbgrader source format, graded tests that can fail, and an end-to-end run.

The graded test cells are run against the solution (must pass) and against plausible wrong
formulas (must fail), each one in the namespace the notebook gives it.
"""

from __future__ import annotations

import math

import pytest
from labcheck import (
    LABS_DIR,
    assert_graded,
    assert_ran_cleanly,
    cell,
    graded_cells_of,
    output_text,
    read_lab,
)

NOTEBOOK = LABS_DIR / "lab03_memory/lab03_memory.ipynb"
SOLUTIONS = {
    "llama-params": "llama_params",
    "bits-per-weight": "bits_per_weight",
    "kv-cache": "kv_cache_bytes",
    "finetune": "finetune_gb",
}


@pytest.fixture(scope="module")
def nb():
    return read_lab(NOTEBOOK)


def test_notebook_is_graded_source(nb) -> None:
    tests = assert_graded(nb, points=8, parameter="MEASURE_MODEL", solutions=list(SOLUTIONS))
    for test in tests:  # literal numbers only: nothing computed by the library
        assert "count_params" not in test and "courselib.memory" not in test
    setup = cell(nb, "imports").source  # the answers are not one import away
    assert "count_params" not in setup and "lora_params" not in setup


def _namespace(nb) -> dict:
    """The student's functions, as the solution cells define them."""
    namespace: dict = {"math": math}
    for grade_id in SOLUTIONS:
        exec(cell(nb, grade_id).source, namespace)
    return namespace


def _grade(nb, grade_id: str, **replace) -> dict[str, bool]:
    """Run every test cell of ``grade_id``; -> which passed (raises if none failed... no: see
    ``_points``). Raises the first AssertionError, as nbgrader would score that cell 0."""
    namespace = {**_namespace(nb), **replace}
    for test in graded_cells_of(nb, grade_id):
        exec(test.source, namespace)
    return namespace


def _points(nb, grade_id: str, **replace) -> float:
    """Points the test cells of ``grade_id`` give, each on its own (nbgrader: all or nothing
    per cell)."""
    total = 0.0
    for test in graded_cells_of(nb, grade_id):
        try:
            exec(test.source, {**_namespace(nb), **replace})
        except AssertionError:
            continue
        total += test.metadata["nbgrader"]["points"]
    return total


@pytest.mark.parametrize("grade_id", list(SOLUTIONS))
def test_graded_tests_pass_on_the_solution(nb, grade_id) -> None:
    _grade(nb, grade_id)


def _no_gqa(hidden, layers, heads, kv_heads, ffn, vocab, tied=False):
    return (
        layers * (4 * hidden * hidden + 3 * hidden * ffn + 2 * hidden) + 2 * vocab * hidden + hidden
    )


def _head_always(hidden, layers, heads, kv_heads, ffn, vocab, tied=False):
    kv = kv_heads * (hidden // heads)
    return (
        layers * (2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * ffn + 2 * hidden)
        + 2 * vocab * hidden
        + hidden
    )


def _no_norms(hidden, layers, heads, kv_heads, ffn, vocab, tied=False):
    kv = kv_heads * (hidden // heads)
    return layers * (2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * ffn) + vocab * hidden * (
        1 if tied else 2
    )


def _bits(nf4, dq):
    table = {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8, "nf4": nf4, "nf4-dq": dq}
    return lambda precision: table[precision]


WRONG = [
    ("llama-params", {"llama_params": _no_gqa}),
    ("llama-params", {"llama_params": _head_always}),
    ("llama-params", {"llama_params": _no_norms}),
    ("bits-per-weight", {"bits_per_weight": _bits(4, 4)}),  # scales forgotten
    ("bits-per-weight", {"bits_per_weight": _bits(4.5, 4.125)}),  # second level forgotten
    (
        "kv-cache",
        {
            "kv_cache_bytes": lambda L, kv, d, n, batch=1, bytes_per_value=2: (
                L * kv * d * bytes_per_value * n * batch
            )
        },
    ),
    (
        "kv-cache",
        {
            "kv_cache_bytes": lambda L, kv, d, n, batch=1, bytes_per_value=2: (
                2 * L * kv * d * 2 * n * batch
            )
        },
    ),
    (
        "kv-cache",
        {
            "kv_cache_bytes": lambda L, kv, d, n, batch=1, bytes_per_value=2: (
                2 * L * kv * d * bytes_per_value * n
            )
        },
    ),
    ("finetune", {"finetune_gb": lambda n, method, lora_params=0: 12 * n / 1e9}),
    (
        "finetune",
        {
            "finetune_gb": lambda n, method, lora_params=0: (
                16 * n / 1e9
                if method == "full"
                else (n * (2 if method == "lora" else 0.5) + 16 * lora_params) / 1e9
            )
        },
    ),
    (
        "finetune",
        {
            "finetune_gb": lambda n, method, lora_params=0: (
                16 * n / 1e9
                if method == "full"
                else (n * (4 if method == "lora" else 0.516) + 16 * lora_params) / 1e9
            )
        },
    ),
]


@pytest.mark.parametrize(("grade_id", "wrong"), WRONG)
def test_graded_tests_reject_wrong_formulas(nb, grade_id, wrong) -> None:
    with pytest.raises(AssertionError):
        _grade(nb, grade_id, **wrong)


@pytest.mark.slow
def test_solution_notebook_runs_end_to_end(run_notebook, course_hf, course_gguf) -> None:
    course_hf("course-chat")  # built before the clock of the run starts
    executed = run_notebook(NOTEBOOK, {"TRAIN_METHODS": ["lora", "qlora"]})
    assert_ran_cleanly(executed)

    def text_of(marker: str) -> str:
        return output_text(executed, marker)

    assert "False" not in text_of('params["same"]')  # the student's counts = courselib's
    assert "27.97 GB" in text_of('"--ctx", "2048"]')  # the CLI in the notebook
    assert "QLoRA r=64:    44.3 GB" in text_of("count_65b = ")
    measured = text_of("measured = error_table(rows)")
    for quantity in ("Q4_K_M", "nf4-dq", "llama.cpp f16, n_ctx=512", "qlora + grad ckpt"):
        assert quantity in measured
    yours = text_of("yours = pd.DataFrame(")
    assert "fp32 weights" in yours and "llama.cpp KV, 512 cells" in yours


def test_a_solution_that_calls_the_library_scores_nothing(nb) -> None:
    def llama_params(hidden, layers, heads, kv_heads, ffn, vocab, tied=False):
        from courselib.memory import count_params  # "one import away"

        config = {"hidden_size": hidden, "num_hidden_layers": layers, "vocab_size": vocab}
        config |= {"num_attention_heads": heads, "num_key_value_heads": kv_heads}
        config |= {"intermediate_size": ffn, "tie_word_embeddings": tied}
        return count_params(config | {"architectures": ["LlamaForCausalLM"]}).total

    assert _points(nb, "llama-params", llama_params=llama_params) == 0
    assert _points(nb, "llama-params") == 3  # the student's own formula: full marks

    def kv_cache_bytes(layers, kv_heads, head_dim, n_ctx, batch=1, bytes_per_value=2):
        from courselib.memory.kv import kv_cache_bytes as library

        return library(None, n_ctx=n_ctx)

    assert _points(nb, "kv-cache", kv_cache_bytes=kv_cache_bytes) == 0


def test_partial_credit_each_test_cell_is_worth_what_it_checks(nb) -> None:
    assert _points(nb, "llama-params", llama_params=_no_gqa) == 2  # LLaMA 1 right, GQA wrong
    batchless = {
        "kv_cache_bytes": lambda L, kv, d, n, batch=1, bytes_per_value=2: (
            2 * L * kv * d * bytes_per_value * n
        )
    }
    assert _points(nb, "kv-cache", **batchless) == 1  # forgets the batch: the options cell
