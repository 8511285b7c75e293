"""Notebooks built in memory for the autograder step tests.

``lab()`` is a two-question lab as nbgrader's student version has it: an intro, a tagged
parameters cell, and for ``f`` and ``g`` a solution cell and a test cell (2 points each).
"""

from __future__ import annotations

from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from autograder.grade.job import Context, Job, grade_id

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def nbg(gid, *, locked=False, solution=False, grade=False, points=0):
    """nbgrader cell metadata."""
    meta = {
        "grade_id": gid,
        "locked": locked,
        "solution": solution,
        "grade": grade,
        "schema_version": 3,
        "task": False,
    }
    if grade:
        meta["points"] = points
    return {"nbgrader": meta}


def graded_cell(gid: str, source: str, points: int = 2):
    return new_code_cell(source, metadata=nbg(gid, locked=True, grade=True, points=points))


def lab():
    cells = [
        new_markdown_cell("# Lab", metadata=nbg("intro", locked=True)),
        new_code_cell("N = 1", metadata=nbg("parameters", locked=True) | {"tags": ["parameters"]}),
        new_code_cell(
            "def f():\n    raise NotImplementedError()", metadata=nbg("f", solution=True)
        ),
        graded_cell("test-f", "assert f() == 1"),
        new_code_cell(
            "def g():\n    raise NotImplementedError()", metadata=nbg("g", solution=True)
        ),
        graded_cell("test-g", "assert g() == 2"),
    ]
    return new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC})


def context(release=None, *, workdir=None, **settings) -> Context:
    """A grading context for student ``ada`` (``settings``: the job's settings dict)."""
    job = Job(
        "ada", "lab", "sub.ipynb", "rel.ipynb", "sqlite://", "out.ipynb", "/tmp", "fp", settings
    )
    return Context(job, release if release is not None else lab(), workdir=workdir)


def run(step, nb, ctx):
    """``step`` applied to ``nb`` with ``ctx`` in the resources."""
    nb, _ = step.preprocess(nb, {"autograder": ctx})
    return nb


def ids(nb) -> list[str | None]:
    return [grade_id(c) for c in nb.cells]
