"""No module in src/ over 500 lines, no class over 300 (issue 27): past those sizes a
file or a class holds more than one responsibility and is read in pieces anyway, so
it is split by responsibility instead. This keeps the limits from creeping back."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "ecigdis_ws"
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 300


def modules(source: Path) -> list[Path]:
    return sorted(source.rglob("*.py"))


def long_modules(source: Path, limit: int = MAX_MODULE_LINES) -> list[str]:
    """`path: N lines` of each module over `limit` lines."""
    found = []
    for path in modules(source):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit:
            found.append(f"{path.relative_to(source.parent)}: {lines} lines")
    return found


def long_classes(source: Path, limit: int = MAX_CLASS_LINES) -> list[str]:
    """`path:line Name: N lines` of each class (nested ones too) over `limit` lines,
    counted from the `class` line to its last line (decorators not counted)."""
    found = []
    for path in modules(source):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.relative_to(source.parent)}:{node.lineno} "
                                 f"{node.name}: {lines} lines")
    return found


def test_no_module_is_over_500_lines() -> None:
    found = long_modules(SOURCE)
    assert not found, "split by responsibility:\n" + "\n".join(found)


def test_no_class_is_over_300_lines() -> None:
    found = long_classes(SOURCE)
    assert not found, "split by responsibility:\n" + "\n".join(found)


def test_the_limits_catch_what_they_are_for(tmp_path: Path) -> None:
    """A module of 501 lines and a class of 301 are caught; 500 and 300 are not."""
    lengths = tmp_path / "lengths"
    lengths.mkdir()
    (lengths / "fits.py").write_text("x = 1\n" * MAX_MODULE_LINES, encoding="utf-8")
    (lengths / "long.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1), encoding="utf-8")
    classes = tmp_path / "classes"
    classes.mkdir()
    body = "    x = 1\n"
    (classes / "two.py").write_text(
        "class Fits:\n" + body * (MAX_CLASS_LINES - 1)
        + "class Long:\n" + body * MAX_CLASS_LINES, encoding="utf-8")

    assert long_modules(lengths) == [f"lengths/long.py: {MAX_MODULE_LINES + 1} lines"]
    assert long_classes(classes) == [
        f"classes/two.py:{MAX_CLASS_LINES + 1} Long: {MAX_CLASS_LINES + 1} lines"]
