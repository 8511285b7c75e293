"""Lab 01 notebook: nbgrader source format, graded tests that can fail, and an end-to-end run.

The graded tests are taken from the notebook itself and run against the solution (must pass)
and against plausible wrong answers (must fail): a test that cannot fail grades nothing.
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
    solution,
)

from courselib.chat.vicuna import VICUNA_SYSTEM

NOTEBOOK = LABS_DIR / "lab01_local_chat/lab01_local_chat.ipynb"


@pytest.fixture(scope="module")
def nb():
    return read_lab(NOTEBOOK)


def test_notebook_is_graded_source(nb) -> None:
    tests = assert_graded(nb, points=4, parameter="MODEL", solutions=["vicuna-prompt", "weight-gb"])
    assert all("render_vicuna" not in t for t in tests)  # literal expected strings only
    setup = cell(nb, "imports").source
    assert "courselib.chat" not in setup  # the module with the answer is not imported for them
    namespace: dict = {}
    exec("VICUNA_SYSTEM = " + setup.split("VICUNA_SYSTEM = ", 1)[1], namespace)
    assert namespace["VICUNA_SYSTEM"] == VICUNA_SYSTEM  # the lab's copy matches the model's


def _grade(nb, grade_id: str, **answer) -> None:
    """Run the graded test cells of ``grade_id`` with ``answer`` (the student's functions)."""
    for test in graded_cells_of(nb, grade_id):
        exec(test.source, {"math": math, "VICUNA_SYSTEM": VICUNA_SYSTEM, **answer})


def _points(nb, grade_id: str, **answer) -> float:
    """Points of the test cells of ``grade_id`` that pass (nbgrader: all or nothing per cell)."""
    total = 0.0
    for test in graded_cells_of(nb, grade_id):
        try:
            exec(test.source, {"math": math, "VICUNA_SYSTEM": VICUNA_SYSTEM, **answer})
        except AssertionError:
            continue
        total += test.metadata["nbgrader"]["points"]
    return total


def _solution(nb, grade_id: str, name: str):
    return solution(nb, grade_id, name, {"VICUNA_SYSTEM": VICUNA_SYSTEM})


def test_graded_tests_pass_on_the_solution(nb) -> None:
    _grade(nb, "vicuna-prompt", vicuna_prompt=_solution(nb, "vicuna-prompt", "vicuna_prompt"))
    _grade(nb, "weight-gb", weight_gb=_solution(nb, "weight-gb", "weight_gb"))


def _no_eos(turns, system=VICUNA_SYSTEM):
    return system + " " + " ".join(f"{r.upper()}: {t}" for r, t in turns) + " ASSISTANT:"


def _always_prompt(turns, system=VICUNA_SYSTEM):
    out = system + " "
    for role, text in turns:
        out += f"USER: {text} " if role == "user" else f"ASSISTANT: {text}</s>"
    return out + "ASSISTANT:"  # also after an assistant turn: only the hidden tests see it


def _with_bos(turns, system=VICUNA_SYSTEM):
    return "<s>" + _always_prompt(turns, system)


def _newlines(turns, system=VICUNA_SYSTEM):
    return "\n".join([system, *(f"{r.upper()}: {t}" for r, t in turns), "ASSISTANT:"])


def _stripped_system(turns, system=VICUNA_SYSTEM):
    out = system.strip() + " " if system.strip() else ""  # loses the space of an empty system
    for role, text in turns:
        out += f"USER: {text} " if role == "user" else f"ASSISTANT: {text}</s>"
    return out + ("ASSISTANT:" if turns[-1][0] == "user" else "")


@pytest.mark.parametrize("wrong", [_no_eos, _always_prompt, _with_bos, _newlines, _stripped_system])
def test_graded_tests_reject_wrong_formatters(nb, wrong) -> None:
    with pytest.raises(AssertionError):
        _grade(nb, "vicuna-prompt", vicuna_prompt=wrong)


def test_partial_credit_and_no_points_for_calling_the_library(nb) -> None:
    mine = _solution(nb, "vicuna-prompt", "vicuna_prompt")
    assert _points(nb, "vicuna-prompt", vicuna_prompt=mine) == 3
    # right but for an empty system prompt: only the edge-case cell (1 point) is lost
    assert _points(nb, "vicuna-prompt", vicuna_prompt=_stripped_system) == 2

    def borrowed(turns, system=VICUNA_SYSTEM):
        from courselib.chat.vicuna import render_vicuna

        return render_vicuna(turns, system=system)

    assert _points(nb, "vicuna-prompt", vicuna_prompt=borrowed) == 0


@pytest.mark.parametrize(
    "wrong",
    [
        lambda n, bits: n * bits / 1e9,  # bits, not bytes
        lambda n, bits: n * bits / 8 / 2**30,  # GiB, not GB
        lambda n, bits: n * round(bits) / 8 / 1e9,  # ignores the scales' extra half bit
    ],
)
def test_graded_tests_reject_wrong_sizes(nb, wrong) -> None:
    with pytest.raises(AssertionError):
        _grade(nb, "weight-gb", weight_gb=wrong)


@pytest.mark.slow
def test_solution_notebook_runs_end_to_end(run_notebook, course_gguf) -> None:
    for quant in ("F16", "Q8_0", "Q4_K_M"):
        course_gguf("course-chat", quant)  # built before the clock of the run starts
    executed = run_notebook(NOTEBOOK, {"MAX_TOKENS": 24})
    assert_ran_cleanly(executed)

    def text_of(marker: str) -> str:
        return output_text(executed, marker)

    assert "Tokyo" in text_of("my_prompt = vicuna_prompt(")
    assert "the backend builds the same prompt: True" in text_of("my_prompt = vicuna_prompt(")
    table = text_of("table = speed_table(")
    for quant in ("F16", "Q8_0", "Q4_K_M", "tokens/s", "GB/s", "of roofline"):
        assert quant in table
    # above its roofline a file gets a note saying why, never a silent "result"
    chart = text_of("roofline_note(")
    assert ("x the roofline" in chart) != ("Every file decodes below its roofline." in chart)
    assert "13B  fp32:  52.1 GB" in text_of("weight_gb(13.02e9, bits)")
    assert "Tokyo" in text_of('ui.send("What is the capital of Japan?")')
