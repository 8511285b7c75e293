"""Per-student feedback HTML (nbgrader's ``generate_feedback``) without the hidden tests.

nbgrader's feedback shows each graded notebook as it ran, so the hidden tests appear twice: in
the test cell's source and in the traceback of a failed one (IPython prints the failing line
and its neighbours). ``HideHiddenTests``, added to nbgrader's feedback steps, removes the
``### BEGIN HIDDEN TESTS`` region from the source and rewrites the traceback of an error to
its last line plus where it happened: the visible line that failed, or "in a hidden test".

Example: a test cell whose hidden assert fails shows ``AssertionError (in a hidden test)``.
"""

from __future__ import annotations

import json
import re

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbformat import NotebookNode
from nbgrader.preprocessors import GetGrades, NbGraderPreprocessor
from traitlets.config import Config

from autograder.course import HIDDEN_BEGIN, Course, hidden_lines, venv_on_path

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
    hidden = hidden_lines(cell.source)
    visible: list[str] = []
    shift: dict[int, int] = {}
    for number, line in enumerate(cell.source.split("\n"), start=1):
        if number not in hidden:
            shift[number] = len(visible) + 1
            visible.append(line)
    cell.source = "\n".join(visible).rstrip("\n")
    for out in cell.get("outputs", []):
        if out.get("output_type") != "error":
            continue
        head = f"{out.get('ename', 'Error')}: {out.get('evalue', '')}".rstrip(": ")
        line = _failing_line(out.get("traceback", []), cell.get("execution_count"))
        if line is None:
            out["traceback"] = [head]
        elif line in hidden:  # its message may echo the hidden test's values
            out["evalue"] = "in a hidden test"
            out["traceback"] = [f"{out.get('ename', 'Error')} (in a hidden test)"]
        else:
            out["traceback"] = [f"{head} (line {shift[line]}: {visible[shift[line] - 1].strip()})"]
    return cell


def hidden_texts(nb: NotebookNode) -> set[str]:
    """What of the notebook's hidden tests must not appear in feedback: each code line (longer
    than a few characters) and each string literal of 6 characters or more, unless the rest of
    the notebook shows it too."""
    found: set[str] = set()
    shown: list[str] = []  # what the student sees anyway: not a secret
    for cell in nb.cells:
        hidden = hidden_lines(cell.source) if cell.get("cell_type") == "code" else set()
        lines = cell.source.split("\n")
        shown += [line for n, line in enumerate(lines, start=1) if n not in hidden]
        for number in sorted(hidden):
            line = lines[number - 1].strip()
            if len(line) > 8 and not line.startswith("#"):
                found.add(line)
            found |= {m[1:-1] for m in STRING.findall(line) if len(m) >= 8}
    visible = "\n".join(shown)
    return {text for text in found if text not in visible}


STRING = re.compile(r"'[^'\\]*'|\"[^\"\\]*\"")
REMOVED = "[autograder: output removed, it showed the text of a hidden test]\n"


def scrub(cell: NotebookNode, secrets: set[str]) -> NotebookNode:
    """``cell`` with every output that shows one of ``secrets`` replaced by a note: whatever a
    student's code printed (arguments it saved, a test's source it read), feedback stays clean."""
    if not secrets or cell.get("cell_type") != "code":
        return cell
    kept = []
    for out in cell.get("outputs", []):
        text = json.dumps(out, ensure_ascii=False) + " " + str(out)
        if any(s in text for s in secrets):
            kept.append(NotebookNode(output_type="stream", name="stdout", text=REMOVED))
        else:
            kept.append(out)
    cell.outputs = kept
    return cell


class HideHiddenTests(NbGraderPreprocessor):
    """nbgrader feedback step: hidden test source and tracebacks removed, and any output that
    shows a hidden test's text."""

    def preprocess(self, nb, resources):
        self._secrets = hidden_texts(nb)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        return scrub(hide_hidden_tests(cell), self._secrets), resources


def generate_feedback(course: Course, assignment: str, *, show_hidden: bool = False) -> dict:
    """feedback/<student>/<lab>/<lab>.html for every graded submission; nbgrader's result dict."""
    config = Config()
    steps = [GetGrades, CSSHTMLHeaderPreprocessor]
    config.GenerateFeedback.preprocessors = steps if show_hidden else [*steps, HideHiddenTests]
    with venv_on_path():
        return course.api(config).generate_feedback(assignment, force=True)
