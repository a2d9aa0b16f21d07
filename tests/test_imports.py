"""The layers import one way: no import cycle among the modules of `conveyor`.

Only what runs when a module is imported counts: module-level imports (also inside module-level `if`, `try` and class
bodies), not imports inside functions, and not those under `if TYPE_CHECKING:`. Importing `a.b.c` first imports the
packages `a` and `a.b` (their `__init__` runs), so an import of a module also depends on each enclosing package the
importer is not itself inside of: that is how a package `__init__` that imports widely closes a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import conveyor

PACKAGE = Path(conveyor.__file__).parent
ROOT = PACKAGE.parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_nodes(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _import_time_nodes(node.body)
            yield from _import_time_nodes(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from _import_time_nodes(block)
        elif isinstance(node, ast.With | ast.ClassDef):
            yield from _import_time_nodes(node.body)


def _targets(importer: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        package = importer if MODULES[importer].name == "__init__.py" else importer.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}".rstrip(".")
    yield base
    for alias in node.names:
        if f"{base}.{alias.name}" in MODULES:  # `from package import submodule`
            yield f"{base}.{alias.name}"


def _with_packages(importer: str, target: str) -> Iterator[str]:
    """The target, and each package that importing it imports first, less those the importer is inside of (they
    ran before it). A package named explicitly counts even then: `from conveyor import x` needs it complete."""
    if target in MODULES and target != importer:
        yield target
    parts = target.split(".")
    for i in range(1, len(parts)):
        name = ".".join(parts[:i])
        if name in MODULES and name != importer and not importer.startswith(name + "."):
            yield name


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        edges = graph.setdefault(name, set())
        for node in _import_time_nodes(tree.body):
            for target in _targets(name, node):
                edges.update(_with_packages(name, target))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each as one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(_one_cycle(graph, set(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, for a readable failure."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for nxt in sorted(graph[node] & component):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                frontier.append(nxt)
    return sorted(component)  # pragma: no cover - a component always closes a cycle


def test_every_module_is_walked() -> None:
    assert {"conveyor", "conveyor.app", "conveyor.worker.runtime", "conveyor.api.app"} <= set(MODULES)


def test_no_import_cycle() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_checker_sees_a_cycle_through_a_package_init() -> None:
    """A module importing a sibling package's submodule depends on that package's `__init__` too."""
    graph = {"p": {"p.a"}, "p.a": {"q"}, "q": set(), "q.b": {"p.a"}}
    assert cycles(graph) == []
    graph["q"] = {"q.b"}
    assert cycles(graph) == [["p.a", "q", "q.b", "p.a"]]


def test_a_package_named_by_its_own_module_counts() -> None:
    """`from conveyor import __version__` in a module that `conveyor/__init__.py` imports would find it half-made."""
    assert list(_with_packages("conveyor.api.app", "conveyor")) == ["conveyor"]
    assert list(_with_packages("conveyor.api.app", "conveyor.api.events")) == ["conveyor.api.events"]
    assert list(_with_packages("conveyor.dashboard.pages", "conveyor.api.events")) == [
        "conveyor.api.events", "conveyor.api",
    ]


def test_imports_under_type_checking_and_in_functions_do_not_count() -> None:
    tree = ast.parse(
        "import os\nif TYPE_CHECKING:\n    import a\nelse:\n    import b\ntry:\n    import c\nexcept ImportError:\n"
        "    import d\ndef f():\n    import e\nclass K:\n    import g\n"
    )
    names = [alias.name for node in _import_time_nodes(tree.body) for alias in node.names]
    assert names == ["os", "b", "c", "d", "g"]


# A module may import another of conveyor inside a function only to load something heavy when it is used (the web
# stack, the terminal's), never to dodge a cycle; each such import is listed here with its reason. The backends and
# the ingestion's internals keep their own (optional drivers and models).
LAZY_IMPORTS = {
    "conveyor.cli.serve": {"conveyor.api.server"},  # FastAPI and uvicorn, for `conveyor serve` only
    # FastAPI and Jinja, when the server mounts the dashboard (and its workflows pages)
    "conveyor.plugins.builtin": {"conveyor.dashboard", "conveyor.dashboard.workflows"},
    "conveyor.ingest.plugin": {  # each hook's part, when its host asks (a worker needs only the tasks)
        "conveyor.api", "conveyor.ingest.routes", "conveyor.ingest.cli", "conveyor.dashboard.sources",
        "conveyor.ingest.check",  # the store and the embedder's status, for `conveyor check` only
    },
    "conveyor.schedules.plugin": {  # likewise: a worker needs only the scheduler, not the routes, commands or page
        "conveyor.api", "conveyor.api.schedules", "conveyor.cli.schedules", "conveyor.dashboard.schedules",
    },
    "conveyor.webhooks.worker": {"conveyor.webhooks.service"},  # httpx (it imports rich): when a worker starts
    "conveyor.webhooks.plugin": {"conveyor.dashboard.webhooks"},  # the dashboard page, when the server mounts it
}


def _function_level_imports(name: str) -> set[str]:
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    at_import = {id(node) for node in _import_time_nodes(tree.body)}
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node.test)
        for inner in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in at_import | type_only:
            found.update(t for t in _targets(name, node) if t.split(".")[0] == "conveyor" and t in MODULES)
    return found


def test_function_level_imports_are_only_the_listed_lazy_ones() -> None:
    found = {
        name: imports
        for name in MODULES
        if not name.startswith(("conveyor.backends", "conveyor.ingest")) or name == "conveyor.ingest.plugin"
        if (imports := _function_level_imports(name))
    }
    assert found == LAZY_IMPORTS


def test_the_command_line_leaves_the_servers_and_the_webhook_client_unloaded() -> None:
    """`conveyor worker` starts in every worker process: FastAPI and uvicorn load with `conveyor serve`, aiohttp at
    a worker's first webhook delivery (about 180 ms of CPU each process, `python -X importtime`)."""
    import subprocess
    import sys

    probe = "import sys, conveyor.cli, conveyor.webhooks.service; print(sorted(m for m in ('aiohttp', 'fastapi', " \
            "'uvicorn') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
