"""Every lab notebook is a valid nbgrader source: nbgrader really generates the student version."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from labcheck import LABS_DIR, assert_clean_source, read_lab

LABS = sorted(LABS_DIR.glob("*/*.ipynb"))


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@pytest.mark.parametrize("lab", LABS, ids=[p.parent.name for p in LABS])
def test_lab_source_is_clean_and_parameterised(lab):
    assert_clean_source(read_lab(lab))


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
    text = "\n".join(_source(c) for c in student["cells"])
    assert "### BEGIN SOLUTION" not in text and "### BEGIN HIDDEN TESTS" not in text
    assert "YOUR CODE HERE" in text
    points = sum(
        c["metadata"]["nbgrader"].get("points", 0)
        for c in student["cells"]
        if c.get("metadata", {}).get("nbgrader", {}).get("grade")
    )
    assert points > 0
