"""An agent's changelog state against the real broker: staged, committed, aborted, restored."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer

from sfe.settings import Settings
from streams.worker.state import ChangelogState, StateRestoreError
from tests.kafka_helpers import delete_topics_with_prefix

pytestmark = pytest.mark.integration


@pytest.fixture
def topic(stack: Settings) -> Iterator[str]:
    """The name of a state topic of the test's own, deleted afterwards."""
    prefix = f"state.{uuid.uuid4().hex[:8]}."
    yield prefix + "agent.state"
    delete_topics_with_prefix(stack, prefix)


def state(settings: Settings, topic: str, partitions: int = 3) -> ChangelogState:
    return ChangelogState(
        name="test",
        bootstrap=settings.kafka_bootstrap,
        topic=topic,
        partitions=partitions,
        restore_timeout_seconds=30,
    )


def in_transaction(producer: Producer, held: ChangelogState, *, commit: bool) -> None:
    producer.begin_transaction()
    assert held.produce_staged(producer) > 0
    producer.flush(30)
    if commit:
        producer.commit_transaction(30)
        held.apply_staged()
    else:
        producer.abort_transaction(30)
        held.discard_staged()


def test_committed_values_come_back_and_aborted_ones_never_do(stack: Settings, topic: str) -> None:
    first = state(stack, topic)
    first.ensure_topic()
    first.restore([0, 1, 2])  # an empty topic: nothing to read, every partition held
    assert first.owned == {0, 1, 2}
    producer = Producer(
        {"bootstrap.servers": stack.kafka_bootstrap, "transactional.id": f"{topic}.test"}
    )
    producer.init_transactions(30)

    first.put(0, "006A", {"stage": "Prospecting", "history": ("Prospecting",)})
    first.put(2, "006B", {"stage": "Qualification"})
    # Staged values read back as their JSON round trip, before and after the commit.
    assert first.get(0, "006A") == {"stage": "Prospecting", "history": ["Prospecting"]}
    in_transaction(producer, first, commit=True)
    assert first.get(2, "006B") == {"stage": "Qualification"}

    first.put(0, "006A", {"stage": "Closed Won"})
    assert first.get(0, "006A") == {"stage": "Closed Won"}
    in_transaction(producer, first, commit=False)
    assert first.get(0, "006A") == {"stage": "Prospecting", "history": ["Prospecting"]}

    second = state(stack, topic)
    second.ensure_topic()  # exists already: nothing to do
    second.restore([0, 2])
    assert second.owned == {0, 2}
    assert second.get(0, "006A") == {"stage": "Prospecting", "history": ["Prospecting"]}
    assert second.get(2, "006B") == {"stage": "Qualification"}
    assert second.get(0, "006B") is None
    with pytest.raises(StateRestoreError, match=r"partition 1 .* not held"):
        second.get(1, "006C")

    second.put(2, "006B", {"stage": "Proposal"})
    second.release([2])  # given to another process: its state and staged values go
    assert second.owned == {0}
    assert list(second.staged()) == []
    with pytest.raises(StateRestoreError, match="not held"):
        second.get(2, "006B")


def test_a_state_topic_with_fewer_partitions_than_its_input_is_refused(
    stack: Settings, topic: str
) -> None:
    state(stack, topic, partitions=2).ensure_topic()
    with pytest.raises(StateRestoreError, match="has 2 partitions, its input 6"):
        state(stack, topic, partitions=6).ensure_topic()
