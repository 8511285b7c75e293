"""Every lab notebook is a valid nbgrader source: nbgrader really generates the student version."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

LABS = sorted((Path(__file__).resolve().parents[1] / "labs").glob("*/*.ipynb"))


def _cells(nb: dict) -> list[dict]:
    return nb["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@pytest.mark.parametrize("lab", LABS, ids=[p.parent.name for p in LABS])
def test_lab_source_is_clean_and_parameterised(lab):
    nb = json.loads(lab.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"  # JupyterLab asks otherwise
    code = [c for c in _cells(nb) if c["cell_type"] == "code"]
    assert not any(c.get("outputs") or c.get("execution_count") for c in code), (
        "commit without outputs"
    )
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one papermill parameters cell"
    grade_ids = [
        c["metadata"]["nbgrader"]["grade_id"]
        for c in _cells(nb)
        if "nbgrader" in c.get("metadata", {})
    ]
    assert len(grade_ids) == len(set(grade_ids)), "duplicate grade_id breaks nbgrader (#1083)"
    assert any("### BEGIN SOLUTION" in _source(c) for c in code)
    assert any("### BEGIN HIDDEN TESTS" in _source(c) for c in code)


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS, ids=[p.parent.name for p in LABS])
def test_nbgrader_generates_the_student_version(lab, tmp_path, monkeypatch):
    """Solutions and hidden tests are stripped; graded cells keep their points."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    # nbgrader shells out to alembic to create the gradebook: the venv's bin must be on PATH
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    assignment = lab.parent.name
    shutil.copytree(lab.parent, tmp_path / "source" / assignment)
    config = Config()
    config.CourseDirectory.root = str(tmp_path)
    config.CourseDirectory.db_url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    api = NbGraderAPI(config=config)
    result = api.generate_assignment(assignment)
    assert result["success"], result.get("log") or result.get("error")

    student = json.loads((tmp_path / "release" / assignment / lab.name).read_text())
    text = "\n".join(_source(c) for c in _cells(student))
    assert "### BEGIN SOLUTION" not in text and "### BEGIN HIDDEN TESTS" not in text
    assert "YOUR CODE HERE" in text
    points = sum(
        c["metadata"]["nbgrader"].get("points", 0)
        for c in _cells(student)
        if c.get("metadata", {}).get("nbgrader", {}).get("grade")
    )
    assert points > 0
