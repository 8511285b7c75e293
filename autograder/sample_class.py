"""A sample class for a lab: submissions made from its solution, each with its expected result.

Built from any lab: the student version (``release/``) with the solution regions of the
instructor's notebook filled in, right or wrong. Which tests a broken solution fails is worked
out from the code: a test cell depends on a solution cell if it uses a name the solution cell
defines, or a name of a solution cell that uses one (``bits_per_weight`` inside
``finetune_gb``). The changes go into *leaf* solution cells (no other solution uses them), so
the expected score is exact: the points of the tests that use the leaf.

=========================  ===========================================================  ======
student                    what the notebook does                                       reason
=========================  ===========================================================  ======
correct                    every solution                                               --
partly-correct             one solution returns 0                                       --
wrong                      every solution returns 0                                     --
syntax-error               one solution cell does not parse                             --
infinite-loop              one solution loops forever                                   yes
ignores-interrupt          loops with SIGINT ignored (the kernel must be killed)        yes
memory-hog                 allocates past the memory cap (``memory_mb`` + 256 MB)       yes
crashes-kernel             kills its own kernel                                         yes
kills-its-worker           kills the worker process grading it (scored 0 when it does   yes
                           it again, graded alone; with isolation it cannot: full marks)
tampered-test              a wrong answer, its test edited to ``pass`` with a fake      yes
                           "passed" output, and its ``grade`` flag turned off
removed-parameters-tag     the parameters cell lost its tag                             yes
deleted-and-moved-cells    a test cell deleted, another moved to the top                yes
copied-cell                a solution cell copied (same ids), the first copy wrong      yes
reads-other-files          one solution reads the instructor's notebook by a path       --
                           relative to nbgrader's autograded/<student>/<lab>/ folder
reads-by-absolute-path     the same by absolute path: works (full marks) unless the     --
                           kernel runs in the sandbox
tries-the-network          a solution connects to the internet before answering         --
noisy-stderr               solutions print to stderr and warn                           --
broken-json                the file is cut in half                                      yes
=========================  ===========================================================  ======

Example::

    expected = make_sample_class(course, "lab03_memory", "class/", memory_mb=1024)
    expected["partly-correct"]   # Expected(score=5.0, max_score=8.0, reasons=[], ...)
"""

from __future__ import annotations

import ast
import copy
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from autograder.course import SOLUTION_BEGIN, SOLUTION_END, Course
from autograder.grade.job import grade_id, is_test, nbgrader_id


@dataclass
class Expected:
    score: float
    max_score: float
    reasons: list[str] = field(default_factory=list)
    """Substrings: each must be in one of the result's reasons, and each reason must contain
    one of them (an empty list: the submission is graded with no reason)."""
    about: str = ""


@dataclass
class Lab:
    """What the generator knows about a lab (see ``analyse``)."""

    release: NotebookNode
    source: Path
    """The instructor's notebook (solutions and hidden tests), by absolute path."""
    solutions: dict[str, str]
    """Solution cell grade_id -> the instructor's source, markers included."""
    points: dict[str, float]
    """Test cell grade_id -> points, in notebook order."""
    uses: dict[str, set[str]]
    """Test cell grade_id -> solution cells it depends on (directly or through another)."""
    leaves: list[str]
    """Solution cells no other solution cell uses, in notebook order."""

    @property
    def total(self) -> float:
        return sum(self.points.values())

    def lost(self, *broken: str) -> float:
        """Points of the tests that depend on any of the ``broken`` solution cells."""
        return sum(p for t, p in self.points.items() if self.uses[t] & set(broken))

    def leaf(self, k: int) -> str:
        return self.leaves[k % len(self.leaves)]

    def test_of(self, solution: str) -> str:
        return self.tests_of(solution)[0]

    def tests_of(self, solution: str) -> list[str]:
        """The test cells that use ``solution``, in notebook order."""
        return [t for t in self.points if solution in self.uses[t]]


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names defined at top level, names used) by a cell's source."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set(), set(re.findall(r"[A-Za-z_]\w*", source))
    defined = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    return defined, used


