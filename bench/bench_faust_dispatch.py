"""How many records per second a Faust agent receives when it does nothing with them.

Appends ``--records`` 400-byte records to a fresh 6-partition topic, then runs a Faust
worker (this project's ``read_committed`` transport, memory store) whose only agent
reads them in batches (``stream.take(2000, within=0.2)``) and counts. Prints records
per second from the first batch to the last. This is the ceiling of any Faust agent on
this machine before it does any work; the lead path reads in batches with
confluent-kafka instead (docs/workflows.md).

Needs the local broker (``sfe stack up``). Usage:
``.venv/bin/python bench/bench_faust_dispatch.py [--records 200000]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from sfe.settings import load_settings


def main() -> None:
    """Append, consume through Faust, print the rate, delete the topic."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    settings = load_settings()
    topic = f"bench-faust-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 6, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 20})
    for index in range(args.records):
        while True:
            try:
                producer.produce(topic, key=str(index % 5000).encode(), value=b"x" * 400)
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(60)

    from faust.worker import Worker

    from streams.worker.app import PipelineApp

    app = PipelineApp(
        f"bench-faust-{uuid.uuid4().hex[:8]}",
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        datadir=tempfile.mkdtemp(prefix="bench-faust-"),
    )
    source = app.topic(topic, key_serializer="raw", value_serializer="raw")
    seen = {"records": 0, "first": 0.0}

    @app.agent(source)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for batch in stream.take(2000, within=0.2):
            if not seen["first"]:
                seen["first"] = time.perf_counter()
            seen["records"] += len(batch)
            if seen["records"] >= args.records:
                elapsed = time.perf_counter() - seen["first"]
                print(
                    f"{seen['records']:,} records in {elapsed:.1f} s: "
                    f"{seen['records'] / elapsed:,.0f} records/s through one Faust agent",
                    flush=True,
                )
                admin.delete_topics([topic])[topic].result(30)
                os._exit(0)

    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
