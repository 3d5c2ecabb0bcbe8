"""No import cycles among the project's modules (ssl_bench, methods, evaluators, datasets).

The graph is read from the source with ``ast``: every ``import`` counts, including the ones inside
functions (a lazy import hides a cycle from the interpreter, not from the design). Imports under
``if TYPE_CHECKING:`` and ``if __name__ == "__main__":`` are left out: they never run on import.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: source folder -> the package it installs as (pyproject.toml, [tool.setuptools] package-dir)
PACKAGES = {
    "ssl_bench": "ssl_bench",
    "methods": "ssl_bench.methods",
    "evaluators": "ssl_bench.evaluators",
    "datasets": "ssl_bench.datasets",
}


def module_files(root: Path, packages: dict[str, str]) -> dict[str, Path]:
    """{module name: file} for every .py file of the packages."""
    out = {}
    for folder, package in packages.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = list(path.relative_to(root / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


def _skipped_block(node: ast.If) -> bool:
    test = ast.unparse(node.test)
    return test in ("TYPE_CHECKING", "typing.TYPE_CHECKING") or test.replace("'", '"') == '__name__ == "__main__"'


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _skipped_block(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    """{module: the project modules it imports}."""
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            for target in targets:
                while target and target not in files:  # `import a.b.c` of a module a.b.c, or its package
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
                elif target == name:
                    graph[name].add(name)  # a module importing itself is a cycle too
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path a -> b -> ... -> a) per strongly connected component that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
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
            if len(comp) > 1 or v in graph[v]:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_cycle_path(graph, comp) for comp in components]


def _cycle_path(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """The shortest cycle through the component's first module (breadth-first)."""
    start, members = comp[0], set(comp)
    parent: dict[str, str | None] = {start: None}
    queue = [start]
    for v in queue:
        for w in sorted(graph[v] & members):
            if w == start:
                path = [v]
                while (p := parent[path[-1]]) is not None:
                    path.append(p)
                return [*reversed(path), start]
            if w not in parent:
                parent[w] = v
                queue.append(w)
    raise AssertionError(f"{comp} is not a cycle")


def test_no_import_cycles() -> None:
    graph = import_graph(module_files(ROOT, PACKAGES))
    cycles = find_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_graph_sees_the_project() -> None:
    """A guard against a test that passes because it reads nothing."""
    graph = import_graph(module_files(ROOT, PACKAGES))
    assert len(graph) > 50
    assert "ssl_bench.build" in graph["ssl_bench.trainer"]  # from .build import ...
    assert "ssl_bench.evaluators.linear" in graph["ssl_bench.evaluators.lowshot"]  # absolute import
    assert "ssl_bench.methods.ijepa" in graph["ssl_bench.methods.mae"]  # from .ijepa import ...
    assert "ssl_bench.datasets.cifar" in graph["ssl_bench.datasets"]  # datasets/__init__.py: from .cifar import ...
    assert "ssl_bench.data" in graph["ssl_bench.datasets.imagenet"]


def test_construction_has_one_home() -> None:
    """build_method, resolve_device, load_data and the backbone choice live in ssl_bench.build;
    the trainer re-exports them for old imports, and nothing imports the trainer to build."""
    import ssl_bench.build as build
    import ssl_bench.trainer as trainer

    for name in ("build_method", "resolve_device", "load_data", "backbone_choice", "data_spec", "seed_everything"):
        assert getattr(trainer, name) is getattr(build, name)
    graph = import_graph(module_files(ROOT, PACKAGES))
    assert "ssl_bench.trainer" not in graph["ssl_bench.embeddings"] | graph["ssl_bench.build"]
    assert "ssl_bench.build" in graph["ssl_bench.embeddings"] & graph["ssl_bench.collapse"]


def test_cycle_detection(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .c import g  # lazy: still a cycle\n")
    (pkg / "c.py").write_text("from pkg.a import x\n")
    (pkg / "d.py").write_text("import pkg.a\nif __name__ == '__main__':\n    from pkg.d import main\n")
    (pkg / "e.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import y\n")
    graph = import_graph(module_files(tmp_path, {"pkg": "pkg"}))
    assert graph["pkg.d"] == {"pkg.a"} and graph["pkg.e"] == set()
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
