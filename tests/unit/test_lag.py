"""Consumer lag figures and their series."""

from __future__ import annotations

from prometheus_client import REGISTRY

from streams.lag import LagPublisher, faust_lags


def lag(group: str, topic: str, partition: int) -> float | None:
    return REGISTRY.get_sample_value(
        "sfe_consumer_lag_records",
        {"group": group, "topic": topic, "partition": str(partition)},
    )


def test_faust_lag_is_end_minus_the_committed_next_offset() -> None:
    assignment = [("t", 0), ("t", 1), ("t", 2), ("t", 3)]
    end = {("t", 0): 120, ("t", 1): 50, ("t", 3): 9}
    committed = {("t", 0): 100, ("t", 1): 50, ("t", 2): 7}
    # Partition 2 has no end known and 3 no commit yet: left out, not guessed.
    assert faust_lags(assignment, end, committed) == {("t", 0): 20, ("t", 1): 0}


def test_partitions_not_assigned_are_not_reported() -> None:
    assert faust_lags([("t", 0)], {("t", 1): 5}, {("t", 1): 1}) == {}


def test_a_revoked_partition_loses_its_series_and_labels_drop_the_prefix() -> None:
    publisher = LagPublisher("g-unit", prefix="pfx.")
    publisher.publish({("pfx.leads", 0): 12, ("pfx.leads", 1): 3})
    assert lag("g-unit", "leads", 0) == 12
    assert lag("g-unit", "leads", 1) == 3

    publisher.publish({("pfx.leads", 1): 0})  # partition 0 moved to another member
    assert lag("g-unit", "leads", 0) is None
    assert lag("g-unit", "leads", 1) == 0


def test_negative_figures_read_as_zero() -> None:
    LagPublisher("g-negative").publish({("t", 0): -4})
    assert lag("g-negative", "t", 0) == 0
