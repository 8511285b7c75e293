"""Each autograder step alone, on notebooks built in memory (no kernel, no nbgrader course)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import zipfile

import nbformat
import pytest
from autograder_data.factory import context, ids, lab, nbg, run
from labcheck import LABS_DIR
from nbformat.v4 import new_code_cell, new_output

from autograder.__main__ import parser
from autograder.collect import collect, student_id
from autograder.course import Course
from autograder.export.feedback import hide_hidden_tests
from autograder.export.sheet import write_csv
from autograder.export.summary import summary_text
from autograder.grade import limits
from autograder.grade.cells import DeduplicateGradeIds, RestoreSourceCells, _in_place
from autograder.grade.job import fingerprint
from autograder.grade.parameters import InjectParameters
from autograder.grade.read import Normalise, UnreadableNotebook, read_submission
from autograder.grade.score import Score

# --- reading and normalising ---------------------------------------------------------------


@pytest.mark.parametrize(
    "data, why",
    [
        (b'{"cells": [', "not valid JSON"),
        (b"\xff\xfe\x00binary", "not a text file"),
        (b'{"hello": 1}', "not a notebook"),
        (b"[1, 2]", "not a notebook"),
        (b'{"cells": ["x"], "metadata": {}}', "a cell without a cell_type"),
    ],
)
def test_unreadable_files_say_why(data, why):
    with pytest.raises(UnreadableNotebook, match=why):
        read_submission(data)


def test_read_keeps_duplicate_cell_ids_for_normalise_to_report():
    nb = lab()
    nb.cells.append(copy.deepcopy(nb.cells[2]))
    read = read_submission(json.dumps(nb).encode())
    assert read.cells[2].id == read.cells[-1].id
    ctx = context()
    fixed = run(Normalise(), read, ctx)
    assert len({c.id for c in fixed.cells}) == len(fixed.cells)
    assert ctx.notes == ["duplicate cell ids renumbered (copied cells)"]


# --- restoring the instructor's cells --------------------------------------------------------


def test_copied_solution_keeps_last_copy_and_copied_test_keeps_unedited_copy():
    nb = lab()
    first = copy.deepcopy(nb.cells[2])
    first.source = "def f():\n    return 0"
    nb.cells.insert(2, first)
    edited = copy.deepcopy(nb.cells[4])  # test-f
    edited.source = "pass"
    nb.cells.insert(4, edited)
    ctx = context()
    out = run(DeduplicateGradeIds(), nb, ctx)
    assert ids(out) == ["intro", "parameters", None, "f", None, "test-f", "g", "test-g"]
    assert out.cells[5].source == "assert f() == 1"
    assert any("cell f appears 2 times" in r and "the last copy" in r for r in ctx.reasons)
    assert any("test-f appears 2 times" in r and "the unedited copy" in r for r in ctx.reasons)


def test_moved_and_deleted_cells_are_put_back_in_order():
    nb = lab()
    moved = nb.cells.pop(3)  # test-f to the top
    nb.cells.insert(0, moved)
    del nb.cells[5]  # test-g
    del nb.cells[1]  # intro (a text cell: a note, not a reason)
    ctx = context()
    out = run(RestoreSourceCells(), nb, ctx)
    assert ids(out) == ["intro", "parameters", "f", "test-f", "g", "test-g"]
    assert sorted(ctx.reasons) == [
        "test cell test-f was moved: put back after f",
        "test cell test-g was missing: restored",
    ]
    assert ctx.notes == ["text cell intro was missing: restored"]


def test_student_cells_keep_their_place_among_restored_ones():
    nb = lab()
    nb.cells.insert(3, new_code_cell("print(f())"))  # scratch cell between f and test-f
    out = run(RestoreSourceCells(), nb, ctx := context())
    assert [c.source for c in out.cells][3] == "print(f())"
    assert ctx.reasons == []


def test_metadata_tags_and_type_of_locked_cells_are_reset():
    nb = lab()
    test_f = nb.cells[3]
    test_f.metadata.nbgrader["grade"] = False  # would escape grading
    test_f.metadata["tags"] = ["skip-execution"]
    nb.cells[5].cell_type = "markdown"  # test-g turned into text
    del nb.cells[5]["outputs"], nb.cells[5]["execution_count"]
    nb.cells[1].metadata["tags"] = []  # parameters tag removed
    nb.cells[1].source = "N = 99"
    ctx = context()
    out = run(RestoreSourceCells(), nb, ctx)
    assert out.cells[3].metadata.nbgrader["grade"] is True and "tags" not in out.cells[3].metadata
    assert out.cells[5].cell_type == "code" and out.cells[5].outputs == []
    assert out.cells[1].metadata["tags"] == ["parameters"]
    text = "\n".join(ctx.reasons)
    assert "metadata of cell test-f was changed (grade): reset" in text
    assert "tags of locked cell test-f were changed (['skip-execution']): reset" in text
    assert "cell test-g was turned into a markdown cell: turned back" in text
    assert "lost its 'parameters' tag" in text
    assert "locked cell parameters was edited" in text


def test_unknown_grade_ids_become_ordinary_cells():
    nb = lab()
    nb.cells.append(new_code_cell("x = 1", metadata=nbg("my-own", grade=True, points=100)))
    ctx = context()
    out = run(RestoreSourceCells(), nb, ctx)
    assert "nbgrader" not in out.cells[-1].metadata
    assert ctx.notes == ["unknown grade_id 'my-own': ran as an ordinary cell"]


@pytest.mark.parametrize(
    "order, kept",
    [([0, 1, 2], {0, 1, 2}), ([0, 3, 1, 2], {0, 2, 3}), ([2, 0, 1], {1, 2}), ([], set())],
)
def test_in_place_is_a_longest_increasing_subsequence(order, kept):
    assert _in_place(order) == kept


# --- parameters ------------------------------------------------------------------------------


def test_parameters_are_injected_after_the_parameters_cell_even_without_its_tag():
    nb = lab()
    nb.cells[1].metadata["tags"] = []
    nb.cells[4].metadata["tags"] = ["injected-parameters"]  # would relocate papermill's cell
    nb.cells[5].metadata["tags"] = ["parameters"]  # would move the anchor
    nb = run(RestoreSourceCells(), nb, ctx := context(parameters={"N": 5}))
    out = run(InjectParameters(), nb, ctx)
    assert ids(out)[:3] == ["intro", "parameters", None]
    assert out.cells[2].metadata["tags"] == ["injected-parameters"]
    assert "N = 5" in out.cells[2].source
    assert sum("injected-parameters" in c.metadata.get("tags", []) for c in out.cells) == 1
    assert sum("parameters" in c.metadata.get("tags", []) for c in out.cells) == 1


def test_no_parameters_no_injected_cell():
    out = run(InjectParameters(), lab(), context(parameters={}))
    assert ids(out) == ids(lab())


# --- scoring ---------------------------------------------------------------------------------


def executed(outputs_f, outputs_g, *, ran=(3, 5)):
    nb = lab()
    nb.cells[3].outputs, nb.cells[5].outputs = outputs_f, outputs_g
    ctx = context(memory_mb=512)
    ctx.executed |= set(ran)
    return nb, ctx


def test_errors_score_zero_stderr_does_not_unless_asked():
    err = new_output("error", ename="AssertionError", evalue="", traceback=[])
    warn = new_output("stream", name="stderr", text="UserWarning: careful\n")
    nb, ctx = executed([warn], [err])
    run(Score(), nb, ctx)
    assert ctx.scores == {"test-f": 2.0, "test-g": 0}
    assert ctx.notes == ["stderr output in test-f ignored"]
    nb, ctx = executed([warn], [])
    ctx.job.settings["stderr_fails_test"] = True
    run(Score(), nb, ctx)
    assert ctx.scores == {"test-f": 0, "test-g": 2.0}


def test_a_test_cell_that_never_ran_scores_zero():
    nb, ctx = executed([], [], ran=(3,))
    ctx.not_run[5] = "the notebook's time limit (5 s) was used up"
    run(Score(), nb, ctx)
    assert ctx.scores == {"test-f": 2.0, "test-g": 0.0}
    assert ctx.reasons == [
        "test cell test-g scored 0, not run: the notebook's time limit (5 s) was used up"
    ]


def test_memory_errors_are_reported_with_the_cap():
    nb, ctx = executed([new_output("error", ename="MemoryError", evalue="", traceback=[])], [])
    run(Score(), nb, ctx)
    assert ctx.reasons == ["MemoryError in cell test-f (memory cap 512 MB)"]


def test_fingerprint_changes_with_each_input():
    base = fingerprint("a", "b", {"cell_timeout": 60})
    assert base == fingerprint("a", "b", {"cell_timeout": 60})
    assert (
        len(
            {
                base,
                fingerprint("x", "b", {"cell_timeout": 60}),
                fingerprint("a", "x", {}),
                fingerprint("a", "b", {"cell_timeout": 1}),
            }
        )
        == 4
    )


# --- feedback --------------------------------------------------------------------------------


def _test_cell(failing_line: int):
    source = (
        "assert f(1) == 1\n### BEGIN HIDDEN TESTS\nassert f(7) == 7  # secret\n### END HIDDEN TESTS"
    )
    tb = [
        "\x1b[0;31mAssertionError\x1b[0m  Traceback",
        f"Cell \x1b[0;32mIn[4], line {failing_line}\x1b[0m",
        "secret line shown as context",
    ]
    cell = new_code_cell(source, execution_count=4)
    cell.outputs = [new_output("error", ename="AssertionError", evalue="", traceback=tb)]
    return cell


def test_feedback_hides_hidden_tests_and_their_traceback():
    cell = hide_hidden_tests(_test_cell(3))
    assert "secret" not in json.dumps(cell)
    assert cell.source == "assert f(1) == 1"
    assert cell.outputs[0].traceback == ["AssertionError (in a hidden test)"]
    cell = hide_hidden_tests(_test_cell(1))
    assert cell.outputs[0].traceback == ["AssertionError (line 1: assert f(1) == 1)"]


# --- collecting ------------------------------------------------------------------------------


def test_student_ids_are_safe():
    assert student_id("Ada Lovelace (2)") == "Ada_Lovelace_2"
    assert student_id("../../etc") == "etc"


def test_collect_from_folders_and_zips(tmp_path):
    course = Course(tmp_path / "course")
    src = tmp_path / "in"
    (src / "bob").mkdir(parents=True)
    (src / "ada.ipynb").write_text("{}")
    (src / "bob" / "whatever.ipynb").write_text("{}")
    (src / "cy" / "lab" / ".ipynb_checkpoints").mkdir(parents=True)
    (src / "cy" / "lab" / "lab.ipynb").write_text("{}")
    (src / "cy" / "lab" / ".ipynb_checkpoints" / "lab-checkpoint.ipynb").write_text("{}")
    report = collect(course, "lab", src)
    assert report.taken == ["ada", "bob", "cy"] and report.skipped == []
    assert (course.root / "submitted/bob/lab/lab.ipynb").read_text() == "{}"
    assert (course.root / "submitted/bob/lab/timestamp.txt").read_text().endswith("UTC")

    archive = tmp_path / "lms.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("dan_1234_lab.ipynb", "{}")
        z.writestr("eve_99_lab.ipynb", "{}")
        z.writestr("eve_99_lab (1).ipynb", "{}")
        z.writestr("../evil_0_lab.ipynb", "{}")
        z.writestr("__MACOSX/dan_1234_lab.ipynb", "junk")
    report = collect(Course(tmp_path / "c2"), "lab", archive, pattern=r"^(?P<student>[a-z]+)_\d+")
    assert report.taken == ["dan"]
    reasons = dict(report.skipped)
    assert reasons["../evil_0_lab.ipynb"] == "path escapes the archive"
    assert any("has 2 notebooks" in why for why in reasons.values())


# --- limits, CLI, sheet ----------------------------------------------------------------------


def test_kernel_limits_cap_memory_and_die_with_the_parent(tmp_path):
    code = "bytearray(600 * 2**20)"
    cmd = [sys.executable, limits.__file__, "--memory-mb=300", "--", sys.executable, "-c", code]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "MemoryError" in out.stderr
    wrong_parent = [
        sys.executable,
        limits.__file__,
        "--parent=1",
        "--",
        sys.executable,
        "-c",
        "print('ran')",
    ]
    assert subprocess.run(wrong_parent, capture_output=True, text=True, timeout=60).stdout == ""


def test_cli_help_lists_every_step(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for command in (
        "setup",
        "generate",
        "collect",
        "grade",
        "export",
        "sample-class",
        "verify",
        "demo",
    ):
        assert command in text
    with pytest.raises(SystemExit):
        parser().parse_args(["grade", "--help"])
    assert "--workers" in capsys.readouterr().out


def test_sheet_and_summary_from_rows(tmp_path):
    rows = [
        {
            "student": "ada",
            "assignment": "lab",
            "score": 4.0,
            "max_score": 4.0,
            "status": "graded",
            "reason": "",
            "notes": "",
            "cells": {"test-f": (2.0, 2.0), "test-g": (2.0, 2.0)},
        },
        {
            "student": "bob",
            "assignment": "lab",
            "score": 2.0,
            "max_score": 4.0,
            "status": "graded",
            "reason": "cell test-g was stopped at the cell time limit (5 s)",
            "notes": "",
            "cells": {"test-f": (2.0, 2.0), "test-g": (0.0, 2.0)},
        },
        {
            "student": "cy",
            "assignment": "lab",
            "score": None,
            "max_score": None,
            "status": "error",
            "reason": "grader error",
            "notes": "",
            "cells": {},
        },
    ]
    path = write_csv(rows, tmp_path / "grades.csv")
    lines = path.read_text().splitlines()
    assert (
        lines[0]
        == "student,assignment,score,max_score,status,flag,reason,lost,notes,lab:test-f,lab:test-g"
    )
    assert lines[2].startswith("bob,lab,2.0,4.0,graded,,cell test-g was stopped")
    text = summary_text(rows)
    assert "lab: 3 submissions, mean 3.0 / 4, median 3, min 2, max 4" in text
    assert "test-g                            2    1.0   1/2" in text
    assert "not fully graded (2):" in text and "bob" in text and "not scored" in text


def test_read_then_validate_roundtrip_of_the_factory_lab():
    nbformat.validate(lab())


@pytest.mark.parametrize(
    "module",
    [
        "autograder.collect",
        "autograder.grade.cells",
        "autograder.grade.job",
        "autograder.grade.read",
    ],
)
def test_docstring_examples(module):
    import doctest
    import importlib

    failed, _ = doctest.testmod(importlib.import_module(module))
    assert failed == 0


def test_a_grader_where_llama_cpp_dies_grades_nothing(tmp_path, monkeypatch, course_models):
    # the real probe (a child that generates with course-chat) is tested in
    # test_models_shipped; here a build that dies must stop the batch before any kernel starts
    from autograder.course import setup
    from autograder.grade import run as grading
    from courselib.errors import CourseError
    from courselib.gguf import runtime

    def dies(path):
        raise CourseError("llama.cpp died with SIGILL", hint="make venv")

    monkeypatch.setattr(runtime, "ensure_llama_runs", dies)
    course = setup(tmp_path / "course", labs_dir=LABS_DIR, assignments=["lab01_local_chat"])
    with pytest.raises(CourseError, match="Nothing was graded: llama.cpp cannot run on this"):
        grading.grade(course, "lab01_local_chat", progress=False)
