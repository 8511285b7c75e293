"""The project's shape: no import cycles, layers that point one way, a README that tells it.

Four packages: courselib at the bottom, autograder and server_setup beside each other above
it (neither imports the other), bench on top; every import points down.

Imports are read from the source (ast), at module level and inside functions alike (a lazy
import still ties two modules together); imports under ``if TYPE_CHECKING:`` are annotations
only and are left out.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "courselib"
PACKAGES = ("courselib", "autograder", "server_setup", "bench")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(name: str) -> set[str]:
    """The project's modules ``name`` imports (a submodule named in ``from pkg import sub``
    counts as the submodule, any other name as the package; the four top-level packages'
    own ``__init__`` is left out, as everything may name what it re-exports)."""
    tree = ast.parse(MODULES[name].read_text())
    skip = _type_checking_lines(tree)
    out = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in MODULES else node.module)
    return {m for m in out if m in MODULES and m != name and m not in PACKAGES}


GRAPH = {name: imports_of(name) for name in MODULES}


def _cycle() -> list[str] | None:
    """One import cycle, as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(GRAPH):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_walk_sees_the_imports_it_should() -> None:
    # the walk itself can fail: known edges are found, TYPE_CHECKING ones are not
    assert "courselib.chat.vicuna" in GRAPH["courselib.models.train"]
    assert "courselib.gguf.read" in GRAPH["courselib.backends.llamacpp"]  # a lazy import
    assert "courselib.memory.configs" not in GRAPH["courselib.gguf.mix"]  # TYPE_CHECKING only
    assert "courselib.errors" in GRAPH["autograder.grade.run"]
    assert "server_setup.settings" in GRAPH["server_setup.cli_local"]  # a lazy import


def test_no_import_cycles() -> None:
    assert _cycle() is None, " -> ".join(_cycle() or [])


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        ("courselib.chat", "courselib.backends"),  # backends render chats, not the reverse
        ("courselib.gguf", "courselib.models"),  # the build uses the GGUF tools
        ("courselib.gguf", "courselib.memory"),
        ("courselib.memory", "courselib.measure"),  # the estimator is pure arithmetic
        ("courselib.finetune", "courselib.measure"),  # the probes load models as Lab 04 does
        ("courselib.backends", "courselib.widgets"),
        ("courselib", "autograder"),  # the library knows nothing of the tools built on it
        ("courselib", "server_setup"),
        ("courselib", "bench"),
        ("autograder", "server_setup"),  # the two tools sit side by side
        ("server_setup", "autograder"),
        ("autograder", "bench"),
        ("server_setup", "bench"),
    ],
)
def test_layers_point_one_way(lower: str, upper: str) -> None:
    def within(module: str, prefix: str) -> bool:
        return module == prefix or module.startswith(prefix + ".")

    wrong = [
        f"{m} imports {dep}"
        for m, deps in GRAPH.items()
        if within(m, lower)
        for dep in deps
        if within(dep, upper)
    ]
    assert wrong == []


def test_the_readme_layout_lists_every_package_and_top_level_module() -> None:
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    layout = layout[: layout.index("\n## ", 4)] if "\n## " in layout[4:] else layout
    entries = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    entries |= {
        p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")
    }
    missing = [e for e in sorted(entries) if not re.search(rf"\b{re.escape(e)}\b", layout)]
    assert missing == [], "README's Layout does not mention these"
