"""The import rules of ARCHITECTURE.md, checked on the source (issue 23).

Every module under ``depdet/`` is parsed (``ast``; nothing is imported) and every ``import x`` and
``from x import y`` in it is collected, the ones inside functions included. Each module belongs to
one *unit* (a package of the stage layout, or the base modules), and :data:`ALLOWED` says, one row
per unit, which other units it may import. The data path reads one way:

    base <- weights <- extractors <- pipeline.media <- pipeline.features <- pipeline.store
         <- pipeline.orchestration / pipeline.data <- models <- environment <- pipeline.inference
         <- pipeline.training <- pipeline.reports <- pipeline.demo <- api <- commands <- cli

and no module may sit in an import circle with another (strongly connected components of the
module graph).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "depdet"

#: The base modules every unit may import: errors, atomic file writes, the id rule, the thread policy, the row z-score,
#: the package root (version, disclaimers).
BASE = {"depdet", "depdet.errors", "depdet.fileio", "depdet.ids", "depdet.threads", "depdet.numerics"}

#: unit -> the units it may import (itself always allowed). The order of the rows is the data path.
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "weights": {"base"},
    "extractors": {"base", "weights"},
    "pipeline.media": {"base", "extractors"},
    "pipeline.features": {"base", "weights", "extractors", "pipeline.media"},
    "pipeline.store": {"base", "extractors", "pipeline.features"},
    # batch extraction: drives media -> features -> store over many clips, and the executors
    "pipeline.orchestration": {
        "base",
        "weights",
        "extractors",
        "pipeline.media",
        "pipeline.features",
        "pipeline.store",
    },
    "pipeline.data": {"base", "extractors", "pipeline.features", "pipeline.store"},
    # models see tensors only: no feature spec, store or data set. TODO(lead): if the one row z-score
    # lands in a low module outside the base, add that module's unit here.
    "models": {"base"},
    # the environment inventory reports the selective-scan path, so it sits just above models
    "environment": {"base", "models"},
    # inference never imports training: training builds checkpoints, calibrates and scores with
    # inference's modules (checkpoint, scorer, calibration, uncertainty), not the other way round
    "pipeline.inference": {
        "base",
        "weights",
        "extractors",
        "pipeline.media",
        "pipeline.features",
        "pipeline.store",
        "pipeline.data",
        "models",
        "environment",
    },
    "pipeline.training": {
        "base",
        "weights",
        "extractors",
        "pipeline.media",
        "pipeline.features",
        "pipeline.store",
        "pipeline.orchestration",
        "pipeline.data",
        "models",
        "environment",
        "pipeline.inference",
    },
    # finished runs, predictions and batches rendered (HTML pages, the CLI's tables): it reads what the
    # stages below produced, weight-file status and extraction reports included
    "pipeline.reports": {
        "base",
        "weights",
        "extractors",
        "pipeline.media",
        "pipeline.features",
        "pipeline.store",
        "pipeline.orchestration",
        "pipeline.data",
        "models",
        "environment",
        "pipeline.inference",
        "pipeline.training",
    },
    "pipeline.demo": {
        "base",
        "weights",
        "extractors",
        "pipeline.media",
        "pipeline.features",
        "pipeline.store",
        "pipeline.orchestration",
        "pipeline.data",
        "models",
        "environment",
        "pipeline.inference",
        "pipeline.training",
        "pipeline.reports",
    },
    # the public Python API (depdet/api.py)
    "api": {
        "base",
        "weights",
        "extractors",
        "pipeline.media",
        "pipeline.features",
        "pipeline.store",
        "pipeline.orchestration",
        "pipeline.data",
        "models",
        "environment",
        "pipeline.inference",
        "pipeline.training",
        "pipeline.reports",
        "pipeline.demo",
    },
    # the CLI's commands (depdet/commands/: the shared Typer app and one module per stage)
    "commands": {
        "base",
        "weights",
        "extractors",
        "pipeline.media",
        "pipeline.features",
        "pipeline.store",
        "pipeline.orchestration",
        "pipeline.data",
        "models",
        "environment",
        "pipeline.inference",
        "pipeline.training",
        "pipeline.reports",
        "pipeline.demo",
        "api",
    },
    # the entry point: runs the app, the error boundary
    "cli": {
        "base",
        "weights",
        "extractors",
        "pipeline.media",
        "pipeline.features",
        "pipeline.store",
        "pipeline.orchestration",
        "pipeline.data",
        "models",
        "environment",
        "pipeline.inference",
        "pipeline.training",
        "pipeline.reports",
        "pipeline.demo",
        "api",
        "commands",
    },
    "__main__": {"cli"},
}


#: The one import allowed against the direction: the package root re-exports the public API lazily
#: (PEP 562 ``__getattr__``: ``depdet.train`` imports depdet/api.py on first use, never at import).
FACADE = {("depdet", "depdet.api")}
MAX_LINES = 800


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(f): f for f in sorted(PKG.rglob("*.py"))}


def unit(module: str) -> str:
    """The row of :data:`ALLOWED` a depdet module belongs to."""
    if module in BASE:
        return "base"
    parts = module.split(".")
    if parts[1] == "pipeline":
        return ".".join(parts[1:3]) if len(parts) > 2 else "base"  # depdet.pipeline itself: an empty package
    return parts[1]


def resolve(name: str) -> str:
    """The depdet module an imported name lives in: the longest prefix that is a module
    (``depdet.pipeline.store.FeatureStore`` -> ``depdet.pipeline.store``; ``depdet.__version__`` -> ``depdet``)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in MODULES:
            return ".".join(parts[:n])
    return "depdet"


