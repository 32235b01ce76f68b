"""The layout checks itself: every tests/ folder is one pytest collects."""

from __future__ import annotations

import configparser
from pathlib import Path

from django.conf import settings

ROOT = Path(settings.BASE_DIR)
# Suites with a pytest.ini of their own (make drills), and what is not the project's.
OWN_SUITES = {"drills"}
NOT_OURS = {".venv", ".git", "node_modules"}


def folders_named_tests() -> set[Path]:
    """Every folder named tests that holds a test module, relative to the project."""
    found = set()
    for module in ROOT.rglob("tests/test_*.py"):
        folder = module.parent.relative_to(ROOT)
        if not (set(folder.parts) & NOT_OURS or folder.parts[0] in OWN_SUITES):
            found.add(folder)
    return found


def configured_testpaths() -> list[Path]:
    config = configparser.ConfigParser()
    config.read(ROOT / "pytest.ini")
    return [Path(path) for path in config["pytest"]["testpaths"].split()]


def test_every_tests_folder_is_under_a_testpath():
    paths = configured_testpaths()
    folders = folders_named_tests()

    uncollected = sorted(
        str(folder)
        for folder in folders
        if not any(folder.parts[: len(path.parts)] == path.parts for path in paths)
    )

    assert {"accounts/tests", "keys/tests", "billing/tests"} <= {str(f) for f in folders}
    assert uncollected == []
