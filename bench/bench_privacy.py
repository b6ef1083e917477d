"""What sealing personal values costs: Lead changes sealed at ingest, opened by the worker.

``--leads`` CDC creates of distinct generated Leads (those of ``bench_leads.py``, with a
name, e-mail, phones, street and free text added: eight personal fields with the title) go through ``Privacy.seal`` in batches of
``--batch`` as the ingest seals them (new subjects: keys made, wrapped and inserted,
e-mails indexed), then through ``Privacy.unseal`` as the lead worker opens them, once
with an empty key cache (one key query per batch) and once cached, all of them and
just those the lead flow reads. Keys go to the local
stack's database under a throw-away namespace, deleted afterwards. Prints wall and CPU
time per lead for each phase (CPU: ``time.process_time``, less sensitive to a shared
machine).

Usage: ``.venv/bin/python bench/bench_privacy.py [--leads 20000] [--batch 2000]``
(the local stack running: ``make stack-up``).
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace

import bench_leads
from sqlalchemy import create_engine, delete

from agents import lead_qualification as flow
from schema_registry.events import RecordChanged
from sfe.privacy.keystore import (
    MasterKeyWrapper,
    PostgresKeyStore,
    subject_emails,
    subject_keys,
)
from sfe.privacy.service import Privacy
from sfe.privacy.setup import master_key
from sfe.settings import load_settings


def with_person(change: RecordChanged, number: int) -> RecordChanged:
    """A generated lead's CDC create with a person's details added (eight personal fields)."""
    person = {
        "Name.FirstName": f"First{number}",
        "Name.LastName": f"Last{number}",
        "Email": f"first{number}.last@example.org",
        "Phone": f"+1 555 {number:07d}",
        "MobilePhone": f"+1 556 {number:07d}",
        "Street": f"{number} Main Street",
        "Description": "Met at the conference; prefers e-mail.",
    }
    return replace(change, fields={**change.fields, **person})


def timed(label: str, count: int, work: Callable[[], object]) -> None:
    """Run ``work`` once and print wall and CPU time per lead."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"| {label} | {count} | {wall:.2f} | {1e6 * wall / count:.0f} | {1e6 * cpu / count:.0f} |"
    )


def batches(events: Sequence[RecordChanged], size: int) -> list[Sequence[RecordChanged]]:
    """``events`` cut in batches of ``size``."""
    return [events[i : i + size] for i in range(0, len(events), size)]


def main() -> None:
    """Measure and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    settings = load_settings()
    key = master_key(settings)
    engine = create_engine(settings.sqlalchemy_url())
    namespace = f"bench.{uuid.uuid4().hex[:8]}."
    store = PostgresKeyStore(engine, MasterKeyWrapper(key), namespace)
    events = [with_person(c, n) for n, c in enumerate(bench_leads.lead_changes(args.leads))]
    sealed: list[RecordChanged] = []
    print("| phase | leads | wall s | wall µs/lead | CPU µs/lead |")
    print("|---|---|---|---|---|")
    try:
        ingest = Privacy(store)
        timed(
            "seal (ingest; new subjects)",
            args.leads,
            lambda: [sealed.extend(ingest.seal(b)) for b in batches(events, args.batch)],
        )
        worker = Privacy(store)
        opened: list[RecordChanged] = []
        timed(
            "unseal (worker; keys not cached)",
            args.leads,
            lambda: [opened.extend(worker.unseal(b)) for b in batches(sealed, args.batch)],
        )
        assert opened == events
        timed(
            "unseal (worker; keys cached)",
            args.leads,
            lambda: [worker.unseal(b) for b in batches(sealed, args.batch)],
        )
        timed(
            "unseal the flow's fields (worker; keys cached)",
            args.leads,
            lambda: [
                worker.unseal(b, only=flow.PERSONAL_INPUTS) for b in batches(sealed, args.batch)
            ],
        )
        timed(
            "seal again (keys cached)",
            args.leads,
            lambda: [ingest.seal(b) for b in batches(events, args.batch)],
        )
    finally:
        with engine.begin() as connection:
            connection.execute(delete(subject_keys).where(subject_keys.c.namespace == namespace))
            connection.execute(
                delete(subject_emails).where(subject_emails.c.namespace == namespace)
            )
        engine.dispose()


if __name__ == "__main__":
    main()
