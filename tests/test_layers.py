"""The package's import structure, read from its source with ``ast`` (nothing is imported):

* no import circle between modules of ``passbench/``;
* no upward import: a module imports only from its own package (``skip/``, ``train/``, ...) or from a
  lower layer, in the order ``docs/architecture.md`` states (its ``layer N  unit ...`` lines); two
  units of one layer know nothing of each other;
* no module longer than ``MAX_LINES`` unless the README of its folder says why, under a heading
  "Files over 500 lines".

Imports inside functions count (a deferred import is still a dependency), and so do the runner's
``_need("passbench.x", ...)`` / ``importlib.import_module("passbench.x")`` string imports.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from passbench import runner
from passbench.paths import REPO_ROOT

PKG = REPO_ROOT / "passbench"
ARCH = REPO_ROOT / "docs" / "architecture.md"
MAX_LINES = 500
DYNAMIC = {"_need", "need", "import_module"}  # calls whose first argument is a module name


def modules(pkg: Path = PKG) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``pkg`` (a package is its ``__init__``)."""
    out = {}
    for p in sorted(pkg.rglob("*.py")):
        parts = list(p.relative_to(pkg.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


def imports(mods: dict[str, Path]) -> list[tuple[str, str, int]]:
    """``(importer, imported, line)`` for every import of a ``passbench`` module, resolved to the
    longest module name that exists (``from passbench.skip import reset`` -> ``passbench.skip``;
    ``from passbench import runner`` -> ``passbench.runner``)."""

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges = set()
    for mod, path in mods.items():
        base = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from .x import y
                    up = base.split(".")[: len(base.split(".")) - node.level + 1]
                    full = ".".join(up + ([node.module] if node.module else []))
                else:
                    full = node.module or ""
                names = [f"{full}.{a.name}" if f"{full}.{a.name}" in mods else full for a in node.names]
            elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                fn = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if fn in DYNAMIC and isinstance(node.args[0].value, str):
                    names = [node.args[0].value]
            for n in names:
                if n == "passbench" or n.startswith("passbench."):
                    target = resolve(n)
                    if target and target != mod:
                        edges.add((mod, target, node.lineno))
    return sorted(edges)


def unit(mod: str) -> str:
    """The package or top-level module a module belongs to: ``passbench.skip.sparse`` -> ``skip``."""
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "passbench"


def layers(text: str) -> dict[str, int]:
    """``unit -> layer`` from the ``layer N  unit unit ...`` lines of docs/architecture.md."""
    out: dict[str, int] = {"passbench": -1}  # the root package imports nothing (checked below)
    for m in re.finditer(r"^\s*layer (\d+)\s+(.+?)\s*$", text, re.M):
        for u in m.group(2).split():
            assert u not in out, f"docs/architecture.md puts '{u}' in two layers"
            out[u] = int(m.group(1))
    return out


def cycles(mods: dict[str, Path], edges: list[tuple[str, str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for a, b, _ in edges:
        graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


MODS = modules()
EDGES = imports(MODS)


def test_the_walk_sees_the_package():
    """The checks below read a real graph (not an empty walk that passes by default)."""
    assert len(MODS) > 60 and len(EDGES) > 150
    assert any(a == "passbench.runner.mot" and b == "passbench.tracking.infer" for a, b, _ in EDGES)  # via _need


def test_no_import_circle():
    found = cycles(MODS, EDGES)
    msg = []
    for comp in found:
        msg.append(" <-> ".join(comp) + ": " + "; ".join(
            f"{MODS[a].relative_to(REPO_ROOT)}:{ln} imports {b}" for a, b, ln in EDGES if a in comp and b in comp))
    assert not found, "import circles:\n" + "\n".join(msg)


def test_imports_point_down_the_layers():
    order = layers(ARCH.read_text())
    assert len(order) > 10, "docs/architecture.md lost its 'layer N  unit ...' lines"
    missing = sorted({unit(m) for m in MODS} - set(order))
    assert not missing, f"docs/architecture.md gives no layer to {missing}"
    bad = [f"{MODS[a].relative_to(REPO_ROOT)}:{ln}: {unit(a)} (layer {order[unit(a)]}) imports {b} "
           f"({unit(b)}, layer {order[unit(b)]})"
           for a, b, ln in EDGES if unit(a) != unit(b) and order[unit(b)] >= order[unit(a)]]
    assert not bad, "imports that do not point to a lower layer:\n" + "\n".join(bad)


def private_imports(files: list[Path], where: str = "passbench") -> list[str]:
    """``file:line module.name`` for every use of an underscore name of ``where`` (or its modules) in
    ``files``: ``from where[.x] import _name``, and ``alias._name`` / ``setattr(alias, "_name", ...)`` on a
    module imported as ``alias`` (``from passbench import runner``, ``import passbench.runner.core as c``)."""
    out = []
    for f in files:
        tree = ast.parse(f.read_text(), str(f))
        alias: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    if f"{full}.".startswith(f"{where}.") and not a.name.startswith("_"):
                        alias[a.asname or a.name] = full  # a module (or a name) of ``where``
                    elif f"{node.module}.".startswith(f"{where}.") and a.name.startswith("_"):
                        out.append(f"{f.name}:{node.lineno} {full}")
            elif isinstance(node, ast.Import):
                alias.update({a.asname: a.name for a in node.names
                              if a.asname and f"{a.name}.".startswith(f"{where}.")})
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in alias \
                    and node.attr.startswith("_") and not node.attr.startswith("__"):
                out.append(f"{f.name}:{node.lineno} {alias[node.value.id]}.{node.attr}")
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "setattr" \
                    and len(node.args) >= 2 and isinstance(node.args[0], ast.Name) and node.args[0].id in alias \
                    and isinstance(node.args[1], ast.Constant) and str(node.args[1].value).startswith("_"):
                out.append(f"{f.name}:{node.lineno} {alias[node.args[0].id]}.{node.args[1].value}")
    return sorted(set(out))


def test_public_seams_instead_of_private_imports():
    """No module of passbench imports another's underscore name, and no test or script pins a private
    name of the runner (what they need from it is public: ``passbench.runner.core`` / ``.mot``)."""
    assert not private_imports(list(MODS.values()))
    scripts = sorted((REPO_ROOT / "tests").glob("*.py")) + sorted((REPO_ROOT / "scripts").glob("*.py"))
    assert not private_imports(scripts, "passbench.runner")
    assert not [n for n in runner.__all__ if n.startswith("_")]


def _explained(path: Path) -> bool:
    """Whether ``path``'s folder README names it under a heading "Files over 500 lines"."""
    readme = path.parent / "README.md"
    if not readme.is_file():
        return False
    m = re.search(r"^#+ Files over 500 lines\s*$(.*?)(?=^#|\Z)", readme.read_text(), re.M | re.S)
    return bool(m and f"`{path.name}`" in m.group(1))


def test_no_long_module_without_a_reason():
    long = {p: n for p in MODS.values() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    bad = [f"{p.relative_to(REPO_ROOT)}: {n} lines" for p, n in long.items() if not _explained(p)]
    assert not bad, (f"modules over {MAX_LINES} lines whose folder README.md does not say why (section "
                     f"'Files over 500 lines'):\n" + "\n".join(bad))


@pytest.mark.parametrize("src, expect", [
    ("from passbench.cli import main\n", ["passbench.cli"]),
    ("def f():\n    from passbench.skip import reset\n", ["passbench.skip"]),
    ("import passbench.records as R\n", ["passbench.records"]),
    ("x = _need('passbench.tracking.infer', 'track_sequence')\n", ["passbench.tracking.infer"]),
    ("from . import fold\n", ["passbench.skip.fold"]),
    ("import torch\nfrom typing import Any\n", []),
])
def test_the_walk_reads_every_import_form(tmp_path, src, expect):
    """Top-level, deferred, aliased, relative and string imports are all seen (a hand-made package)."""
    pkg = tmp_path / "passbench"
    for f in ("__init__.py", "cli.py", "records.py", "skip/__init__.py", "skip/fold.py",
              "tracking/__init__.py", "tracking/infer.py"):
        (pkg / f).parent.mkdir(parents=True, exist_ok=True)
        (pkg / f).write_text("")
    (pkg / "skip" / "probe.py").write_text(src)
    mods = modules(pkg)
    assert sorted(b for a, b, _ in imports(mods) if a == "passbench.skip.probe") == expect


def test_a_circle_and_an_upward_import_are_found(tmp_path):
    """The checks fail on what they name: a circle between two modules and a lower layer importing a higher."""
    pkg = tmp_path / "passbench"
    (pkg / "skip").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "skip" / "__init__.py").write_text("")
    (pkg / "skip" / "a.py").write_text("from passbench.skip.b import x\n")
    (pkg / "skip" / "b.py").write_text("def f():\n    from passbench.skip.a import y\n")
    (pkg / "runner.py").write_text("")
    (pkg / "skip" / "c.py").write_text("import passbench.runner\n")
    mods = modules(pkg)
    edges = imports(mods)
    assert cycles(mods, edges) == [["passbench.skip.a", "passbench.skip.b"]]
    order = layers("layer 1  skip\nlayer 5  runner\n")
    up = [(a, b) for a, b, _ in edges if unit(a) != unit(b) and order[unit(b)] >= order[unit(a)]]
    assert up == [("passbench.skip.c", "passbench.runner")]


def test_a_private_import_is_found(tmp_path):
    """Imports, attribute reads and monkeypatches of underscore names are all found."""
    f = tmp_path / "probe.py"
    f.write_text("from passbench.runner.core import _cost, cost_from_stats\nfrom passbench.cli import _x\n"
                 "from passbench import runner\nimport passbench.runner.mot as M\n"
                 "runner._frames_for(1)\nM._timing_inputs\nmonkeypatch.setattr(runner, '_run_mot', 1)\n"
                 "runner.run(1)\nrunner.__all__\n")
    assert private_imports([f], "passbench.runner") == [
        "probe.py:1 passbench.runner.core._cost", "probe.py:5 passbench.runner._frames_for",
        "probe.py:6 passbench.runner.mot._timing_inputs", "probe.py:7 passbench.runner._run_mot"]
    assert "probe.py:2 passbench.cli._x" in private_imports([f])


def test_a_long_module_needs_its_folders_reason(tmp_path):
    """Only a README section "Files over 500 lines" that names the file in backticks explains it."""
    long = tmp_path / "gates.py"
    long.write_text("x = 1\n" * 501)
    assert not _explained(long)
    (tmp_path / "README.md").write_text("# skip\n\n`gates.py` holds the gates.\n")
    assert not _explained(long)
    (tmp_path / "README.md").write_text("# skip\n\n## Files over 500 lines\n\n* `gates.py`: why.\n\n## Other\n")
    assert _explained(long)
    (tmp_path / "README.md").write_text("## Files over 500 lines\n\n* `sparse.py`: why.\n\n## Other\n`gates.py`\n")
    assert not _explained(long)
