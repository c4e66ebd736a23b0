"""The package layout holds: no import cycles (module-level or lazy, inside functions), and the
layers import downwards only (the detect path never reaches training code, the CLI or the apps).

Read from the source text with ``ast``: nothing of the package is imported here."""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PKG = SRC / "avsync"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(mod: str, path: Path, known: set[str]) -> set[str]:
    """Every avsync module that ``mod`` imports, wherever the import statement stands."""
    is_pkg = path.name == "__init__.py"
    here = mod.split(".") if is_pkg else mod.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # `from pkg import sub` imports the submodule pkg.sub when it is one
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != mod and t.startswith("avsync"):
                found.add(t)
    return found


@lru_cache(maxsize=1)
def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    # a package's __init__ re-exporting its own parts is not a cycle of the parts
    return {m: {t for t in _imports(m, p, known) if not m.startswith(t + ".")} for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):  # Tarjan
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
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

    for v in graph:
        if v not in index:
            strong(v)
    return out


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


#: a module in the first folder never imports one in the second
FORBIDDEN = [
    ("avsync.nn", "avsync.training"),
    ("avsync.estimators", "avsync.training"),
    ("avsync.features", "avsync.training"),
    ("avsync.media", "avsync.features"),
    ("avsync.media", "avsync.estimators"),
    ("avsync.classify", "avsync.training"),
]
for low in ("avsync.media", "avsync.features", "avsync.estimators", "avsync.nn", "avsync.classify",
            "avsync.datasets", "avsync.training", "avsync.report", "avsync.timeline", "avsync.errors",
            "avsync.options", "avsync.api"):
    FORBIDDEN += [(low, "avsync.cli"), (low, "avsync.apps"), (low, "avsync.bench")]


@pytest.mark.parametrize("low,high", FORBIDDEN, ids=[f"{a}-/->{b}" for a, b in FORBIDDEN])
def test_layers_import_downwards(low, high):
    bad = sorted(f"{m} -> {t}" for m, ts in _graph().items() if m == low or m.startswith(low + ".")
                 for t in ts if t == high or t.startswith(high + "."))
    assert not bad, "\n".join(bad)
