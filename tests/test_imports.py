"""Imports run one way, with no circle: ``workers -> webapp -> search -> models`` (CONTRIBUTING.md).

Every module of the four packages is parsed (``ast``, nothing imported) and each of its imports, at the top
or inside a function, is checked; imports under ``if TYPE_CHECKING:`` are annotations only and not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["models", "search", "webapp", "workers"]  # each may import only the ones before it (and itself)
NEVER = {  # third-party packages a layer must not import
    "models": {"django", "celery", "annoy", "ninja"},
    "search": {"django", "celery", "ninja"},
    "webapp": {"torch", "torchvision"},  # torch runs in search/ and models/, the web app goes through search
    "workers": set(),
}
# Known exceptions, each with its reason. The lead is rewriting these modules (training and evaluation);
# they import torch/models directly and will move those imports into search/.
KNOWN = {
    ("webapp.management.commands.evaluate", "models"): "moved by the lead",
    ("webapp.views.report", "models"): "moved by the lead",
}
# search.engine only keeps the old names for the modules the lead is rewriting; nothing else may use it.
ENGINE_USERS = {"webapp.services", "webapp.management.commands.evaluate", "webapp.management.commands.train",
                "search.train"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path) -> set[str]:
    """The absolute names a module imports (``from a.b import c`` gives ``a.b`` and ``a.b.c``)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and is_type_checking(child):
                for orelse in child.orelse:
                    visit(orelse)
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def modules() -> dict[str, set[str]]:
    out = {}
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            if "migrations" not in path.parts:
                out[module_name(path)] = imports_of(path)
    return out


def test_imports_run_one_way():
    wrong = []
    for module, names in modules().items():
        layer = module.split(".")[0]
        for name in sorted(names):
            top = name.split(".")[0]
            if top in LAYERS and LAYERS.index(top) > LAYERS.index(layer):
                problem = f"{module} imports {name}: {top} is above {layer}"
            elif top in NEVER[layer]:
                problem = f"{module} imports {name}: {layer} never imports {top}"
            elif layer == "webapp" and top == "models":
                problem = f"{module} imports {name}: the web app reaches the models through search"
            else:
                continue
            if (module, top) not in KNOWN:
                wrong.append(problem)
    assert not wrong, "imports against the direction workers -> webapp -> search -> models:\n" + "\n".join(wrong)


def test_no_module_of_search_imports_the_old_engine():
    users = {m for m, names in modules().items() if "search.engine" in names}
    assert users <= ENGINE_USERS, f"search.engine is for the lead's in-flight modules only: {users - ENGINE_USERS}"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The circles of a directed graph (one per strongly connected component of more than one node,
    or a node importing itself), by Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                strongconnect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            strongconnect(node)
    return found


def test_cycles_finds_a_circle_and_only_circles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_circle_between_packages():
    graph: dict[str, set[str]] = {layer: set() for layer in LAYERS}
    for module, names in modules().items():
        layer = module.split(".")[0]
        graph[layer] |= {n.split(".")[0] for n in names if n.split(".")[0] in LAYERS} - {layer}
    assert not cycles(graph), f"packages import each other: {cycles(graph)}"


def test_no_circle_between_modules_of_search():
    mods = modules()
    search = {m for m in mods if m.split(".")[0] == "search" and m != "search"}
    graph = {m: {n for n in mods[m] if n in search and n != m} for m in search}
    assert not cycles(graph), f"modules of search/ import each other: {cycles(graph)}"
