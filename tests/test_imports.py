"""The import graph: no cycle anywhere, and imports point down only (streams -> model -> orderbook).

Every `import` counts, at module level or inside a function (an import inside a function hides a
cycle from Python, not from a reader), except those under `if TYPE_CHECKING:`. The graph is read
from the source with `ast`, so the test needs neither torch nor a server.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orderbook", "model", "streams")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _type_checking_only(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imported(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `module` imports (a package import counts as its __init__)."""
    is_package = path.name == "__init__.py"
    base = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()

    def resolve(name: str) -> None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            found.add(name)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking_only(child):
                for c in child.orelse:
                    visit(c)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    resolve(alias.name)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    anchor = base[: len(base) - (child.level - 1)]
                    target = ".".join([*anchor, child.module] if child.module else anchor)
                else:
                    target = child.module or ""
                for alias in child.names:  # `from pkg import submodule` imports the submodule
                    sub = f"{target}.{alias.name}"
                    resolve(sub if sub in known else target)
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {m: _imported(m, p, known) for m, p in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def strong(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_the_project_has_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# (importer prefix, imported prefix): a dependency that must not exist
FORBIDDEN = [
    ("orderbook", "model"),
    ("orderbook", "streams"),
    ("model", "streams"),
]


@pytest.mark.parametrize(("importer", "imported"), FORBIDDEN)
def test_imports_point_down_only(importer: str, imported: str) -> None:
    bad = sorted(
        (m, d)
        for m, deps in import_graph().items()
        if m.split(".")[0] == importer
        for d in deps
        if d.split(".")[0] == imported
    )
    assert bad == []


def test_the_simulator_imports_nothing_of_the_learned_model() -> None:
    bad = sorted(
        (m, d)
        for m, deps in import_graph().items()
        if m.startswith("model.sim")
        for d in deps
        if d.startswith("model.") and not d.startswith("model.sim")
    )
    assert bad == []


def test_orderbook_imports_no_torch() -> None:
    for path in sorted((ROOT / "orderbook").rglob("*.py")):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(n.split(".")[0] == "torch" for n in names), path
