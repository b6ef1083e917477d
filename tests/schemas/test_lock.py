"""A committed schema version can be added to, never edited or deleted."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from schema_registry import catalog, lock


def test_the_committed_versions_match_the_lock() -> None:
    assert lock.violations() == []


@pytest.fixture
def schemas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the schema folders and lock, loaded through the real catalogue."""
    copy = tmp_path / "schemas"
    shutil.copytree(catalog.SCHEMA_DIR, copy)
    monkeypatch.setattr(catalog, "SCHEMA_DIR", copy)
    monkeypatch.setattr(lock, "LOCK_FILE", copy / "versions.lock")
    catalog.subjects.cache_clear()
    yield copy
    catalog.subjects.cache_clear()


def _edit(path: Path, change: str) -> None:
    definition = json.loads(path.read_text())
    if change == "doc":
        definition["doc"] = "Better words."
    else:
        definition["fields"][-1]["default"] = None
        definition["fields"][-1]["type"] = ["null", definition["fields"][-1]["type"]]
    path.write_text(json.dumps(definition))
    catalog.subjects.cache_clear()


def test_editing_a_locked_version_is_caught(schemas: Path) -> None:
    _edit(schemas / "usage.signals-value" / "v1.avsc", "type")
    assert lock.violations() == ["usage.signals-value v1 was edited after it was locked"]
    with pytest.raises(SystemExit, match="refusing"):
        lock.record_new_versions()


def test_improving_documentation_is_allowed(schemas: Path) -> None:
    _edit(schemas / "usage.signals-value" / "v1.avsc", "doc")
    assert lock.violations() == []


def test_deleting_a_locked_version_is_caught(schemas: Path) -> None:
    shutil.rmtree(schemas / "predictions-value")
    assert lock.violations() == ["predictions-value v1 is locked but its file is gone"]


def test_a_new_version_is_locked_by_the_tool(schemas: Path) -> None:
    source = schemas / "usage.signals-value" / "v1.avsc"
    shutil.copy(source, source.with_name("v2.avsc"))
    catalog.subjects.cache_clear()
    assert lock.violations() == [
        "usage.signals-value v2 is not locked (run: python -m schema_registry.lock)"
    ]
    assert lock.record_new_versions() == ["usage.signals-value v2"]
    assert lock.violations() == []
