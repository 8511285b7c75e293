"""Attacks on the grade itself, on every lab: student code that tries to forge a test's verdict
or read the hidden tests, graded for real (nbgrader, papermill, a kernel per submission).

Each attack is added to the *wrong* submission (every solution returns 0): it must score no
more than the wrong submission alone, and an attack that changes the kernel must be flagged.
The same features used harmlessly with the *right* answers (a student's own input
transformer, ``math`` under another name) keep full marks. No exported feedback may contain a
hidden test's text.
"""

from __future__ import annotations

import re

import pytest
from labcheck import LABS_DIR

from autograder.collect import collect
from autograder.course import setup
from autograder.export.feedback import generate_feedback, hidden_texts
from autograder.grade import grade
from autograder.grade.ledger import Ledger
from autograder.sample_class import WRONG, _fill, _submission, analyse

pytestmark = pytest.mark.slow

LABS = ["lab01_local_chat", "lab02_class_server", "lab03_memory", "lab04_finetune"]

# Cell-level code appended to the first solution cell: (name, lines, must be flagged).
ATTACKS = {
    "patched-isclose": (["import math", "math.isclose = lambda *a, **k: True"], True),
    "input-transformer": (
        [
            "def _neuter(lines):",
            "    return ['pass\\n'] if any('assert' in l for l in lines) else lines",
            "get_ipython().input_transformers_post.append(_neuter)",
        ],
        True,
    ),
    "transform-cell": (
        [
            "_ip = get_ipython()",
            "_orig = _ip.transform_cell",
            "_ip.transform_cell = lambda cell: 'pass\\n' if 'assert' in cell else _orig(cell)",
        ],
        True,
    ),
    "custom-exception-handler": (
        ["get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)"],
        True,
    ),
    "silent-showtraceback": (
        ["get_ipython().showtraceback = lambda *a, **k: None"],
        True,
    ),
    "post-run-cell-event": (
        [
            "def _forget(result):",
            "    result.error_in_exec = None",
            "get_ipython().events.register('post_run_cell', _forget)",
        ],
        True,
    ),
    "prints-every-cell": (
        [
            "get_ipython().events.register('pre_run_cell', lambda info: print(info.raw_cell))",
        ],
        True,
    ),
    "disabled-own-work-guard": (
        [
            "import courselib.grading as _g",
            "_g.own_work = lambda f, lab: f",
            "_g.blocked.__code__ = (lambda *a, **k: __import__('contextlib').nullcontext()).__code__",
        ],
        True,
    ),
}
HARMLESS = [
    "import math as m2",
    "def _my_transformer(lines):  # a student's own, changing nothing",
    "    return lines",
    "get_ipython().input_transformers_cleanup.append(_my_transformer)",
]
ALWAYS_EQUAL = [
    "class _Yes:",
    "    def __eq__(self, other): return True",
    "    def __ne__(self, other): return False",
    "    def __bool__(self): return True",
    "    def __getitem__(self, key): return self",
    "    def __iter__(self): return iter([self, self])",
    "    def __lt__(self, other): return True",
    "    def __gt__(self, other): return True",
    "    def __float__(self): return 0.0",
    "    def startswith(self, *a): return True",
]


def _graded(tmp_path, lab_name: str, submissions: dict) -> tuple[dict, object]:
    course = setup(tmp_path / "course", labs_dir=LABS_DIR, assignments=[lab_name])
    folder = tmp_path / "class"
    folder.mkdir()
    lab = analyse(course, lab_name)
    import json

    for name, build in submissions.items():
        (folder / f"{name}.ipynb").write_text(json.dumps(build(lab), indent=1))
    collect(course, lab_name, folder)
    settings = course.settings(cell_timeout=120.0, notebook_timeout=600.0, memory_mb=4096)
    settings.parameters[lab_name] = {
        "lab01_local_chat": {"MAX_TOKENS": 8},
        "lab02_class_server": {"REQUESTS": 1, "MAX_TOKENS": 4},
        "lab03_memory": {"TRAIN_METHODS": []},
        "lab04_finetune": {"TRAIN_STEPS": 2, "QLORA_STEPS": 0, "MEASURE_TIPS": False},
    }[lab_name]
    report = grade(course, lab_name, workers=2, settings=settings, progress=False)
    assert report.graded == len(submissions)
    with Ledger(course.db_url) as ledger:
        rows = {r["student"]: r for r in ledger.rows(lab_name)}
    return rows, course


def _with(lines: list[str], *, right: bool):
    def build(lab):
        first = next(iter(lab.solutions))
        overrides = {g: _fill(s) if right else _fill(s, WRONG) for g, s in lab.solutions.items()}
        overrides[first] += "\n" + "\n".join(lines) + "\n"
        return _submission(lab, overrides)

    return build


def _always_equal(lab):
    overrides = {g: _fill(s, ["return _Yes()"]) for g, s in lab.solutions.items()}
    first = next(iter(lab.solutions))
    overrides[first] = "\n".join(ALWAYS_EQUAL) + "\n\n" + overrides[first]
    return _submission(lab, overrides)


@pytest.mark.parametrize("lab_name", LABS)
def test_attacks_score_no_more_than_the_wrong_answer(tmp_path, lab_name):
    submissions = {
        "wrong": _with([], right=False),
        "right": _with([], right=True),
        "harmless": _with(HARMLESS, right=True),
        "always-equal": _always_equal,
        **{name: _with(lines, right=False) for name, (lines, _) in ATTACKS.items()},
    }
    rows, course = _graded(tmp_path, lab_name, submissions)
    top = rows["right"]["max_score"]
    assert rows["right"]["score"] == top and rows["harmless"]["score"] == top, {
        k: (rows[k]["score"], rows[k]["lost"]) for k in ("right", "harmless")
    }
    base = rows["wrong"]["score"]
    assert base < top
    assert rows["wrong"]["lost"], "every lost point has a reason"
    forged = {
        name: (rows[name]["score"], rows[name]["lost"])
        for name in ["always-equal", *ATTACKS]
        if rows[name]["score"] > base
    }
    assert forged == {}
    unflagged = [name for name, (_, flag) in ATTACKS.items() if flag and not rows[name]["flags"]]
    assert unflagged == []
    assert not rows["right"]["flags"]

    generate_feedback(course, lab_name)
    import nbformat

    secrets = hidden_texts(nbformat.read(course.source_notebook(lab_name), as_version=4))
    assert secrets
    for page in (course.root / "feedback").rglob("*.html"):
        html = re.sub(r"(?s)<style.*?</style>|<script.*?</script>", "", page.read_text())
        leaked = [s for s in secrets if s in html]
        assert leaked == [], (page, leaked[:3])
