"""Lab 04 notebook: nbgrader source format, graded tests that can fail, and an end-to-end run
(LoRA and QLoRA on course-chat, the memory rows, merge, GGUF export and the chat window).

The graded tests are taken from the notebook itself and run against the solution (must pass)
and against plausible wrong answers (must fail): a test that cannot fail grades nothing.
"""

from __future__ import annotations

import pytest
from labcheck import (
    LABS_DIR,
    assert_graded,
    assert_ran_cleanly,
    cell,
    full_points,
    output_text,
    points_passed,
    read_lab,
    solution,
)

NOTEBOOK = LABS_DIR / "lab04_finetune/lab04_finetune.ipynb"
SOLUTIONS = {
    "lora-trainable": "lora_trainable",
    "linear-targets": "linear_targets",
    "loss-labels": "loss_labels",
}


@pytest.fixture(scope="module")
def nb():
    return read_lab(NOTEBOOK)


def _points(nb, grade_id: str, answer) -> float:
    """Points of the test cells of ``grade_id`` that pass with ``answer`` as the solution."""
    return points_passed(nb, grade_id, {SOLUTIONS[grade_id]: answer})


def test_notebook_is_graded_source(nb) -> None:
    tests = assert_graded(nb, points=7, parameter="TRAIN_STEPS", solutions=list(SOLUTIONS))
    for test in tests:  # literal numbers only: nothing computed by the library
        assert "courselib.memory" not in test and "courselib.finetune" not in test
    setup = cell(nb, "imports").source  # the answers are not one import away
    assert "lora_params" not in setup and "encode_dialogue" not in setup


@pytest.mark.parametrize("grade_id", list(SOLUTIONS))
def test_graded_tests_pass_on_the_solution(nb, grade_id) -> None:
    assert (
        _points(nb, grade_id, solution(nb, grade_id, SOLUTIONS[grade_id]))
        == full_points(nb, grade_id)
        > 0
    )


# ---- plausible wrong answers, each must lose the points of what it gets wrong --------------


def _lora(kv_like_q=False, layers_once=False, a_only=False, full_matrix=False):
    def lora_trainable(hidden, layers, heads, kv_heads, ffn, *, rank, targets):
        kv = hidden if kv_like_q else kv_heads * (hidden // heads)
        shapes = {
            "q_proj": (hidden, hidden),
            "k_proj": (hidden, kv),
            "v_proj": (hidden, kv),
            "o_proj": (hidden, hidden),
            "gate_proj": (hidden, ffn),
            "up_proj": (hidden, ffn),
            "down_proj": (ffn, hidden),
        }
        per = 0
        for name in targets:
            i, o = shapes[name]
            per += i * o if full_matrix else rank * i if a_only else rank * (i + o)
        return per * (1 if layers_once else layers)

    return lora_trainable


@pytest.mark.parametrize(
    ("wrong", "points"),
    [
        (_lora(kv_like_q=True), 2),  # no grouped-query attention: loses the hidden GQA point
        (_lora(layers_once=True), 0),
        (_lora(a_only=True), 0),
        (_lora(full_matrix=True), 0),
    ],
)
def test_graded_tests_reject_wrong_lora_counts(nb, wrong, points) -> None:
    assert _points(nb, "lora-trainable", wrong) == points


def _targets(*, keep_head=False, full_names=False):
    def linear_targets(model):
        import torch

        head = model.get_output_embeddings()
        names = set()
        for name, module in model.named_modules():
            if not isinstance(module, torch.nn.Linear):
                continue
            if not keep_head and module is head:
                continue
            names.add(name if full_names else name.split(".")[-1])
        return sorted(names)

    return linear_targets


@pytest.mark.parametrize(
    ("wrong", "points"),
    [
        (_targets(keep_head=True), 0),
        (_targets(full_names=True), 0),
        (lambda model: sorted(PRESETS_ALL_LINEAR), 1),  # LLaMA's names, written out
    ],
)
def test_graded_tests_reject_wrong_target_lists(nb, wrong, points) -> None:
    assert _points(nb, "linear-targets", wrong) == points


PRESETS_ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _first_span_only(token_ids, answer_spans):
    start, end = answer_spans[0] if answer_spans else (0, 0)
    return [t if start <= i < end else -100 for i, t in enumerate(token_ids)]


def _inclusive(token_ids, answer_spans):
    return [
        t if any(s <= i <= e for s, e in answer_spans) else -100 for i, t in enumerate(token_ids)
    ]


def _zero_masked(token_ids, answer_spans):
    return [t if any(s <= i < e for s, e in answer_spans) else 0 for i, t in enumerate(token_ids)]


@pytest.mark.parametrize(
    ("wrong", "points"), [(_first_span_only, 1), (_inclusive, 0), (_zero_masked, 0)]
)
def test_graded_tests_reject_wrong_labels(nb, wrong, points) -> None:
    assert _points(nb, "loss-labels", wrong) == points


def test_a_solution_that_calls_the_library_scores_nothing(nb) -> None:
    def lora_trainable(hidden, layers, heads, kv_heads, ffn, *, rank, targets):
        from courselib.memory.training import lora_params  # "one import away"

        config = {"hidden_size": hidden, "num_hidden_layers": layers, "vocab_size": 32000}
        config |= {"num_attention_heads": heads, "num_key_value_heads": kv_heads}
        config |= {"intermediate_size": ffn, "architectures": ["LlamaForCausalLM"]}
        from courselib.memory import count_params

        return lora_params(count_params(config), rank=rank, targets=targets)

    assert _points(nb, "lora-trainable", lora_trainable) == 0


@pytest.mark.slow
def test_solution_notebook_runs_end_to_end(
    run_notebook, course_hf, course_gguf, monkeypatch
) -> None:
    course_hf("course-chat")  # built before the clock of the run starts
    # one torch thread in the kernel: with two, a training step waits for a core that any
    # other process on a 2-core machine takes (10-20x slower per step when one is busy)
    monkeypatch.setenv("COURSELAB_THREADS", "1")
    params = {
        "TRAIN_STEPS": 150,
        "QLORA_STEPS": 10,  # the 4-bit path runs; its uplift is the skill bench's business
        "MEASURE_MODEL": "course-chat",
        "MEASURE_TIPS": False,
    }
    executed = run_notebook(NOTEBOOK, params, timeout_s=900)
    assert_ran_cleanly(executed)
    counts = output_text(executed, "for recipe in [")
    assert "alpaca-lora" in counts and "qlora" in counts
    assert "the same as the library's: True" in output_text(executed, "mine = loss_labels(")
    assert "parameters train" in output_text(executed, "R = skill.RECIPE")
    assert "150 steps in" in output_text(executed, 'plot = LossPlot(title="LoRA on')
    table = output_text(executed, "print(evaluate.side_by_side(before, after))")
    assert "accuracy" in table and "moo" in table
    (qlora,) = [c for c in executed["cells"] if "qlora_rows = [" in c["source"]]
    shown = "".join(str(o.get("data", {}).get("text/html", "")) for o in qlora["outputs"])
    assert "QLoRA" in shown and "LoRA" in shown  # the table (a pandas Styler: HTML only)
    savings = output_text(executed, "savings = savings_table(rows)")
    for method in ("full", "lora", "qlora"):
        assert method in savings
    assert "merged and exported" in output_text(executed, "adapter_dir = export.save_adapter(")
