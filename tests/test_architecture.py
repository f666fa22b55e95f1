"""The import contract: layers, top to bottom, and no import runs upward.

    entry points   cli, app (the one wiring point), bench, ops
    transport      transport (Socket.IO integration, HTTP and REST routes, app keys)
    services       services
    state          cluster, fanout (the seam), storage — independent of each other
    domain         domain, events, errors, clock, settings, json_codec, observability,
                   websocket_frames

A module may import its own layer and the layers below it; the three state
packages may not import one another. docs/architecture.md says why.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "ecigdis_ws"
LAYERS = {
    "entry": ("cli", "app", "__main__", "bench", "ops"),
    "transport": ("transport",),
    "services": ("services",),
    "state": ("cluster", "fanout", "storage"),
    "domain": ("domain", "errors", "clock", "settings", "json_codec", "observability",
               "websocket_frames", "events", "__init__"),
}
RANK = {top: rank for rank, tops in enumerate(reversed(LAYERS.values())) for top in tops}
SIBLINGS_APART = set(LAYERS["state"])


def top_of(module: str) -> str:
    """`ecigdis_ws.transport.rest_routes` -> `transport`; the package itself -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def absolute(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """What a `from` import names, relative ones resolved against the importing
    module (`from ..transport import x` in ecigdis_ws.storage.base is
    ecigdis_ws.transport.x)."""
    if node.level == 0:
        return [node.module] if node.module else []
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[:len(package) - (node.level - 1)]
    if node.module:
        return [".".join([*base, node.module])]
    return [".".join([*base, alias.name]) for alias in node.names]  # (from .. import x)


def project_imports(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found.extend(absolute(module, path.name == "__init__.py", node))
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
    return [name for name in found if name == "ecigdis_ws" or name.startswith("ecigdis_ws.")]


def module_name(source: Path, path: Path) -> str:
    parts = path.relative_to(source).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("ecigdis_ws", *parts))


def violations(source: Path) -> list[str]:
    problems = []
    for path in sorted(source.rglob("*.py")):
        module = module_name(source, path)
        here = top_of(module)
        for imported in project_imports(path, module):
            there = top_of(imported)
            if here not in RANK or there not in RANK:
                problems.append(f"{module} -> {imported}: a package not in LAYERS")
            elif RANK[there] > RANK[here]:
                problems.append(f"{module} -> {imported}: imports upward")
            elif here != there and {here, there} <= SIBLINGS_APART:
                problems.append(f"{module} -> {imported}: state packages are independent")
    return problems


def test_no_import_runs_upward() -> None:
    assert violations(SOURCE) == []


@pytest.mark.parametrize("line,why", [
    ("from ecigdis_ws.transport.validation import payload", "imports upward"),
    ("from ecigdis_ws.fanout.base import Fanout", "state packages are independent"),
    ("import ecigdis_ws.bench.runner", "imports upward"),
    ("from ..transport import validation", "imports upward"),
    ("from ..fanout.base import Fanout", "state packages are independent"),
])
def test_an_upward_import_fails_the_contract(tmp_path: Path, line: str, why: str) -> None:
    """The contract catches what it is for: a copy of the source with one bad import."""
    copy = tmp_path / "ecigdis_ws"
    for path in SOURCE.rglob("*.py"):
        target = copy / path.relative_to(SOURCE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    storage = copy / "storage" / "base.py"
    storage.write_text(storage.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")

    assert [problem for problem in violations(copy) if why in problem] != []
