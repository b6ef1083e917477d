"""COPY text encoding and partition sharing of the rebuild's reader processes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from confluent_kafka import TopicPartition as Partition

from projections.rebuild_readers import copy_columns, copy_text, first_of_each_id, split
from projections.tables import ml_predictions


def test_copy_text_escapes_what_the_format_requires_and_writes_nulls() -> None:
    row = {
        "account_id": "tab\there",
        "prediction_type": "new\nline\rreturn back\\slash \\N",
        "probability": Decimal("87.65"),
        "factors": [{"name": 'quote" \\ \t', "contribution": 2.5e300}],
        "model_version": None,
        "created_at": datetime(2026, 1, 5, 8, 0, 0, 123456),
        "event_id": "e-1",
    }
    assert copy_columns(ml_predictions) == [
        "account_id",
        "prediction_type",
        "probability",
        "factors",
        "model_version",
        "created_at",
        "event_id",
    ]
    assert copy_text(ml_predictions, [row]) == (
        b"tab\\there\t"
        b"new\\nline\\rreturn back\\\\slash \\\\N\t"
        b"87.65\t"
        b'[{"name": "quote\\\\" \\\\\\\\ \\\\t", "contribution": 2.5e+300}]\t'
        b"\\N\t"
        b"2026-01-05 08:00:00.123456\t"
        b"e-1\n"
    )
    assert copy_text(ml_predictions, []) == b""


def test_a_record_read_twice_keeps_its_first_row() -> None:
    rows = [{"event_id": "a", "n": 1}, {"event_id": "b", "n": 2}, {"event_id": "a", "n": 3}]
    assert first_of_each_id(rows) == [{"event_id": "a", "n": 1}, {"event_id": "b", "n": 2}]


def test_partitions_are_shared_by_records_left_not_by_count() -> None:
    partitions = [Partition("t", n) for n in range(5)]
    sizes = {("t", 0): 900, ("t", 1): 100, ("t", 2): 400, ("t", 3): 400, ("t", 4): 0}
    shares = split(partitions, sizes, 2)
    loads = sorted(sum(sizes[(p.topic, p.partition)] for p in share) for share in shares)
    assert loads == [900, 900]
    assert sorted(p.partition for share in shares for p in share) == [0, 1, 2, 3, 4]
    assert len(split(partitions[:1], sizes, 4)) == 1, "no reader without partitions"
