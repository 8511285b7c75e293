"""Score the executed notebook: nbgrader's rule per test cell, with three changes.

nbgrader's ``determine_grade`` gives a test cell its points unless an output is an error or on
stderr (a float result gives partial credit). Here:

- a test cell the kernel never ran scores 0 (nbgrader would give full points to a cell
  without outputs);
- stderr output does not zero a test (a library's warning is not a failed check), unless
  ``stderr_fails_test``; it is noted;
- a ``MemoryError`` anywhere is reported with the memory cap, and a process or thread that
  could not start with the process cap, so the reason is clear;
- every test cell that lost points gets a reason (``Context.lost``): the checker's words
  (checker.py) or the error it showed.

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
                where = f"cell {grade_id(cell)}" if grade_id(cell) else f"cell {index}"
                if out.get("output_type") == "error" and out.get("ename") == "MemoryError":
                    cap = ctx.settings.get("memory_mb")
                    ctx.reason(f"MemoryError in {where} (memory cap {cap} MB)")
                elif out.get("output_type") == "error" and _process_cap(out):
                    cap = ctx.settings.get("max_tasks")
                    ctx.reason(
                        f"{where} could not start another process or thread: the grader allows "
                        f"{cap} per notebook"
                    )
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
            if score is not None and score < max_score:
                why = ctx.failed.get(index) or _error_of(cell) or "it failed"
                ctx.lost[gid] = why
        return nb, resources


def _error_of(cell) -> str:
    """The error a test cell's output shows, as one line."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"{out.get('ename', 'Error')}: {out.get('evalue', '')}".rstrip(": ")[:200]
    return ""


def _process_cap(out) -> bool:
    """An error from fork/clone refused by the process cap (EAGAIN), or a thread not started."""
    text = f"{out.get('ename')}: {out.get('evalue')}"
    return "Resource temporarily unavailable" in text or "can't start new thread" in text
