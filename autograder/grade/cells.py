"""Put the instructor's cells back where they belong, before nbgrader restores their sources.

nbgrader's ``OverwriteCells`` restores a locked cell's *source* (hidden tests included) when it
finds the cell by ``grade_id``, but it fails on a copied cell (two cells with one grade_id),
re-adds deleted cells only in simple cases, never moves a cell back, and keeps the student's
metadata: a test cell whose ``grade`` flag a student turned off is not graded, and a
``skip-execution`` tag is not covered by the checksum. These steps run first, against the
student version (``release/``), and record every repair:

- ``DeduplicateGradeIds``: one cell per grade_id. A solution keeps its last copy (the one that
  ran last in the student's kernel), a locked cell its unedited copy; the other copies become
  ordinary cells (they still run, they are not graded).
- ``RestoreSourceCells``: every cell of the student version with a grade_id gets its nbgrader
  metadata, cell type and tags back; edited locked cells are reported (nbgrader restores the
  source); moved cells go back after the cell that precedes them in the student version;
  deleted ones come back from the student version (solutions as the empty stub).

Example: a student moves ``test-kv-cache`` above ``kv-cache`` and deletes ``test-finetune``:
both are put after their solution cells, with the reasons "cell test-kv-cache was moved: put
back after kv-cache" and "test cell test-finetune was missing: restored".
"""

from __future__ import annotations

import copy
from collections import defaultdict

from nbconvert.preprocessors import Preprocessor

from autograder.grade.job import context, grade_id


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _kind(cell) -> str:
    nbg = _nbgrader(cell)
    if nbg.get("grade") and cell.get("cell_type") == "code":
        return "test cell"
    if nbg.get("solution"):
        return "solution cell"
    return "locked cell" if cell.get("cell_type") == "code" else "text cell"


class DeduplicateGradeIds(Preprocessor):
    """One cell per grade_id; the other copies lose their nbgrader metadata."""

    def preprocess(self, nb, resources):
        ctx = context(resources)
        reference = {grade_id(c): c for c in ctx.release.cells if grade_id(c)}
        where = defaultdict(list)
        for i, cell in enumerate(nb.cells):
            if grade_id(cell):
                where[grade_id(cell)].append(i)
        for gid, indices in where.items():
            if len(indices) < 2:
                continue
            ref = reference.get(gid)
            if (
                ref is not None
                and _nbgrader(ref).get("locked")
                and not _nbgrader(ref).get("solution")
            ):
                unedited = [i for i in indices if nb.cells[i].source == ref.source]
                keep, which = (unedited or indices)[0], "the unedited" if unedited else "the first"
            else:
                keep, which = indices[-1], "the last"
            for i in indices:
                if i != keep:
                    del nb.cells[i].metadata["nbgrader"]
            ctx.reason(
                f"cell {gid} appears {len(indices)} times (copied cell): graded {which} copy, "
                "the others ran as ordinary cells"
            )
        return nb, resources


def _in_place(release_order: list[int]) -> set[int]:
    """Positions (into ``release_order``) of a longest increasing subsequence: the cells that
    kept their order.

    >>> sorted(_in_place([0, 3, 1, 2]))  # the cell ranked 3 moved up
    [0, 2, 3]
    """
    n = len(release_order)
    best = [1] * n
    prev = [-1] * n
    for i in range(n):
        for j in range(i):
            if release_order[j] < release_order[i] and best[j] + 1 > best[i]:
                best[i], prev[i] = best[j] + 1, j
    if not n:
        return set()
    i = max(range(n), key=lambda k: best[k])
    keep = set()
    while i >= 0:
        keep.add(i)
        i = prev[i]
    return keep


class RestoreSourceCells(Preprocessor):
    """Metadata, type and tags from the student version; moved and deleted cells put back."""

    def preprocess(self, nb, resources):
        ctx = context(resources)
        release = [c for c in ctx.release.cells if grade_id(c)]
        order = {grade_id(c): i for i, c in enumerate(release)}
        params_id = next(
            (grade_id(c) for c in release if "parameters" in c.metadata.get("tags", [])), None
        )
        for cell in nb.cells:
            gid = grade_id(cell)
            if gid is not None and gid not in order:
                del cell.metadata["nbgrader"]
                ctx.note(f"unknown grade_id {gid!r}: ran as an ordinary cell")
            elif gid is not None:
                self._reset(cell, release[order[gid]], ctx, is_params=gid == params_id)

        present = [(i, order[grade_id(c)]) for i, c in enumerate(nb.cells) if grade_id(c) in order]
        keep = {present[k][1] for k in _in_place([r for _, r in present])}
        by_rank = {r: nb.cells[i] for i, r in present}
        cells = [c for c in nb.cells if grade_id(c) not in order or order[grade_id(c)] in keep]
        for rank, ref in enumerate(release):
            if rank in keep:
                continue
            gid = grade_id(ref)
            after = grade_id(release[rank - 1]) if rank else None
            position = (
                0
                if after is None
                else 1 + next(i for i, c in enumerate(cells) if grade_id(c) == after)
            )
            if rank in by_rank:
                cell = by_rank[rank]
                where = f"after {after}" if after else "at the top"
                self._report(ctx, cell, f"{_kind(cell)} {gid} was moved: put back {where}")
            else:
                cell = copy.deepcopy(ref)
                what = "restored empty" if _nbgrader(ref).get("solution") else "restored"
                self._report(ctx, cell, f"{_kind(ref)} {gid} was missing: {what}")
            cells.insert(position, cell)
        nb.cells = cells
        return nb, resources

    @staticmethod
    def _report(ctx, cell, text: str) -> None:
        (ctx.note if cell.get("cell_type") != "code" else ctx.reason)(text)

    @staticmethod
    def _reset(cell, ref, ctx, *, is_params: bool) -> None:
        gid = grade_id(ref)
        theirs = {k: v for k, v in _nbgrader(cell).items() if k != "checksum"}
        ours = {k: v for k, v in _nbgrader(ref).items() if k != "checksum"}
        if theirs != ours:
            changed = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
            ctx.reason(f"nbgrader metadata of cell {gid} was changed ({', '.join(changed)}): reset")
        cell.metadata["nbgrader"] = copy.deepcopy(_nbgrader(ref))
        if cell.cell_type != ref.cell_type:
            ctx.reason(f"cell {gid} was turned into a {cell.cell_type} cell: turned back")
            cell.cell_type = ref.cell_type
            if ref.cell_type == "code":
                cell["outputs"], cell["execution_count"] = [], None
            else:
                cell.pop("outputs", None)
                cell.pop("execution_count", None)
        if not ours.get("locked"):
            return
        tags, ref_tags = cell.metadata.get("tags", []), ref.metadata.get("tags", [])
        if sorted(tags) != sorted(ref_tags):
            if is_params and "parameters" not in tags:
                ctx.reason(
                    f"the parameters cell ({gid}) had lost its 'parameters' tag: restored "
                    "(the grading parameters are injected after it)"
                )
            else:
                ctx.reason(f"tags of locked cell {gid} were changed ({tags}): reset")
        if ref_tags:
            cell.metadata["tags"] = list(ref_tags)
        else:
            cell.metadata.pop("tags", None)
        if cell.source != ref.source and ref.cell_type == "code":
            what = "test cell" if ours.get("grade") else "locked cell"
            ctx.reason(f"{what} {gid} was edited: restored from the gradebook")
