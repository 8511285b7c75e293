"""Read a submitted file into a notebook, and normalise it (the first grading step).

``read_submission`` turns bytes into an nbformat v4 node or says why it cannot: not UTF-8,
broken JSON (an editor crash, a truncated upload), not a notebook at all. A file that cannot be
read scores 0 with that reason; everything else is graded as far as possible.

``Normalise`` repairs what nbformat can: upgrade to the current minor version, missing or
duplicate cell ids (a copy-pasted cell), metadata the schema rejects. A notebook that still
does not validate is graded anyway (its cells' sources are what matter), with a note.
"""

from __future__ import annotations

import json
import warnings

import nbformat
from nbconvert.preprocessors import Preprocessor
from nbformat import NotebookNode

from autograder.grade.job import context


class UnreadableNotebook(ValueError):
    """The file is not a notebook; the message is the reason recorded for the student."""


def read_submission(data: bytes) -> NotebookNode:
    """The submitted bytes as a notebook, not validated yet (``Normalise`` does that).

    >>> read_submission(b'{"cells": [')
    Traceback (most recent call last):
    ...
    autograder.grade.read.UnreadableNotebook: not valid JSON: Expecting value at line 1 column 12
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UnreadableNotebook(f"not a text file (UTF-8): {err}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise UnreadableNotebook(
            f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells", raw.get("worksheets")), list):
        raise UnreadableNotebook("JSON but not a notebook (no list of cells)")
    cells = raw.get("cells", [])
    if not all(isinstance(c, dict) and isinstance(c.get("cell_type"), str) for c in cells):
        raise UnreadableNotebook("JSON but not a notebook (a cell without a cell_type)")
    raw.setdefault("metadata", {})
    raw.setdefault("nbformat", 4)
    raw.setdefault("nbformat_minor", 5)
    try:  # no validation here: nbformat.reads would already renumber duplicate cell ids
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.from_dict(raw)
            return nb if nb.nbformat == 4 else nbformat.convert(nb, 4)
    except Exception as err:  # nbformat raises several types for malformed documents
        raise UnreadableNotebook(f"not a readable notebook: {err}") from None


class Normalise(Preprocessor):
    """Upgrade, repair cell ids and metadata, validate (a failure is a note, not a stop)."""

    def preprocess(self, nb, resources):
        ctx = context(resources)
        nb = nbformat.v4.upgrade(nb)
        for cell in nb.cells:  # a cell a student typed into JSON by hand may lack these
            cell.setdefault("metadata", {})
            if cell.get("cell_type") == "code":
                cell.setdefault("outputs", [])
                cell.setdefault("execution_count", None)
            if not isinstance(cell.get("source", ""), str):
                cell["source"] = "".join(cell["source"])
        ids = [c.get("id") for c in nb.cells]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            changes, fixed = nbformat.validator.normalize(nb, strip_invalid_metadata=True)
        nb = nbformat.from_dict(fixed)
        if None not in ids and len(set(ids)) < len(ids):
            ctx.note("duplicate cell ids renumbered (copied cells)")
        elif changes:
            ctx.note(f"notebook format repaired ({changes} changes)")
        try:
            nbformat.validate(nb)
        except nbformat.ValidationError as err:
            ctx.note(f"notebook does not validate ({err.message[:120]}); graded anyway")
        return nb, resources
