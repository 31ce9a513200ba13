"""The layers point one way (DESIGN.md): checked on the source, lazy imports inside functions included.

``converters/`` and ``runtimes/`` stand on the core's shared loading layer and never import each
other; the bundle and manifest modules import neither; no module imports the ``edgedl`` package
itself for a name its ``__init__`` re-exports; and no two modules import each other, directly or
round a longer loop (type-checking-only imports aside).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Import name of each source folder (pyproject's package-dir mapping).
FOLDERS = {"edgedl": ROOT / "edgedl", "edgedl.converters": ROOT / "converters", "edgedl.runtimes": ROOT / "runtimes"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _runtime_nodes(tree: ast.Module) -> Iterator[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``, which never run."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports(module: str) -> dict[str, int]:
    """The edgedl modules ``module`` imports at run time (at any depth), each with a line number.

    ``from edgedl.x import y`` counts as importing ``edgedl.x.y`` when that is a module, else ``edgedl.x``.
    """
    found: dict[str, int] = {}
    for node in _runtime_nodes(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update({alias.name: node.lineno for alias in node.names if alias.name.split(".")[0] == "edgedl"})
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "edgedl":
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found[name if name in MODULES else node.module] = node.lineno
    return found


def _violations(sources: str, forbidden: tuple[str, ...]) -> list[str]:
    return [f"{module} line {line} imports {target}" for module in MODULES if module == sources or
            module.startswith(sources + ".") for target, line in imports(module).items()
            if any(target == f or target.startswith(f + ".") for f in forbidden)]


def test_runtimes_never_import_converters() -> None:
    assert _violations("edgedl.runtimes", ("edgedl.converters",)) == []


def test_converters_never_import_runtimes() -> None:
    assert _violations("edgedl.converters", ("edgedl.runtimes",)) == []


def test_bundle_manifest_and_the_loading_layer_import_neither_half() -> None:
    halves = ("edgedl.converters", "edgedl.runtimes")
    for module in ("edgedl.bundle", "edgedl.manifest", "edgedl.loading"):
        assert _violations(module, halves) == [], module


def test_no_module_imports_the_edgedl_package_itself() -> None:
    offenders = [f"{module} line {line}" for module in MODULES if module != "edgedl"
                 for target, line in imports(module).items() if target == "edgedl"]
    assert offenders == [], "import the module you need (edgedl.about for the version), not the package"


def test_no_import_cycles() -> None:
    graph = {module: {t for t in imports(module) if t in MODULES and t != module} for module in MODULES}
    cycles = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_checks_see_lazy_imports_and_skip_type_checking_ones() -> None:
    """The checks above can fail: a function-level import is found, a TYPE_CHECKING one is not."""
    assert "edgedl.runtimes.select" in imports("edgedl.model")  # imported inside load()
    assert "edgedl.profiling.layers" not in imports("edgedl.runtimes.base")  # only for type hints