def analyse(course: Course, assignment: str) -> Lab:
    """Solutions, tests (hidden ones included) and who depends on whom, for ``assignment``."""
    source = nbformat.read(course.source_notebook(assignment), as_version=4)
    release = nbformat.read(course.release_notebook(assignment), as_version=4)
    solutions = {
        nbgrader_id(c): c.source
        for c in source.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }
    tests = {nbgrader_id(c): c for c in source.cells if is_test(c)}
    names = {gid: _names(src) for gid, src in solutions.items()}
    # solution s "reaches" r if s uses a name r defines (s breaks when r breaks)
    reaches = {s: {r for r in solutions if r != s and names[r][0] & names[s][1]} for s in solutions}
    changed = True
    while changed:
        changed = False
        for s in solutions:
            extra = set().union(*(reaches[r] for r in reaches[s])) - reaches[s] - {s}
            if extra:
                reaches[s] |= extra
                changed = True
    uses = {}
    for gid, cell in tests.items():
        used = _names(cell.source)[1]
        direct = {s for s in solutions if names[s][0] & used}
        uses[gid] = direct.union(*(reaches[s] for s in direct)) if direct else set()
    users = {r for s in solutions for r in reaches[s]}
    leaves = [s for s in solutions if s not in users and any(s in u for u in uses.values())]
    if not leaves:
        raise ValueError(
            f"{assignment}: no solution cell that a test uses and no other solution does"
        )
    points = {gid: float(c.metadata.nbgrader.get("points", 0)) for gid, c in tests.items()}
    source_path = Path(course.source_notebook(assignment)).resolve()
    return Lab(release, source_path, solutions, points, uses, leaves)


def _fill(source: str, body: list[str] | None = None, *, before: list[str] | None = None) -> str:
    """The solution with its markers removed; ``body`` replaces each solution region,
    ``before`` goes in front of it (both indented like the region)."""
    out, inside = [], False
    for line in source.split("\n"):
        if SOLUTION_BEGIN in line:
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + b for b in (before or [])]
            if body is not None:
                out += [indent + b for b in body]
        elif SOLUTION_END in line:
            inside = False
        elif not inside or body is None:
            out.append(line)
    return "\n".join(out)


def _cell(nb: NotebookNode, gid: str) -> NotebookNode:
    return next(c for c in nb.cells if grade_id(c) == gid)


def _submission(lab: Lab, overrides: dict[str, str] | None = None) -> NotebookNode:
    """The student version with every solution filled in (``overrides``: other code per cell)."""
    nb = copy.deepcopy(lab.release)
    for gid, src in lab.solutions.items():
        _cell(nb, gid).source = (overrides or {}).get(gid) or _fill(src)
    return nb


WRONG = ["return 0"]
LOOP = ["while True:", "    pass"]
STUBBORN = ["import signal", "signal.signal(signal.SIGINT, signal.SIG_IGN)", *LOOP]
CRASH = ["import os, signal", "os.kill(os.getpid(), signal.SIGKILL)"]
KILL_GRADER = ["import os, signal", "os.kill(os.getppid(), signal.SIGKILL)  # the grading worker"]


def _hog(memory_mb: int) -> list[str]:
    chunks = (memory_mb + 256) // 32 + 1
    return [f"_hog = [bytearray(32 * 2**20) for _ in range({chunks})]  # past the memory cap"]


def _reads_files(path: str, gid: str) -> list[str]:
    """Fetch the instructor's solution from ``path`` and run it."""
    return [
        "import json",
        f"_cells = json.load(open({path!r}))['cells']",
        f"_src = [''.join(c['source']) for c in _cells if c['metadata'].get('nbgrader', {{}}).get('grade_id') == {gid!r}][0]",
        "exec(_src, globals())",
        "_name = _src.split('def ')[1].split('(')[0]",
        "return globals()[_name](*args, **kwargs)",
    ]


Variant = Callable[..., tuple[NotebookNode | bytes, Expected]]


def _correct(lab, assignment, memory_mb, **_):
    return _submission(lab), Expected(lab.total, lab.total, about="every solution")


def _partly(lab, assignment, memory_mb, **_):
    a = lab.leaf(0)
    nb = _submission(lab, {a: _fill(lab.solutions[a], WRONG)})
    return nb, Expected(lab.total - lab.lost(a), lab.total, about=f"{a} returns 0")


def _wrong(lab, assignment, memory_mb, **_):
    nb = _submission(lab, {g: _fill(s, WRONG) for g, s in lab.solutions.items()})
    return nb, Expected(0.0, lab.total, about="every solution returns 0")


def _syntax(lab, assignment, memory_mb, **_):
    b = lab.leaf(1)
    nb = _submission(lab, {b: _fill(lab.solutions[b], ["return (1 +"])})
    return nb, Expected(lab.total - lab.lost(b), lab.total, about=f"{b} does not parse")


def _loop(lab, assignment, memory_mb, **_):
    c = lab.leaf(2)
    nb = _submission(lab, {c: _fill(lab.solutions[c], before=LOOP)})
    # interrupted in every test cell that calls it (a test cell is worth what it checks)
    reasons = [f"{t} was stopped at the cell time limit" for t in lab.tests_of(c)]
    return nb, Expected(lab.total - lab.lost(c), lab.total, reasons, about=f"{c} loops forever")


def _lost_from(lab: Lab, test: str, broken: str) -> float:
    """Points lost when the kernel stops in ``test``: it, and every later test."""
    order = list(lab.points)
    later = order[order.index(test) :]
    return sum(p for t, p in lab.points.items() if t in later or broken in lab.uses[t])


