"""Score the executed notebook: nbgrader's rule per test cell, with three changes.

nbgrader's ``determine_grade`` gives a test cell its points unless an output is an error or on
stderr (a float result gives partial credit). Here:

- a test cell the kernel never ran scores 0 (nbgrader would give full points to a cell
  without outputs);
- stderr output does not zero a test (a library's warning is not a failed check), unless
  ``stderr_fails_test``; it is noted;
- a ``MemoryError`` anywhere is reported with the memory cap, so the reason is clear.

Example: a test cell with outputs ``[stream stderr "UserWarning: ..."]`` scores its full points
and adds the note "stderr output in test-kv-cache ignored".
"""

from __future__ import annotations

import copy

from nbconvert.preprocessors import Preprocessor
from nbgrader.utils import determine_grade

from autograder.grade.job import context, grade_id, is_test


class Score(Preprocessor):
    """Points per grade cell into ``Context.scores``."""

    def preprocess(self, nb, resources):
        ctx = context(resources)
        strict = bool(ctx.settings.get("stderr_fails_test"))
        for index, cell in enumerate(nb.cells):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error" and out.get("ename") == "MemoryError":
                    where = f"cell {grade_id(cell)}" if grade_id(cell) else f"cell {index}"
                    cap = ctx.settings.get("memory_mb")
                    ctx.reason(f"MemoryError in {where} (memory cap {cap} MB)")
            if not cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
                continue
            gid = grade_id(cell)
            if is_test(cell) and index not in ctx.executed:
                ctx.scores[gid] = 0.0
                ctx.max_scores[gid] = float(cell.metadata.nbgrader.get("points", 0))
                why = ctx.not_run.get(index, "unknown")
                if f"cell {gid} " not in f"{why} ":  # else the reason already names this cell
                    ctx.reason(f"test cell {gid} scored 0, not run: {why}")
                continue
            scored = cell
            stderr = [o for o in cell.get("outputs", []) if o.get("name") == "stderr"]
            if stderr and not strict:
                scored = copy.deepcopy(cell)
                scored.outputs = [o for o in cell.outputs if o.get("name") != "stderr"]
                ctx.note(f"stderr output in {gid} ignored")
            score, max_score = determine_grade(scored)
            ctx.scores[gid] = score
            ctx.max_scores[gid] = max_score
        return nb, resources
