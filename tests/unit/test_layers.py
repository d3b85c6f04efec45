"""The house holds its shape: import-linter's contracts (pyproject.toml: layers import downward only,
Airflow stays at the edge, the server never imports training or flows, decisions are pure), no import
cycle between files or between packages, and a serving process without Airflow in it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def _graph():  # type: ignore[no-untyped-def]
    import grimp

    return grimp.build_graph("ctloop")


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_import_linter_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache", str(REPO / "pyproject.toml")], cwd=REPO / "include", capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "BROKEN" not in proc.stdout and proc.stdout.count("KEPT") >= 4


def test_no_cycle_between_files_or_packages() -> None:
    graph = _graph()
    modules = {m for m in graph.modules if m.startswith("ctloop")}
    files = {m: {i for i in graph.find_modules_directly_imported_by(m) if i in modules} for m in modules}
    assert _cycles(files) == []

    def package(m: str) -> str:
        return ".".join(m.split(".")[:2])

    packages: dict[str, set[str]] = {}
    for m, imported in files.items():
        packages.setdefault(package(m), set()).update(package(i) for i in imported if package(i) != package(m))
    assert _cycles(packages) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_serving_process_never_imports_airflow() -> None:
    # what `ctloop serve` imports to build and start its app, bar the network: no Airflow anywhere in it
    code = ("import sys\n"
            "from ctloop.cli import serving\n"
            "from ctloop.serving.app import create_app\n"
            "import ctloop.serving.guard, ctloop.serving.handler, ctloop.serving.models, ctloop.serving.logwriter\n"
            "import ctloop.data.predictions, ctloop.registry.mlflow_registry, ctloop.estimators.compiled\n"
            "from ctloop.core.params import load_params\n"
            "from ctloop.core.settings import get_settings\n"
            "create_app(get_settings(), load_params(get_settings().spec_path))\n"
            "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