def _stubborn(lab, assignment, memory_mb, **_):
    c = lab.leaf(2)
    test = lab.test_of(c)
    nb = _submission(lab, {c: _fill(lab.solutions[c], before=STUBBORN)})
    reasons = [
        f"{test} was stopped at the cell time limit",
        f"kernel did not stop after cell {test}",
    ]
    if test != list(lab.points)[-1]:
        reasons.append("scored 0, not run")
    lost = _lost_from(lab, test, c)
    return nb, Expected(lab.total - lost, lab.total, reasons, about=f"{c} loops, ignoring Ctrl-C")


def _memory(lab, assignment, memory_mb, **_):
    b = lab.leaf(1)
    nb = _submission(lab, {b: _fill(lab.solutions[b], before=_hog(memory_mb))})
    about = f"{b} allocates {memory_mb + 256} MB"
    return nb, Expected(lab.total - lab.lost(b), lab.total, ["MemoryError in"], about=about)


def _crash(lab, assignment, memory_mb, **_):
    c = lab.leaf(2)
    test = lab.test_of(c)
    nb = _submission(lab, {c: _fill(lab.solutions[c], before=CRASH)})
    reasons = [f"the kernel died while running cell {test}"]
    if test != list(lab.points)[-1]:
        reasons.append("scored 0, not run")
    return nb, Expected(
        lab.total - _lost_from(lab, test, c), lab.total, reasons, about=f"{c} kills its kernel"
    )


def _kills_worker(lab, assignment, memory_mb, *, isolation="none"):
    c = lab.leaf(2)
    nb = _submission(lab, {c: _fill(lab.solutions[c], before=KILL_GRADER)})
    if isolation != "none":  # its parent is the namespace's init, which ignores it
        return nb, Expected(lab.total, lab.total, about=f"{c} tries to kill its grader: cannot")
    about = f"{c} kills the process grading it"
    return nb, Expected(0.0, lab.total, ["its grading worker died"], about=about)


def _tampered(lab, assignment, memory_mb, **_):
    a = lab.leaf(0)
    test = lab.test_of(a)
    nb = _submission(lab, {a: _fill(lab.solutions[a], WRONG)})
    cell = _cell(nb, test)
    cell.source = "pass"
    cell.metadata.nbgrader["grade"] = False
    cell.execution_count = 7
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="all tests passed\n")]
    reasons = [f"metadata of cell {test} was changed", f"test cell {test} was edited"]
    return nb, Expected(
        lab.total - lab.lost(a), lab.total, reasons, about=f"{a} wrong, {test} edited to pass"
    )


def _no_tag(lab, assignment, memory_mb, **_):
    nb = _submission(lab)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "parameters" in tags:
            cell.metadata["tags"] = [t for t in tags if t != "parameters"]
    return nb, Expected(
        lab.total, lab.total, ["lost its 'parameters' tag"], about="parameters tag removed"
    )


def _deleted(lab, assignment, memory_mb, **_):
    a, b = lab.leaf(0), lab.leaf(1)
    ta, tb = lab.test_of(a), lab.test_of(b)
    nb = _submission(lab)
    moved = _cell(nb, ta)
    nb.cells = [c for c in nb.cells if grade_id(c) not in (ta, tb) and c is not nb.cells[0]]
    nb.cells.insert(0, moved)
    reasons = [f"{tb} was missing", f"{ta} was moved"]
    return nb, Expected(
        lab.total, lab.total, reasons, about=f"{tb} and the first cell deleted, {ta} moved up"
    )


def _copied(lab, assignment, memory_mb, **_):
    b = lab.leaf(1)
    nb = _submission(lab)
    original = _cell(nb, b)
    bad = copy.deepcopy(original)
    bad.source = _fill(lab.solutions[b], WRONG)
    nb.cells.insert(nb.cells.index(original), bad)
    about = f"{b} copied (same ids), the first copy wrong"
    return nb, Expected(lab.total, lab.total, [f"{b} appears 2 times"], about=about)


def _reads(lab, assignment, memory_mb, **_):
    """From where stock nbgrader runs the notebook: the grader runs it in an empty folder."""
    path = f"../../../source/{assignment}/{assignment}.ipynb"
    nb, a = _reading(lab, path)
    about = f"{a} execs the instructor's solution, read from ../../../source/"
    return nb, Expected(lab.total - lab.lost(a), lab.total, about=about)


def _reads_absolute(lab, assignment, memory_mb, *, isolation="none"):
    """By absolute path: only the sandbox hides the file (else the cheat earns full marks)."""
    nb, a = _reading(lab, str(lab.source))
    if isolation == "sandbox":
        about = f"{a} tries to exec the instructor's solution by absolute path: not there"
        return nb, Expected(lab.total - lab.lost(a), lab.total, about=about)
    about = f"{a} execs the instructor's solution, read by absolute path (no sandbox: it works)"
    return nb, Expected(lab.total, lab.total, about=about)


