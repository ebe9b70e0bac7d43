"""The package's shape, kept by tests: the simulator imports no lab and no torch, has no import
cycles, and no path in it reaches outside the package."""
from __future__ import annotations

import ast
from pathlib import Path

import llmsim

PACKAGE = Path(llmsim.__file__).parent


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text())
    return out


def _imports(tree: ast.Module, top_level_only: bool) -> set[str]:
    """Modules imported; with ``top_level_only``, those imported when the module loads
    (not inside functions, not under ``if TYPE_CHECKING``)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if top_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if (top_level_only and isinstance(child, ast.If)
                    and "TYPE_CHECKING" in ast.unparse(child.test)):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                found.add(child.module)  # and ``from pkg import module`` as that module
                found.update(f"{child.module}.{a.name}" for a in child.names)
            visit(child)

    visit(tree)
    return found


def test_the_simulator_imports_neither_the_lab_nor_torch():
    for name, tree in _modules().items():
        roots = {m.split(".")[0] for m in _imports(tree, top_level_only=False)}
        assert not roots & {"calibration", "torch", "transformers"}, name


def test_no_import_cycles():
    mods = _modules()
    graph = {name: {m for m in _imports(tree, top_level_only=True) if m in mods and m != name}
             for name, tree in mods.items()}
    # a package's own __init__ importing its submodules is how it re-exports them
    graph = {n: {m for m in deps if not n.startswith(m + ".")} for n, deps in graph.items()}
    state: dict[str, int] = {}

    def walk(n: str, path: list[str]) -> None:
        state[n] = 1
        for m in graph[n]:
            if state.get(m) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
            if m not in state:
                walk(m, path + [m])
        state[n] = 2

    for n in graph:
        if n not in state:
            walk(n, [n])


def test_no_path_walks_out_of_the_package():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert "parents[" not in text, path
        assert "__file__).resolve().parent.parent.parent" not in text, path
