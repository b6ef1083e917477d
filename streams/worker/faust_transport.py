"""A Faust transport whose worker consumer reads ``read_committed``.

Faust's aiokafka driver reads ``read_uncommitted`` unless the app runs with
``processing_guarantee="exactly_once"``, whose open duplicate and crash bugs
(ARCHITECTURE.md) rule it out. Our ingest topics are written transactionally, so an
uncommitted reader could act on a change whose transaction was aborted. This
transport keeps Faust's consumer as it is and only sets its isolation level before
the consumer starts (aiokafka reads ``_isolation_level`` when it creates its fetcher).
``tests/workers`` proves an aborted record never reaches a Faust agent.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as driver

READ_COMMITTED = "read_committed"


class ReadCommittedConsumerThread(driver.AIOKafkaConsumerThread):
    """Faust's consumer thread with a ``read_committed`` worker consumer."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = READ_COMMITTED
        return consumer


class ReadCommittedConsumer(driver.Consumer):
    """Faust's aiokafka consumer using :class:`ReadCommittedConsumerThread`."""

    def _new_consumer_thread(self) -> ReadCommittedConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class ReadCommittedTransport(driver.Transport):
    """Faust's aiokafka transport with the ``read_committed`` consumer."""

    Consumer = ReadCommittedConsumer
