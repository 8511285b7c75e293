"""Inject the grading parameters with papermill, anchored to the lab's parameters cell.

papermill puts its ``injected-parameters`` cell after the first cell tagged ``parameters`` and
replaces the first cell already tagged ``injected-parameters``. In a submission either tag can
be missing or misplaced: a student who removed the tag would get the injected values at the top,
overwritten by the defaults cell below; one who tagged another cell would move them. So the
anchor is the cell with the parameters cell's **grade_id** in the student version (the step
``RestoreSourceCells`` has already put it back, tag included); both tags are removed from every
other cell first, then papermill's own ``parameterize_notebook`` writes the values.

Example: with ``{"N_CTX": 256}`` the notebook gains, right after the parameters cell, a cell
tagged ``injected-parameters`` holding ``# Parameters\\nN_CTX = 256\\n``.
"""

from __future__ import annotations

from nbconvert.preprocessors import Preprocessor
from papermill.parameterize import parameterize_notebook

from autograder.grade.job import context, grade_id

TAGS = ("parameters", "injected-parameters")


class InjectParameters(Preprocessor):
    """papermill's injection after the parameters cell, found by its grade_id."""

    def preprocess(self, nb, resources):
        ctx = context(resources)
        parameters = ctx.settings.get("parameters") or {}
        anchor = next(
            (grade_id(c) for c in ctx.release.cells if "parameters" in c.metadata.get("tags", [])),
            None,
        )
        for cell in nb.cells:
            tags = cell.get("metadata", {}).get("tags", [])
            if any(t in tags for t in TAGS) and (anchor is None or grade_id(cell) != anchor):
                cell.metadata["tags"] = [t for t in tags if t not in TAGS]
                ctx.note("a 'parameters' or 'injected-parameters' tag on another cell was removed")
        if not parameters:
            return nb, resources
        target = [c for c in nb.cells if anchor is not None and grade_id(c) == anchor]
        if target:
            target[0].metadata["tags"] = ["parameters"] + [
                t for t in target[0].metadata.get("tags", []) if t != "parameters"
            ]
        else:
            ctx.reason("no parameters cell in this lab: the grading parameters went to the top")
        nb.metadata.setdefault("papermill", {})  # what papermill's own loader adds
        for cell in nb.cells:
            cell.metadata.setdefault("tags", [])
        injected = parameterize_notebook(nb, parameters, kernel_name="python3", language="python")
        for cell in injected.cells:
            if not cell.metadata.get("tags"):
                cell.metadata.pop("tags", None)
        return injected, resources
