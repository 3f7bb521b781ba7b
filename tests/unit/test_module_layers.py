"""lasernet's modules keep their layers (../shared/DESIGN.md): no import circles, nothing below the CLI imports it,
the spec imports nothing above it, and the package face holds imports only.

Imports are read from the source (module level and inside functions alike, ``if TYPE_CHECKING:`` blocks aside),
so a circle hidden in a function body counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "lasernet"
#: Circles still to break, in files owned elsewhere: remove an entry once its circle is gone.
KNOWN_CIRCLES: list[set] = []


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _imports(name: str, path: Path, is_package: bool, modules) -> set[str]:
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(block.test) for n in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only or not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = name.split(".") if is_package else name.split(".")[:-1]
            base = base[:len(base) - node.level + 1] if node.level else []
            prefix = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{prefix}.{alias.name}" if f"{prefix}.{alias.name}" in modules else prefix
                       for alias in node.names]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, is_package, modules) for name, (path, is_package) in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circles_in_lasernet():
    assert [c for c in _circles(_graph()) if c not in KNOWN_CIRCLES] == []


def test_nothing_below_the_cli_imports_it():
    graph = _graph()
    below = {m for m in graph if not (m == "lasernet.cli" or m.startswith("lasernet.cli."))}
    assert {m for m in below if any(d == "lasernet.cli" or d.startswith("lasernet.cli.") for d in graph[m])} == set()


def test_the_spec_imports_only_the_spec_and_the_errors():
    graph = _graph()
    for module, deps in graph.items():
        if module.startswith("lasernet.spec"):
            assert {d for d in deps if not d.startswith("lasernet.spec")} <= {"lasernet.errors"}, module


def test_the_plumbing_imports_nothing_of_lasernet_but_itself():
    graph = _graph()
    for module, deps in graph.items():
        if module.startswith("lasernet.net"):
            assert {d for d in deps if not d.startswith("lasernet.net")} == set(), module


def test_routing_imports_nothing_of_the_emulation():
    graph = _graph()
    for module, deps in graph.items():
        if module.startswith("lasernet.routing"):
            assert {d for d in deps if d.startswith("lasernet.emulation")} == set(), module


def test_the_face_holds_imports_and_the_lazy_emulation_only():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    kinds = {type(node).__name__ for node in tree.body}
    assert kinds <= {"Expr", "ImportFrom", "Assign", "FunctionDef"}
    assert [n.name for n in tree.body if isinstance(n, ast.FunctionDef)] == ["__getattr__"]
    assert not (PACKAGE / "api.py").exists()
