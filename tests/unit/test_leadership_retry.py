"""The metadata retry waits out leadership changes and nothing else."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.topic_admin import while_leaders_settle


class Flaky:
    """Fails with ``code`` for the first ``failures`` calls, then answers."""

    def __init__(self, code: int, failures: int) -> None:
        self.code = code
        self.failures = failures
        self.calls = 0

    def __call__(self) -> tuple[int, int]:
        self.calls += 1
        if self.calls <= self.failures:
            raise KafkaException(KafkaError(self.code))
        return (0, 42)


@pytest.mark.parametrize(
    "code", [KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE]
)
def test_a_partition_whose_leader_moves_is_asked_again(code: int) -> None:
    call = Flaky(code, failures=2)
    assert while_leaders_settle(call, timeout_s=5) == (0, 42)
    assert call.calls == 3


def test_other_errors_are_raised_at_once() -> None:
    call = Flaky(KafkaError.TOPIC_AUTHORIZATION_FAILED, failures=1)
    with pytest.raises(KafkaException):
        while_leaders_settle(call, timeout_s=5)
    assert call.calls == 1


def test_a_leader_that_never_settles_fails_after_the_timeout() -> None:
    call = Flaky(KafkaError.NOT_LEADER_FOR_PARTITION, failures=10_000)
    with pytest.raises(KafkaException):
        while_leaders_settle(call, timeout_s=0.5)
    assert 1 < call.calls < 10
