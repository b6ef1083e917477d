"""The committed schemas and the event classes describe the same events."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from schema_registry import catalog
from schema_registry.events import ENVELOPE_FIELDS

SUBJECTS = sorted(catalog.subjects())


def test_every_subject_has_an_event_class_and_every_class_a_subject() -> None:
    assert set(catalog.subjects()) == set(catalog.EVENT_TYPES)


@pytest.mark.parametrize("subject", SUBJECTS)
def test_the_class_models_the_latest_version(subject: str) -> None:
    latest = catalog.schema(subject)
    event_class = catalog.event_type(subject)
    assert event_class.schema_version == latest.version
    assert latest.definition["name"] == event_class.type


@pytest.mark.parametrize("subject", SUBJECTS)
def test_every_schema_starts_with_the_envelope(subject: str) -> None:
    fields = catalog.schema(subject).definition["fields"]
    envelope = {field["name"]: field for field in fields[: len(ENVELOPE_FIELDS)]}
    assert tuple(envelope) == ENVELOPE_FIELDS
    assert envelope["time"]["type"] == {"type": "long", "logicalType": "timestamp-millis"}
    assert envelope["schema_version"]["type"] == "int"
    for optional in ("causation_id", "correlation_id"):
        assert envelope[optional]["type"] == ["null", "string"]
        assert envelope[optional]["default"] is None


def avro_fields(node: Any) -> dict[str, Any]:
    return {field["name"]: field["type"] for field in node["fields"]}


@pytest.mark.parametrize("subject", SUBJECTS)
def test_class_fields_are_the_schema_fields(subject: str) -> None:
    event_class = catalog.event_type(subject)
    class_fields = {field.name for field in dataclasses.fields(event_class)}
    assert class_fields | {"type", "schema_version"} == set(
        avro_fields(catalog.schema(subject).definition)
    )


@pytest.mark.parametrize("subject", SUBJECTS)
def test_every_field_is_documented(subject: str) -> None:
    def walk(node: Any, path: str) -> list[str]:
        undocumented = []
        if isinstance(node, list):
            for branch in node:
                undocumented += walk(branch, path)
        elif isinstance(node, dict) and node.get("type") == "record":
            for field in node["fields"]:
                if not field.get("doc"):
                    undocumented.append(f"{path}.{field['name']}")
                undocumented += walk(field["type"], f"{path}.{field['name']}")
        elif isinstance(node, dict) and node.get("type") in ("array", "map"):
            undocumented += walk(node.get("items", node.get("values")), path)
        return undocumented

    assert walk(catalog.schema(subject).definition, subject) == []


@pytest.mark.parametrize("name", catalog.CDC_OBJECTS)
def test_each_cdc_topic_has_its_own_record_namespace(name: str) -> None:
    definition = catalog.schema(f"sf.cdc.{name}-value").definition
    assert definition["namespace"] == f"sfe.cdc.{name}"


def test_the_schema_files_are_what_the_package_ships() -> None:
    for subject, kept in catalog.subjects().items():
        for version in kept:
            path = catalog.SCHEMA_DIR / subject / f"v{version.version}.avsc"
            assert json.loads(path.read_text()) == version.definition


def test_unknown_subjects_and_versions_are_refused() -> None:
    from schema_registry.errors import UnknownSubject

    with pytest.raises(UnknownSubject, match="nope-value"):
        catalog.schema("nope-value")
    with pytest.raises(UnknownSubject, match="v7"):
        catalog.schema("predictions-value", 7)