def imports_of(module: str) -> dict[str, int]:
    """depdet modules imported by ``module`` (anywhere in it, functions included) -> first line."""
    path = MODULES[module]
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    lazy = {
        id(n)
        for fn in ast.walk(tree)
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
        for n in ast.walk(fn)
        if isinstance(n, (ast.Import, ast.ImportFrom))
    }
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from ..y import z
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            names = [f"{src}.{a.name}" for a in node.names] if src.startswith("depdet") else []
        for name in names:
            if name == "depdet" or name.startswith("depdet."):
                target = resolve(name)
                # a function-level import of the module's own package (``import depdet.models`` in
                # models/registry.py, to have every family registered) is no circle: Python has
                # initialised the parent package before any of its submodules runs
                parent = module == target or module.startswith(target + ".")
                if not (parent and id(node) in lazy):
                    found.setdefault(target, node.lineno)
    return found


GRAPH: dict[str, dict[str, int]] = {m: imports_of(m) for m in MODULES}
for _m, _t in FACADE:  # the root's lazy re-export of the API is not an edge of the layers
    GRAPH[_m].pop(_t, None)


def circles() -> list[set[str]]:
    """Strongly connected components of the module graph with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_row():
    missing = sorted(m for m in MODULES if unit(m) not in ALLOWED)
    assert not missing, (
        f"modules of no unit in ALLOWED (add a row, and say where it sits in ARCHITECTURE.md): {missing}"
    )


def test_the_table_reads_one_way():
    """Each row may import only rows above it: the table itself has no circle."""
    order = list(ALLOWED)
    for i, (row, allowed) in enumerate(ALLOWED.items()):
        later = sorted(a for a in allowed if a not in order[:i])
        assert not later, f"{row} may import {later}, which come after it in ALLOWED"


def test_no_upward_import():
    bad = []
    for m, targets in GRAPH.items():
        u = unit(m)
        for t, line in targets.items():
            if (m, t) in FACADE:
                continue
            if unit(t) != u and unit(t) not in ALLOWED.get(u, set()):
                bad.append(f"{MODULES[m].relative_to(REPO)}:{line} ({u}) imports {t} ({unit(t)})")
    assert not bad, "imports against ARCHITECTURE.md's direction:\n" + "\n".join(bad)


def test_no_import_circle():
    """No two modules import each other, directly or through others (the two circles of issue 23,
    checkpoint <-> scorer and presets <-> train, are gone)."""
    found = [sorted(c) for c in circles()]
    assert not found, f"import circles between modules: {found}"


def test_no_module_over_the_line_cap():
    over = sorted(m for m, f in MODULES.items() if len(f.read_text().splitlines()) > MAX_LINES)
    assert not over, f"modules over {MAX_LINES} lines: {over}"


def test_the_walker_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    """The checker itself: an import inside a function and a relative import are both found, and
    an upward one is reported."""
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    from depdet.pipeline.training import runs\n\n\nfrom .layout import check_id\n")
    monkeypatch.setitem(MODULES, "depdet.pipeline.store.fake", fake)
    got = imports_of("depdet.pipeline.store.fake")
    assert set(got) == {"depdet.pipeline.training.runs", "depdet.pipeline.store.layout"}, got
    assert unit("depdet.pipeline.training.runs") not in ALLOWED[unit("depdet.pipeline.store.fake")]


def test_one_environment_inventory():
    """`depdet info` and a run's env.json read one module (depdet/environment.py) and agree."""
    import torch

    from depdet.environment import environment_info, environment_report

    assert "depdet.environment" in GRAPH["depdet.pipeline.reports.console"]  # depdet info
    assert "depdet.environment" in GRAPH["depdet.pipeline.training.runs"]  # a run's env.json
    assert not [m for m in MODULES if m != "depdet.environment" and "def environment_info" in MODULES[m].read_text()]
    info, report = environment_info(torch.device("cpu")), environment_report()
    assert report["python"] == info["python"]
    assert report["torch"].startswith(info["torch"])
    for key, line in (("opensmile", "opensmile"), ("scikit-learn", "scikit-learn"), ("av", "av (FFmpeg)")):
        assert report[line] == (info[key] or "not installed"), key
