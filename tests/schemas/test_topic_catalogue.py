"""The topic catalogue names a schema for every topic, and docs/topics.md is generated from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from schema_registry import catalog
from sfe.cli import main
from streams import topic_docs
from streams.topics import CATALOGUE, Topic, catalogue, topic

REPO = Path(__file__).resolve().parents[2]

REQUIRED = [
    *(f"sf.cdc.{name}" for name in ("Lead", "Contact", "Account", "Opportunity", "Case", "Task")),
    "sf.events.New_Lead__e",
    "decisions.leads",
    "commands.salesforce",
    "commands.notifications",
    "commands.provisioning",
    "provisioning.results",
    "predictions",
    "workflow.events",
    "command.results",
    "dlq.ingest",
    "dlq.salesforce",
    "sfe.ingest.checkpoints",
    "usage.signals",
]


def test_names_are_unique() -> None:
    names = [entry.name for entry in CATALOGUE]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", REQUIRED)
def test_the_required_topics_are_catalogued(name: str) -> None:
    assert topic(name).name == name


def test_every_topic_has_a_schema_and_every_schema_a_topic() -> None:
    assert {entry.value_subject for entry in CATALOGUE} == set(catalog.subjects())


def test_the_checkpoint_topic_is_compacted_and_the_log_kept_forever() -> None:
    assert topic("sfe.ingest.checkpoints").config() == {"cleanup.policy": "compact"}
    assert topic("sf.cdc.Lead").config() == {"cleanup.policy": "delete", "retention.ms": "-1"}
    assert topic("commands.notifications").config()["retention.ms"] == str(30 * 86_400_000)


@pytest.mark.parametrize(
    ("left", "right"),
    [("commands.provisioning", "provisioning.results"), ("commands.salesforce", "command.results")],
)
def test_topics_joined_on_a_key_are_co_partitioned(left: str, right: str) -> None:
    assert topic(left).partitions == topic(right).partitions


def test_a_prefix_renames_topics_but_keeps_their_schemas() -> None:
    prefixed = catalogue("staging.")
    assert [entry.name for entry in prefixed] == ["staging." + e.name for e in CATALOGUE]
    assert [entry.value_subject for entry in prefixed] == [e.value_subject for e in CATALOGUE]


def test_a_compacted_topic_cannot_also_have_a_retention() -> None:
    with pytest.raises(ValueError, match="compacted"):
        Topic("x", 1, "k", "d", "g", "p", "c", retention_ms=1000, compacted=True)


def test_the_committed_docs_are_up_to_date() -> None:
    committed = (REPO / topic_docs.DOCS_PATH).read_text()
    assert committed == topic_docs.render(CATALOGUE), (
        "docs/topics.md is stale: run `sfe topics docs --write`"
    )


def test_the_docs_describe_every_topic_and_field() -> None:
    text = topic_docs.render(CATALOGUE)
    for entry in CATALOGUE:
        assert f"## {entry.name}\n" in text
        for field in catalog.schema(entry.value_subject).definition["fields"]:
            assert f"| `{field['name']}` |" in text


def test_docs_write_creates_the_file(tmp_path: Path) -> None:
    output = tmp_path / "docs" / "topics.md"
    result = CliRunner().invoke(main, ["topics", "docs", "--write", "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert output.read_text() == topic_docs.render(CATALOGUE)


def test_list_prints_every_topic() -> None:
    result = CliRunner().invoke(main, ["topics", "list", "--prefix", "p."])
    assert result.exit_code == 0
    assert [line.split()[0] for line in result.output.splitlines()] == [
        "p." + entry.name for entry in CATALOGUE
    ]
