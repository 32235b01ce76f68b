"""billing's two systems: metering never imports payments (GET /v1/billing composes
them at billing's root)."""

from __future__ import annotations

import ast
from pathlib import Path

METERING = Path(__file__).resolve().parents[1] / "metering"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_metering_never_imports_payments():
    offenders = {
        str(path.relative_to(METERING.parent)): sorted(
            name for name in imported_modules(path) if name.startswith("billing.payments")
        )
        for path in sorted(METERING.rglob("*.py"))
    }

    assert {path: names for path, names in offenders.items() if names} == {}