def _reading(lab, path: str) -> tuple[NotebookNode, str]:
    """The submission whose first leaf solution reads the instructor's notebook at ``path``."""
    a = lab.leaf(0)
    source = lab.solutions[a]
    header = source.split(SOLUTION_BEGIN)[0]
    signature = re.search(r"def (\w+)\(", header)
    if signature is None:
        raise ValueError(f"solution cell {a} does not start with a function")
    head, rest = header.split(f"def {signature.group(1)}(", 1)
    indent = "    "
    code = f"{head}def {signature.group(1)}(*args, **kwargs):\n" + "\n".join(
        indent + line for line in _reads_files(path, a)
    )
    return _submission(lab, {a: code}), a


def _network(lab, assignment, memory_mb, **_):
    """Phones home before answering: the grade must not depend on it, nor the run hang."""
    a = lab.leaf(0)
    call = [
        "import socket",
        "try:",
        "    socket.create_connection(('1.1.1.1', 443), timeout=2).close()  # the internet",
        "except OSError:",
        "    pass",
    ]
    nb = _submission(lab, {a: _fill(lab.solutions[a], before=call)})
    return nb, Expected(lab.total, lab.total, about=f"{a} opens a connection to the internet")


def _noisy(lab, assignment, memory_mb, **_):
    noise = [
        "import sys, warnings",
        "print('debug: working', file=sys.stderr)",
        "warnings.warn('noisy student code')",
    ]
    nb = _submission(lab, {g: _fill(s, before=noise) for g, s in lab.solutions.items()})
    return nb, Expected(lab.total, lab.total, about="every solution prints to stderr and warns")


def _broken(lab, assignment, memory_mb, **_):
    data = json.dumps(_submission(lab), indent=1).encode()
    return data[: len(data) // 2], Expected(
        0.0, lab.total, ["not valid JSON"], about="file cut in half"
    )


VARIANTS: dict[str, Variant] = {
    "correct": _correct,
    "partly-correct": _partly,
    "wrong": _wrong,
    "syntax-error": _syntax,
    "infinite-loop": _loop,
    "ignores-interrupt": _stubborn,
    "memory-hog": _memory,
    "crashes-kernel": _crash,
    "kills-its-worker": _kills_worker,
    "tampered-test": _tampered,
    "removed-parameters-tag": _no_tag,
    "deleted-and-moved-cells": _deleted,
    "copied-cell": _copied,
    "reads-other-files": _reads,
    "reads-by-absolute-path": _reads_absolute,
    "tries-the-network": _network,
    "noisy-stderr": _noisy,
    "broken-json": _broken,
}


def make_sample_class(
    course: Course,
    assignment: str,
    out: str | Path,
    *,
    memory_mb: int,
    isolation: str = "none",
    variants: list[str] | None = None,
) -> dict[str, Expected]:
    """Write ``out/<student>.ipynb`` per variant and ``out/expected.json``; -> expected results.

    ``memory_mb`` is the cap the class will be graded with: the hog allocates 256 MB past it
    (set a cap; without one the hog really takes that memory). ``isolation`` too: in
    namespaces or the sandbox the notebook that kills its grader cannot, and in the sandbox the
    one that reads the instructor's notebook by absolute path finds nothing.
    """
    lab = analyse(course, assignment)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name in variants or list(VARIANTS):
        nb, expect = VARIANTS[name](lab, assignment, memory_mb, isolation=isolation)
        path = out / f"{name}.ipynb"
        # json, not nbformat.writes: that would renumber the copied cell's duplicate id
        path.write_bytes(nb if isinstance(nb, bytes) else json.dumps(nb, indent=1).encode())
        expected[name] = expect
    (out / "expected.json").write_text(
        json.dumps({k: asdict(v) for k, v in expected.items()}, indent=1)
    )
    return expected


def load_expected(path: str | Path) -> dict[str, Expected]:
    return {k: Expected(**v) for k, v in json.loads(Path(path).read_text()).items()}


def check(expected: Expected, score: float, reasons: list[str]) -> list[str]:
    """What differs between a result and its expectation ([] if it matches)."""
    problems = []
    if abs(score - expected.score) > 1e-9:
        problems.append(f"score {score:g}, expected {expected.score:g}")
    for want in expected.reasons:
        if not any(want in r for r in reasons):
            problems.append(f"no reason containing {want!r}")
    for got in reasons:
        if not any(want in got for want in expected.reasons):
            problems.append(f"unexpected reason {got!r}")
    return problems


__all__ = ["VARIANTS", "Expected", "analyse", "check", "load_expected", "make_sample_class"]
