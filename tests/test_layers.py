"""The package's layers: no module imports one above it, and the middle has no import cycle."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "audiolsh"
#: Lowest first; a module may import its own layer and those below.
LAYERS = [
    ("errors", "files", "jit_cache"),
    ("audio", "hashing", "vectors", "parallel"),
    ("features", "search"),
    ("storage",),
    ("index",),
    ("library",),
    ("query",),
    ("evaluation", "web", "spark", "cli", "precompile", "__main__", "__init__"),
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}
MIDDLE = ("storage", "index", "library", "query")


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def _imports(path: Path) -> set[str]:
    """Every audiolsh module the file imports, at its top or inside functions (``from pkg import
    sub`` names the submodule, ``from pkg import name`` the package)."""
    modules = _modules()
    out = set()
    tree = ast.parse(path.read_text())
    for block in ast.walk(tree):  # imports for the type checker only are no runtime edge
        test = getattr(block, "test", None)
        if isinstance(block, ast.If) and isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
            block.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("audiolsh"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("audiolsh"))
    return out


@functools.cache
def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def test_every_package_has_a_layer() -> None:
    assert {_part(m) for m in _modules()} <= set(RANK)


@pytest.mark.parametrize("module", sorted(_modules()))
def test_no_module_imports_one_above_it(module: str) -> None:
    own = RANK[_part(module)]
    above = sorted(m for m in _imports(_modules()[module])
                   if m != "audiolsh" and RANK.get(_part(m), -1) > own)
    assert not above, f"{module} (layer {own}) imports {above}"


def test_the_middle_has_no_import_cycle() -> None:
    modules = _modules()
    graph = {m: {i for i in _imports(p) if i in modules and i != m}
             for m, p in modules.items() if _part(m) in MIDDLE}
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in graph.get(m, ()):
            if n not in graph:
                continue
            if state.get(n) == 1:
                cycle = [*stack[stack.index(n):], n] if n in stack else [m, n]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            elif n not in state:
                visit(n, [*stack, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
