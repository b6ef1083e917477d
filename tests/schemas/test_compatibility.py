"""Every committed schema version is BACKWARD compatible with the one before it."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.utils import generate_many
from hypothesis import given, settings
from hypothesis import strategies as st

from schema_registry import catalog
from schema_registry.compatibility import backward_problems, subject_problems
from tests.schemas.strategies import records

EVOLVED = [
    (subject, version)
    for subject, kept in sorted(catalog.subjects().items())
    for version in range(2, len(kept) + 1)
]


@pytest.mark.parametrize("subject", sorted(catalog.subjects()))
def test_each_version_reads_the_previous_one(subject: str) -> None:
    assert subject_problems(subject) == []


def test_some_subject_has_evolved() -> None:
    assert EVOLVED, "no subject has a second version: the check above would prove nothing"


@pytest.mark.parametrize(("subject", "version"), EVOLVED)
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_fastavro_resolves_old_records_with_the_new_schema(
    subject: str, version: int, data: st.DataObject
) -> None:
    older = catalog.schema(subject, version - 1)
    record = data.draw(records(subject, version - 1))
    resolved = resolve(older.definition, catalog.schema(subject, version).definition, record)
    assert resolved["id"] == record["id"]


def resolve(writer: Any, reader: Any, record: dict[str, Any]) -> Any:
    buffer = io.BytesIO()
    schemaless_writer(buffer, parse_schema(writer), record)
    buffer.seek(0)
    return schemaless_reader(buffer, parse_schema(writer), parse_schema(reader))


def rec(*fields: dict[str, Any], name: str = "Thing") -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "t", "fields": list(fields)}


def enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Colour", "symbols": list(symbols), **extra}


ID = {"name": "id", "type": "string"}

INCOMPATIBLE = [
    (
        "field added without a default",
        rec(ID),
        rec(ID, {"name": "n", "type": "long"}),
        "field added without a default",
    ),
    (
        "type changed",
        rec(ID, {"name": "n", "type": "string"}),
        rec(ID, {"name": "n", "type": "long"}),
        "cannot read writer type string",
    ),
    (
        "narrowed union",
        rec(ID, {"name": "n", "type": ["null", "string"]}),
        rec(ID, {"name": "n", "type": "string"}),
        "cannot read writer type null",
    ),
    (
        "demotion",
        rec(ID, {"name": "n", "type": "long"}),
        rec(ID, {"name": "n", "type": "int"}),
        "cannot read writer type long",
    ),
    (
        "enum symbol removed",
        rec(ID, {"name": "c", "type": enum("RED", "BLUE")}),
        rec(ID, {"name": "c", "type": enum("RED")}),
        "lost symbols ['BLUE']",
    ),
    ("record renamed", rec(ID), rec(ID, name="Other"), "reader record Other cannot read Thing"),
    (
        "array items changed",
        rec(ID, {"name": "a", "type": {"type": "array", "items": "string"}}),
        rec(ID, {"name": "a", "type": {"type": "array", "items": "double"}}),
        "$.a[]",
    ),
    (
        "map values changed",
        rec(ID, {"name": "m", "type": {"type": "map", "values": "boolean"}}),
        rec(ID, {"name": "m", "type": {"type": "map", "values": "string"}}),
        "$.m{}",
    ),
    (
        "fixed resized",
        rec(ID, {"name": "f", "type": {"type": "fixed", "name": "F", "size": 4}}),
        rec(ID, {"name": "f", "type": {"type": "fixed", "name": "F", "size": 8}}),
        "fixed size 8",
    ),
]

COMPATIBLE = [
    ("field added with a default", rec(ID), rec(ID, {"name": "n", "type": "long", "default": 0})),
    ("field removed", rec(ID, {"name": "n", "type": "long"}), rec(ID)),
    (
        "promotions",
        rec(ID, {"name": "n", "type": "int"}, {"name": "s", "type": "string"}),
        rec(ID, {"name": "n", "type": "double"}, {"name": "s", "type": "bytes"}),
    ),
    (
        "widened to a union",
        rec(ID, {"name": "n", "type": "string"}),
        rec(ID, {"name": "n", "type": ["null", "string"]}),
    ),
    (
        "enum symbol added",
        rec(ID, {"name": "c", "type": enum("RED")}),
        rec(ID, {"name": "c", "type": enum("RED", "BLUE")}),
    ),
    (
        "enum symbol removed with a default",
        rec(ID, {"name": "c", "type": enum("RED", "BLUE")}),
        rec(ID, {"name": "c", "type": enum("RED", default="RED")}),
    ),
    (
        "field renamed with an alias",
        rec(ID, {"name": "old", "type": "long"}),
        rec(ID, {"name": "new", "type": "long", "aliases": ["old"]}),
    ),
    ("record renamed with an alias", rec(ID), {**rec(ID, name="Other"), "aliases": ["Thing"]}),
    (
        "recursive type",
        rec(ID, {"name": "next", "type": ["null", "t.Thing"]}),
        rec(
            ID,
            {"name": "next", "type": ["null", "Thing"]},
            {"name": "n", "type": "int", "default": 1},
        ),
    ),
]


@pytest.mark.parametrize(
    ("case", "old", "new", "expected"), INCOMPATIBLE, ids=[c[0] for c in INCOMPATIBLE]
)
def test_incompatible_changes_are_reported(case: str, old: Any, new: Any, expected: str) -> None:
    problems = backward_problems(new, old)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(("case", "old", "new"), COMPATIBLE, ids=[c[0] for c in COMPATIBLE])
def test_compatible_changes_pass(case: str, old: Any, new: Any) -> None:
    assert backward_problems(new, old) == []
    for record in generate_many(parse_schema(old), 20):  # fastavro agrees
        resolve(old, new, record)


@pytest.mark.parametrize(
    ("case", "old", "new", "expected"), INCOMPATIBLE[:5], ids=[c[0] for c in INCOMPATIBLE[:5]]
)
def test_fastavro_also_fails_on_incompatible_changes(
    case: str, old: Any, new: Any, expected: str
) -> None:
    failures = 0
    for record in generate_many(parse_schema(old), 50):
        try:
            resolve(old, new, record)
        except Exception:
            failures += 1
    assert failures > 0


@pytest.fixture
def schema_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of one subject's committed versions, loaded through the real catalogue."""
    subject = tmp_path / "command.results-value"
    subject.mkdir()
    for version in catalog.versions("command.results-value"):
        (subject / f"v{version.version}.avsc").write_text(version.text)
    monkeypatch.setattr(catalog, "SCHEMA_DIR", tmp_path)
    catalog.subjects.cache_clear()
    yield subject
    catalog.subjects.cache_clear()


def test_an_incompatible_new_version_fails_the_subject_check(schema_dir: Path) -> None:
    v3 = json.loads((schema_dir / "v2.avsc").read_text())
    v3["fields"].append({"name": "attempts", "type": "int", "doc": "no default"})
    (schema_dir / "v3.avsc").write_text(json.dumps(v3))

    assert subject_problems("command.results-value") == [
        "command.results-value v3 reading v2: $.attempts: field added without a default"
    ]


def test_a_gap_in_the_versions_is_refused(schema_dir: Path) -> None:
    gap = len(list(schema_dir.glob("v*.avsc"))) + 2
    (schema_dir / f"v{gap}.avsc").write_text((schema_dir / "v2.avsc").read_text())
    with pytest.raises(RuntimeError, match="without gaps"):
        catalog.subjects()
