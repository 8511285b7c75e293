"""Per-student feedback HTML (nbgrader's ``generate_feedback``) without the hidden tests.

nbgrader's feedback shows each graded notebook as it ran, so the hidden tests appear twice: in
the test cell's source and in the traceback of a failed one (IPython prints the failing line
and its neighbours). ``HideHiddenTests``, added to nbgrader's feedback steps, removes the
``### BEGIN HIDDEN TESTS`` region from the source and rewrites the traceback of an error to
its last line plus where it happened: the visible line that failed, or "in a hidden test".

Example: a test cell whose hidden assert fails shows ``AssertionError (in a hidden test)``.
"""

from __future__ import annotations

import re

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbformat import NotebookNode
from nbgrader.preprocessors import GetGrades, NbGraderPreprocessor
from traitlets.config import Config

from autograder.course import HIDDEN_BEGIN, HIDDEN_END, Course, venv_on_path

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _failing_line(traceback: list[str], count: int | None) -> int | None:
    """The line of the cell itself that raised, from IPython's ``Cell In[count], line N``."""
    text = ANSI.sub("", "\n".join(traceback))
    for match in re.finditer(r"Cell In\[(\d+)\], line (\d+)(, in \S+)?", text):
        if (count is None or int(match.group(1)) == count) and not match.group(3):
            return int(match.group(2))
    return None


def hide_hidden_tests(cell: NotebookNode) -> NotebookNode:
    """``cell`` with its hidden tests and their traces removed (a no-op without them)."""
    if cell.get("cell_type") != "code" or HIDDEN_BEGIN not in cell.source:
        return cell
    visible: list[str] = []
    hidden: set[int] = set()
    shift: dict[int, int] = {}
    inside = False
    for number, line in enumerate(cell.source.split("\n"), start=1):
        if HIDDEN_BEGIN in line:
            inside = True
        if inside:
            hidden.add(number)
        else:
            shift[number] = len(visible) + 1
            visible.append(line)
        if HIDDEN_END in line:
            inside = False
    cell.source = "\n".join(visible).rstrip("\n")
    for out in cell.get("outputs", []):
        if out.get("output_type") != "error":
            continue
        head = f"{out.get('ename', 'Error')}: {out.get('evalue', '')}".rstrip(": ")
        line = _failing_line(out.get("traceback", []), cell.get("execution_count"))
        if line is None:
            out["traceback"] = [head]
        elif line in hidden:
            out["traceback"] = [f"{head} (in a hidden test)"]
        else:
            out["traceback"] = [f"{head} (line {shift[line]}: {visible[shift[line] - 1].strip()})"]
    return cell


class HideHiddenTests(NbGraderPreprocessor):
    """nbgrader feedback step: hidden test source and tracebacks removed."""

    def preprocess_cell(self, cell, resources, index):
        return hide_hidden_tests(cell), resources


def generate_feedback(course: Course, assignment: str, *, show_hidden: bool = False) -> dict:
    """feedback/<student>/<lab>/<lab>.html for every graded submission; nbgrader's result dict."""
    config = Config()
    steps = [GetGrades, CSSHTMLHeaderPreprocessor]
    config.GenerateFeedback.preprocessors = steps if show_hidden else [*steps, HideHiddenTests]
    with venv_on_path():
        return course.api(config).generate_feedback(assignment, force=True)
