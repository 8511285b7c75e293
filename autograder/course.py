"""The nbgrader course directory: layout, settings, ``setup`` and ``generate``.

A course directory holds everything of one class::

    nbgrader_config.py  gradebook.db  autograder.toml
    source/<lab>/<lab>.ipynb          the instructor's notebooks (copied from labs/)
    release/<lab>/<lab>.ipynb         the student versions (solutions and hidden tests stripped)
    submitted/<student>/<lab>/        what ``collect`` took in (+ timestamp.txt)
    autograded/<student>/<lab>/       the executed, restored notebooks
    feedback/<student>/<lab>/         feedback HTML
    exports/                          grades.csv, summary.txt, scores.png

Example::

    course = setup("/srv/class", labs_dir="labs")       # every lab in labs/
    course.assignments()                                # ['lab01_local_chat', 'lab03_memory']
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

import nbformat

from courselib.config import Schema, read_toml, setting
from courselib.errors import CourseError

CONFIG_FILE = "autograder.toml"
Isolation = Literal["none", "namespaces", "sandbox"]
ISOLATIONS: tuple[str, ...] = get_args(Isolation)
"""How far each kernel is kept from the grader: see ``GradeSettings.isolation``."""
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"


def hidden_lines(source: str) -> set[int]:
    """1-based numbers of the lines inside ``### BEGIN/END HIDDEN TESTS``, markers included."""
    hidden, inside = set(), False
    for number, line in enumerate(source.split("\n"), start=1):
        if HIDDEN_BEGIN in line:
            inside = True
        if inside:
            hidden.add(number)
        if HIDDEN_END in line:
            inside = False
    return hidden


SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"


@dataclass(frozen=True)
class GradeSettings:
    """How submissions are executed: ``grade``'s flags, ``COURSELAB_GRADE_<NAME>``, ``[grade]``
    in autograder.toml, the defaults here (read by :data:`GRADE`, :mod:`courselib.config`)."""

    cell_timeout: float = setting(
        "Seconds one cell may run before the kernel is interrupted (the cell then scores 0).",
        60.0,
    )
    notebook_timeout: float = setting(
        "Seconds the whole notebook may run; cells after that are not run (their tests score 0).",
        600.0,
    )
    memory_mb: int = setting(
        "Cap on the kernel's data memory in MiB (RLIMIT_DATA, heap and anonymous maps), 0 for "
        "none.",
        4096,
    )
    run_after_last_test: bool = setting(
        "Also run the cells after the last test cell (they cannot change a score; off saves time).",
        False,
        flag="--run-all-cells",
    )
    stderr_fails_test: bool = setting(
        "nbgrader's rule: any stderr output in a test cell scores it 0 (default: errors only).",
        False,
        flag="--stderr-fails",
    )
    max_tasks: int = setting(
        "Cap on the processes and threads of each kernel and all it starts (0 for none).", 256
    )
    isolation: Isolation = setting(
        "none; namespaces: each kernel in its own user, PID and network namespace (unshare): "
        "no network, and it cannot see or signal the grader (needs unprivileged user "
        "namespaces); sandbox: the same in bubblewrap, which also hides every file but the "
        "course library, the models and the submission's own folder (apt install bubblewrap).",
        "none",
    )
    tests_in_kernel: bool = setting(
        "nbgrader's way: test cells run in the student's kernel, which can forge their result "
        "(kept to measure against). Default: they run in the grader, on the notebook's values.",
        False,
    )
    kernel_threads: int = setting(
        "Threads for torch/BLAS/llama.cpp in each kernel; 0: the cores divided by the workers.",
        0,
    )
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per lab, the values papermill injects after the parameters cell (``[parameters.<lab>]``
    in autograder.toml, ``grade -p``): not a setting, so no flag or environment variable."""

    def fingerprint_fields(self, assignment: str) -> dict[str, Any]:
        """What changes a grade if it changes (not the number of workers or threads)."""
        keep = {f.name: getattr(self, f.name) for f in fields(self)}
        keep.pop("kernel_threads")
        keep["parameters"] = self.parameters.get(assignment, {})
        return keep


GRADE = Schema(GradeSettings, env_prefix="COURSELAB_GRADE_", section="grade")
"""How GradeSettings is read (:mod:`courselib.config`): ``[grade]`` of autograder.toml."""


@dataclass(frozen=True)
class Course:
    """Paths of an nbgrader course directory (see the module docstring)."""

    root: Path

    @property
    def db_path(self) -> Path:
        return self.root / "gradebook.db"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    def dir(self, step: str, *parts: str) -> Path:
        """``dir("submitted", "ada", "lab03_memory")`` -> root/submitted/ada/lab03_memory."""
        return self.root.joinpath(step, *parts)

    def source_notebook(self, assignment: str) -> Path:
        return self.dir("source", assignment, f"{assignment}.ipynb")

    def release_notebook(self, assignment: str) -> Path:
        return self.dir("release", assignment, f"{assignment}.ipynb")

    def assignments(self) -> list[str]:
        """Labs in source/, each a folder holding ``<lab>.ipynb``."""
        src = self.root / "source"
        return sorted(p.parent.name for p in src.glob("*/*.ipynb") if p.stem == p.parent.name)

    def settings(self, **overrides: Any) -> GradeSettings:
        """The grading settings from ``overrides`` (None = not given), the environment and
        autograder.toml's ``[grade]``, with its ``[parameters.<lab>]``."""
        path = self.root / CONFIG_FILE
        parameters = read_toml(path).get("parameters", {}) if path.is_file() else {}
        return GRADE.load(args=overrides, path=path, extra={"parameters": parameters})

    def config(self):
        """The traitlets Config nbgrader's API needs for this course."""
        from traitlets.config import Config

        config = Config()
        config.CourseDirectory.root = str(self.root)
        config.CourseDirectory.db_url = self.db_url
        return config

    def api(self, config=None):
        """nbgrader's ``NbGraderAPI`` for this course (``config`` merged over the course's)."""
        from nbgrader.apps import NbGraderAPI

        merged = self.config()
        if config is not None:
            merged.merge(config)
        return NbGraderAPI(config=merged)


