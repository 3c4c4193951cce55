"""No import cycles among the package's modules, and a code location that loads without the model stack.

The graph is read from the source with ``ast``: an edge ``a -> b`` for every ``import`` of ``b`` in module
``a``, at module level or inside a function (a lazy import that closes a cycle is still a cycle: the two
modules cannot be understood, tested or moved apart), except imports under ``if TYPE_CHECKING:``, which never
run. ``from pkg import name`` points at ``pkg.name`` when that is a module, else at ``pkg``. The parent
packages Python imports implicitly are not edges.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = "video_assets"
ROOT = Path(__file__).resolve().parents[1]


def _module_names(root: Path) -> dict[str, Path]:
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node that can run (not under ``if TYPE_CHECKING:``)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = _module_names(root)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    package = name.split(".") if is_package else name.split(".")[:-1]
                    package = package[:len(package) - (node.level - 1)]
                    base = ".".join(package + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                # `import a.b.c` names module a.b.c; keep the longest prefix that is one of ours
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    graph[name].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_lazy_and_relative_imports_and_skips_type_checking(tmp_path):
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .a import f\n")
    (pkg / "sub" / "a.py").write_text("def f():\n    from video_assets.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from . import a\nimport os\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    import video_assets.d\n")
    (pkg / "d.py").write_text("import video_assets.c\nimport video_assets.sub.a\n")
    graph = import_graph(tmp_path)
    assert graph == {"video_assets": set(), "video_assets.sub": {"video_assets.sub.a"},
                     "video_assets.sub.a": {"video_assets.sub.b"},
                     "video_assets.sub.b": {"video_assets.sub.a"}, "video_assets.c": set(),
                     "video_assets.d": {"video_assets.c", "video_assets.sub.a"}}
    assert cycles(graph) == [["video_assets.sub.a", "video_assets.sub.b"]]


def test_no_import_cycles_in_the_package():
    graph = import_graph()
    assert len(graph) > 40 and "video_assets.storage.uri" in graph["video_assets.storage.policy"]
    found = cycles(graph)
    shown = [" <-> ".join(c) + "  (" + "; ".join(f"{a} -> {sorted(graph[a] & set(c))}" for a in c) + ")"
             for c in found]
    assert not found, "import cycles:\n" + "\n".join(shown)


def _modules_after_loading_the_code_location() -> set[str]:
    code = "import sys, video_assets.definitions; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         check=True)
    return set(out.stdout.split())


def test_code_location_loads_without_open_clip_or_the_operators():
    loaded = _modules_after_loading_the_code_location()
    assert "video_assets.definitions" in loaded
    heavy = {"open_clip", "video_assets.models.clip", "video_assets.operators.quality",
             "video_assets.operators.keyframes", "video_assets.scoring.clip_iqa"}
    assert not heavy & loaded, sorted(heavy & loaded)


@pytest.mark.skipif(importlib.util.find_spec("video_assets.progress") is None,
                    reason="needs the torch-free video_assets/progress.py of issue 17: until then "
                           "pipeline/runner.py and pipeline/probe.py import Progress from "
                           "operators/batching.py, which imports torch")
def test_code_location_loads_without_torch():
    loaded = _modules_after_loading_the_code_location()
    assert "torch" not in loaded, sorted(m for m in loaded if m.startswith("video_assets."))
