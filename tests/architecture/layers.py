"""The package's layer contract, checked from source (no imports executed).

Layers, lowest first; a module may import its own package and any lower
layer, never a higher one or a sibling on its own layer:

    0 core                 pure: config, seeds, stream, codecs, store, status
    1 training, swarm      the model and the sans-IO swarm (never each other)
    2 net, observe         gRPC/mDNS, and metrics/history/plot (never each other)
    3 node                 the composition root and the public Node
    4 demo                 faces: the demo, the benches, the command line
    5 bench
    6 cli

``seedfl/__init__.py`` and ``__main__.py`` sit outside the layers (the public
names load lazily from below); every module may read ``seedfl.__version__`` and
``seedfl.PROTOCOL_VERSION`` from the root. ``find_cycles`` reports import
cycles between modules, ignoring ``if TYPE_CHECKING:`` imports, which never run.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

RANK = {"core": 0, "training": 1, "swarm": 1, "net": 2, "observe": 2, "node": 3,
        "demo": 4, "bench": 5, "cli": 6}


@dataclass(frozen=True)
class Edge:
    source: str  # module name
    target: str
    line: int
    type_checking: bool


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def edges(root: Path) -> list[Edge]:
    """Every ``import seedfl...`` in the package under ``root`` (the seedfl folder)."""
    out: list[Edge] = []
    top = root.name
    for path in sorted(root.rglob("*.py")):
        if "proto" in path.relative_to(root).parts:
            continue  # generated code
        source = module_name(root, path)
        tree = ast.parse(path.read_text(), str(path))
        guarded: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                for inner in node.body:
                    guarded.update(id(n) for n in ast.walk(inner))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                if name == top or name.startswith(top + "."):
                    out.append(Edge(source, name, node.lineno, id(node) in guarded))
    return out


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def violations(root: Path) -> list[str]:
    """Imports that go up or sideways, as 'source:line imports target (why)'."""
    bad: list[str] = []
    for e in edges(root):
        src, dst = _layer(e.source), _layer(e.target)
        if e.source.count(".") <= 1 and src is None:
            continue  # seedfl/__init__.py, __main__.py
        if src is None:
            bad.append(f"{e.source}:{e.line} is outside every layer")
            continue
        if dst is None:
            if e.target != root.name:
                bad.append(f"{e.source}:{e.line} imports {e.target}, which is in no layer")
            continue
        if dst != src and RANK[dst] >= RANK[src]:
            bad.append(f"{e.source}:{e.line} imports {e.target} "
                       f"({src} is layer {RANK[src]}, {dst} is layer {RANK[dst]})")
    return bad


def find_cycles(root: Path) -> list[list[str]]:
    """Cycles among modules through imports that run (Tarjan's SCCs of size > 1)."""
    graph: dict[str, set[str]] = {}
    modules = {module_name(root, p) for p in root.rglob("*.py")}
    for e in edges(root):
        if e.type_checking:
            continue
        target = e.target
        while target not in modules and "." in target:
            target = target.rsplit(".", 1)[0]  # `from pkg.mod import name`
        if target != e.source and target in modules:
            graph.setdefault(e.source, set()).add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
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
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles
