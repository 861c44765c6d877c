"""The house rules, read from the source: rooms import `core`/`models`/`config`/`schema` and
each other's public names only, nothing below the entry points imports them, there is no
import cycle, only the core adapter talks to Ray Data, and only core/ray_compat.py names Ray's
private modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "medgen_ray"
ENTRY_POINTS = {"medgen_ray.cli", "medgen_ray.demo", "medgen_ray.runner"}
SHARED = {"medgen_ray.config", "medgen_ray.schema"}
ROOT_MODULES = ENTRY_POINTS | SHARED


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(imported module, imported name or '', line) for every import in the file, lazy ones too."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names if a.name.startswith("medgen_ray")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("medgen_ray"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.append((sub, "", node.lineno) if sub in modules else (node.module, a.name, node.lineno))
    return out


def _room(module: str) -> str:
    """The package a module lives in: medgen_ray.curate.cut -> curate; root modules by name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or module in {"medgen_ray." + p.name for p in PKG.iterdir() if p.is_dir()} \
        else module


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: {t for t, _, _ in _imports(p, modules) if t in modules and t != m} for m, p in modules.items()}


def test_package_root_keeps_only_entry_points_and_shared_trees():
    loose = sorted(_module_name(p) for p in PKG.glob("*.py") if p.name != "__init__.py")
    assert set(loose) == ROOT_MODULES, f"loose modules at the package root: {sorted(set(loose) - ROOT_MODULES)}"
    for room in ("core", "models", "curate", "train", "serve", "evaluate", "experiments", "samples"):
        assert (PKG / room / "__init__.py").is_file(), room


def test_no_upward_imports():
    modules = _modules()
    bad = [f"{m}:{line} imports {t}" for m, p in modules.items() if m not in ENTRY_POINTS
           for t, _, line in _imports(p, modules) if t in ENTRY_POINTS]
    assert not bad, "below the entry points, nothing imports cli/demo/runner:\n" + "\n".join(bad)


def test_core_and_models_import_no_feature_room():
    """The layers, bottom up: models (family specs, loaders) < config, schema < core < the rooms.
    Nothing imports a layer above its own (models/requirements.py imported config.AppConfig)."""
    modules = _modules()
    allowed = {"core": {"core"} | SHARED, "models": {"models"},
               "medgen_ray.config": {"models", "medgen_ray.config"}, "medgen_ray.schema": {"medgen_ray.schema"}}
    bad = []
    for m, p in modules.items():
        room = _room(m)
        if room not in allowed:
            continue
        for t, _, line in _imports(p, modules):
            if _room(t) not in allowed[room] and t not in allowed[room]:
                bad.append(f"{m}:{line} imports {t}")
    assert not bad, "\n".join(bad)


def test_no_private_names_across_packages():
    modules = _modules()
    bad = []
    for m, p in modules.items():
        for t, name, line in _imports(p, modules):
            private = name.startswith("_") or any(part.startswith("_") and part != "__init__" for part in t.split("."))
            if private and _room(t) != _room(m):
                bad.append(f"{m}:{line} imports {t}{'.' + name if name else ''}")
    assert not bad, "private names imported from another package:\n" + "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert not _cycles(_graph()), f"import cycles (lazy imports count): {_cycles(_graph())}"


def test_cycle_finder_finds_a_cycle():
    """The check above can fail: a planted two-module cycle is found."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


RAY_DATA_ADAPTER = "medgen_ray.core.dataflow"
RAY_COMPAT = "medgen_ray.core.ray_compat"


@pytest.mark.parametrize("needle", ["ray.data", "map_batches(", "read_parquet(", "from_items("])
def test_only_the_core_adapter_calls_ray_data(needle):
    users = sorted(_module_name(p) for p in PKG.rglob("*.py")
                   if needle in p.read_text() and _module_name(p) not in (RAY_DATA_ADAPTER, RAY_COMPAT))
    if needle == "read_parquet(":  # Ray Data's reader; pyarrow's pq.read_table is not this
        users = [u for u in users if "ray.data.read_parquet" in (PKG.parent / (u.replace(".", "/") + ".py")).read_text()]
    assert not users, f"{needle} outside core/dataflow.py: {users}"


PRIVATE_RAY = ("ray._private", "ray.serve._private", "ray.data._internal", "_get_global_client", "_node_ip_address",
               "_global_node", "ray_constants")


@pytest.mark.parametrize("needle", PRIVATE_RAY)
def test_private_ray_names_live_in_ray_compat(needle):
    import re

    pattern = re.compile(r"(?<![\w])" + re.escape(needle))  # ray.util.get_node_ip_address is public
    users = sorted(_module_name(p) for p in PKG.rglob("*.py")
                   if pattern.search(p.read_text()) and _module_name(p) != RAY_COMPAT)
    assert not users, f"{needle} outside core/ray_compat.py: {users}"


def test_each_job_driver_lives_in_its_room():
    """runner.py is a table of jobs: each driver is defined in its own package."""
    from medgen_ray.runner import JOBS, run_dedup

    homes = {name: fn.__module__ for name, fn in {**JOBS, "dedup": run_dedup}.items()}
    assert homes == {"curate": "medgen_ray.curate.job", "dedup": "medgen_ray.curate.job",
                     "precompute": "medgen_ray.train.precompute_job", "train": "medgen_ray.train.train_job",
                     "evaluate": "medgen_ray.evaluate.job", "experiment": "medgen_ray.experiments.arms"}
    tree = ast.parse((PKG / "runner.py").read_text())
    assert not [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))], "runner.py defines code"


def test_public_functions_and_classes_have_docstrings():
    missing = []
    for m, p in _modules().items():
        for node in ast.parse(p.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                if not ast.get_docstring(node):
                    missing.append(f"{m}.{node.name}")
    assert not missing, f"{len(missing)} public definitions without a docstring: {missing}"