@contextlib.contextmanager
def venv_on_path() -> Iterator[None]:
    """nbgrader creates the gradebook by running ``alembic``: put this Python's bin first."""
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{old}"
    try:
        yield
    finally:
        os.environ["PATH"] = old


def _config_text(course: Course) -> str:
    return (
        "# nbgrader configuration of this course (written by python -m autograder setup)\n"
        "c = get_config()  # noqa: F821\n"
        f"c.CourseDirectory.root = {str(course.root)!r}\n"
        f"c.CourseDirectory.db_url = {course.db_url!r}\n"
    )


def _settings_text() -> str:
    return GRADE.commented_toml(
        title="Autograder settings (python -m autograder grade reads them; its flags override)."
    ) + "\n".join(
        [
            "",
            "# Values injected after each lab's parameters cell, e.g.",
            "# [parameters.lab03_memory]",
            "# N_CTX = 256",
            "# [parameters.lab02_class_server]   (the graded cells need no server: these only matter",
            '# SERVER_URL = "https://llm.example.edu/v1"   with run_after_last_test = true)',
            '# API_KEY = "sk-course-grader"',
            '# MODEL = "wizard-vicuna-13b"',
            "# [parameters.lab04_finetune]   (likewise: its graded cells come before any training)",
            "# TRAIN_STEPS = 40",
            "# QLORA_STEPS = 0",
            '# MEASURE_MODEL = "course-chat"',
            "",
        ]
    )


def setup(
    root: str | os.PathLike[str],
    *,
    labs_dir: str | os.PathLike[str] = "labs",
    assignments: list[str] | None = None,
    generate_versions: bool = True,
) -> Course:
    """Create (or update) a course directory from ``labs_dir`` and generate the student versions.

    Copies ``labs_dir/<lab>/`` to ``source/<lab>/`` (every lab, or ``assignments``), writes
    nbgrader_config.py and, if missing, autograder.toml with the default settings.
    """
    course = Course(Path(root).resolve())
    labs = Path(labs_dir)
    names = assignments or sorted(p.parent.name for p in labs.glob("*/*.ipynb"))
    if not names:
        raise CourseError(
            f"There are no lab notebooks in {labs} (looked for {labs}/<lab>/<lab>.ipynb).",
            hint="Pass --labs with the folder holding the course's labs (the repository's labs/).",
        )
    course.root.mkdir(parents=True, exist_ok=True)
    for name in names:
        src = labs / name
        if not (src / f"{name}.ipynb").exists():
            raise CourseError(
                f"{src}/{name}.ipynb does not exist.",
                hint=f"Name one of the labs in {labs}, or fix the --labs folder.",
            )
        dest = course.dir("source", name)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(
            src, dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
        )
    (course.root / "nbgrader_config.py").write_text(_config_text(course))
    if not (course.root / CONFIG_FILE).exists():
        (course.root / CONFIG_FILE).write_text(_settings_text())
    if generate_versions:
        for name in names:
            generate(course, name)
    return course


def generate(course: Course, assignment: str) -> dict[str, float]:
    """Generate the student version of ``assignment`` and check it; -> points per test cell.

    Raises CourseError if nbgrader fails, or if the student version still holds a solution or
    a hidden test, or has no graded cell.
    """
    if not course.source_notebook(assignment).exists():
        raise CourseError(
            f"{course.source_notebook(assignment)} does not exist.",
            hint=f"Run `python -m autograder setup {course.root}` first.",
        )
    with venv_on_path():
        result = course.api().generate_assignment(assignment, force=True)
    if not result["success"]:
        raise CourseError(
            f"nbgrader could not make the student version of {assignment}:\n{result['log']}",
            hint="Fix the source notebook where nbgrader's log above says, then run setup again.",
        )
    return check_release(course, assignment)


def check_release(course: Course, assignment: str) -> dict[str, float]:
    """The student version holds no solution or hidden test; -> points per test cell."""
    release = nbformat.read(course.release_notebook(assignment), as_version=4)
    text = "\n".join(c.source for c in release.cells)
    for marker in (SOLUTION_BEGIN, SOLUTION_END, HIDDEN_BEGIN, HIDDEN_END):
        if marker in text:
            raise CourseError(
                f"The student version of {assignment} still contains {marker!r}.",
                hint="Close every solution or hidden-test block in the source notebook "
                "(### END ...), then run setup again.",
            )
    points = {
        c.metadata.nbgrader["grade_id"]: float(c.metadata.nbgrader.get("points", 0))
        for c in release.cells
        if c.metadata.get("nbgrader", {}).get("grade")
    }
    if not points or sum(points.values()) <= 0:
        raise CourseError(
            f"{assignment} has no graded cell with points.",
            hint="Give its test cells points (nbgrader metadata), then run setup again.",
        )
    return points


def settings_dict(settings: GradeSettings) -> dict[str, Any]:
    """``settings`` as plain data (sent to worker processes)."""
    return asdict(settings)
