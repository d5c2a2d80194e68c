"""The package's shape: the shared core at the root, one folder per stage, backend and front door; imports flow
one way (no cycle, no core module importing a folder, no stage importing a later stage or a front door); files
stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import creative_eval

PACKAGE = Path(creative_eval.__file__).resolve().parent
MAX_LINES = 400
MAX_CORE_MODULES = 12
# the data flow, first to last; a folder may import the core and the folders before it
ORDER = ("probe", "steering", "people", "sources", "judges", "backends", "evals", "report", "harness", "cli")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """The package modules `path` imports, at any depth of the file (local imports count too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if full in modules else base)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, name, set(files)) for name, path in files.items()}


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # a package's __init__ re-exporting its own modules is not a cycle of the data flow
    real = [c for c in cycles if not any(a.startswith(b + ".") or b.startswith(a + ".") for a, b in zip(c, c[1:]))]
    assert not real, f"import cycles: {real}"


def test_the_import_graph_sees_known_edges():
    graph = _graph()
    assert "creative_eval.direction" in graph["creative_eval.probe.score"]
    assert "creative_eval.probe" in graph["creative_eval.evals.sweeps"]
    assert "creative_eval.probe" not in graph["creative_eval.direction"]


def _folder(module: str) -> str | None:
    """The stage, backend or front door a module belongs to; None for the core (and the package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else None


def test_every_folder_has_its_place_in_the_data_flow():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders == set(ORDER)


def test_the_core_is_small_and_imports_no_folder():
    core = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(core) <= MAX_CORE_MODULES, core
    graph = _graph()
    entry = {"creative_eval", "creative_eval.__main__"}  # the package and `python -m creative_eval`
    bad = {m: sorted(t for t in targets if _folder(t)) for m, targets in graph.items()
           if _folder(m) is None and m not in entry and any(_folder(t) for t in targets)}
    assert not bad, f"core modules importing a folder: {bad}"


def test_no_stage_imports_a_later_stage_or_a_front_door():
    rank = {name: i for i, name in enumerate(ORDER)}
    late = [(m, t) for m, targets in _graph().items() for t in targets
            if _folder(m) and _folder(t) and rank[_folder(t)] > rank[_folder(m)]]
    assert not late, f"imports against the data flow: {late}"


def test_no_file_over_the_size_limit():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_python_m_runs_the_command_line():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "creative_eval", "--version"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == creative_eval.__version__, out.stderr
