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
# Known exceptions, each with its reason.
KNOWN = {
    # the model report lists every checkpoint file it finds, of whatever kind, with its saved figures
    ("webapp.views.report", "models"): "reads checkpoint files with models.checkpoint, the file format's home",
}


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
