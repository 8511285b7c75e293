"""Checks shared by the lab notebook tests (test_lab01, test_lab03, test_labs_nbgrader).

A lab is an nbgrader *source* notebook: graded cells are located by ``grade_id``; every
solution cell carries ``### BEGIN SOLUTION`` and its test cell ``### BEGIN HIDDEN TESTS``.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

LABS_DIR = Path(__file__).resolve().parents[1] / "labs"


def read_lab(path: Path):
    """The notebook at ``path`` as an nbformat v4 node."""
    return nbformat.read(path, as_version=4)


def cell(nb, grade_id: str):
    """The one cell whose nbgrader ``grade_id`` is ``grade_id``."""
    (found,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
    return found


def assert_clean_source(nb) -> None:
    """What nbgrader and papermill need of any lab source: no outputs, unique grade ids, one
    ``parameters`` cell, the plain python3 kernel (JupyterLab asks for a kernel otherwise)."""
    assert nb.metadata.kernelspec.name == "python3"
    # the kernel `make venv` installs: JupyterLab would otherwise rewrite it (notebook modified)
    installed = re.search(r'--display-name "([^"]+)"', (LABS_DIR.parent / "Makefile").read_text())
    assert nb.metadata.kernelspec.display_name == installed.group(1)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(c.outputs or c.execution_count for c in code), "commit without outputs"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one papermill parameters cell"
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids)), "duplicate grade_id breaks nbgrader (#1083)"
    assert any("### BEGIN SOLUTION" in c.source for c in code)
    assert any("### BEGIN HIDDEN TESTS" in c.source for c in code)


def assert_graded(nb, *, points: int, parameter: str, solutions: list[str]) -> list[str]:
    """Lab-specific nbgrader layout; returns the source of each solution's test cell.

    ``points`` in locked graded cells, ``parameter`` assigned in the parameters cell, and for
    every grade id in ``solutions`` a solution cell plus ``test-<id>`` cells (``test-<id>`` and
    ``test-<id>-<part>``, each worth what it checks) with hidden tests; every test cell guards
    the student's function with ``own_work`` (calling the library's answer fails the test).
    """
    assert_clean_source(nb)
    (params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert f"{parameter} = " in params.source
    graded = [
        c.metadata["nbgrader"] for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")
    ]
    assert sum(g["points"] for g in graded) == points and all(g["locked"] for g in graded)
    tests = []
    for grade_id in solutions:
        solution = cell(nb, grade_id)
        assert solution.metadata["nbgrader"]["solution"]
        assert "### BEGIN SOLUTION" in solution.source and "### END SOLUTION" in solution.source
        parts = [c.source for c in graded_cells_of(nb, grade_id)]
        assert parts and all("= own_work(" in part for part in parts)
        tests.append("\n".join(parts))
        assert "### BEGIN HIDDEN TESTS" in tests[-1]
    return tests


def graded_cells_of(nb, grade_id: str) -> list:
    """The graded test cells of solution ``grade_id``: ``test-<id>`` and ``test-<id>-<part>``."""
    found = []
    for c in nb.cells:
        info = c.metadata.get("nbgrader", {})
        gid = info.get("grade_id", "")
        if info.get("grade") and (gid == f"test-{grade_id}" or gid.startswith(f"test-{grade_id}-")):
            found.append(c)
    return found


def solution(nb, grade_id: str, name: str, namespace: dict | None = None):
    """What solution cell ``grade_id`` defines as ``name``, the cell run in a copy of
    ``namespace`` (the names the notebook's earlier cells give it)."""
    scope = dict(namespace or {})
    exec(cell(nb, grade_id).source, scope)
    return scope[name]


def points_passed(nb, grade_id: str, namespace: dict) -> float:
    """Points of the test cells of ``grade_id`` that pass, each run in a copy of ``namespace``
    (nbgrader scores a cell all or nothing: any exception gives it 0)."""
    total = 0.0
    for test in graded_cells_of(nb, grade_id):
        try:
            exec(test.source, dict(namespace))
        except Exception:  # noqa: BLE001 - nbgrader scores a cell that raises anything 0
            continue
        total += test.metadata["nbgrader"]["points"]
    return total


def full_points(nb, grade_id: str) -> float:
    """Points of all the test cells of ``grade_id``."""
    return sum(c.metadata["nbgrader"]["points"] for c in graded_cells_of(nb, grade_id))


def assert_ran_cleanly(executed: dict) -> None:
    """No cell of an executed notebook raised, and no graded cell wrote to stderr (nbgrader
    scores a test cell with stderr output 0)."""
    for code in executed["cells"]:
        for out in code.get("outputs", []):
            assert out["output_type"] != "error", (code["source"], out)
            if code.get("metadata", {}).get("nbgrader", {}).get("grade"):
                assert out.get("name") != "stderr", "stderr in a test cell scores 0"


def output_text(executed: dict, marker: str) -> str:
    """Printed and displayed text of the one code cell whose source contains ``marker``."""
    (code,) = [c for c in executed["cells"] if c["cell_type"] == "code" and marker in c["source"]]
    parts = []
    for out in code["outputs"]:
        parts.append(out.get("text", ""))
        parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join("".join(p) if isinstance(p, list) else p for p in parts)
