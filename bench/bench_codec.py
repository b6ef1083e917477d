"""Events per second through ``Codec.encode`` and ``Codec.decode`` (self-describing format).

Three events, each encoded ``--events`` times in a row and then decoded as many times,
on one core, with no services: a CDC ``RecordChanged`` of a Lead with 15 fields (the
ingest path), a ``LeadScored`` decision with features, factors and enrichment, and a
``SalesforceWriteRequested`` command of five fields. Each measurement is repeated
``--repeat`` times after a warm-up; the table gives the median and the best run
(the machine may be shared, so the best run is the closest to its real speed), and
the CPU time per call of the best run (``time.process_time``, less sensitive to other
processes than wall time). ``--reference`` measures the codec's reference path (no
compiled encoders or decoders), as it was before they existed.

Usage: ``.venv/bin/python bench/bench_codec.py [--events 20000] [--repeat 5] [--reference]``.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from schema_registry.codec import Codec, EncodedValue
from schema_registry.events import (
    ChangeEventHeader,
    ChangeType,
    Event,
    Factor,
    LeadRoute,
    LeadScored,
    ModelRef,
    RecordChanged,
    SalesforceOperation,
    SalesforceWriteRequested,
)

_NOW = datetime.now(UTC)
#: Now, to the millisecond: what the ``timestamp-millis`` fields keep.
NOW = _NOW.replace(microsecond=_NOW.microsecond // 1000 * 1000)


def record_changed() -> RecordChanged:
    """A Lead created with 15 fields, as the CDC ingestor emits it."""
    return RecordChanged(
        id="x",
        source="s",
        subject="00Q000000000001AAA",
        time=NOW,
        header=ChangeEventHeader(
            entity_name="Lead",
            record_ids=("00Q000000000001AAA",),
            change_type=ChangeType.CREATE,
            change_origin="",
            transaction_key="t",
            sequence_number=1,
            commit_timestamp=NOW,
            commit_number=1,
            commit_user="005",
            changed_fields=("A", "B"),
        ),
        replay_id="1",
        event_uuid="u",
        fields={f"F{i}": i for i in range(15)},
    )


def lead_scored() -> LeadScored:
    """A lead-qualification decision with its model inputs and explanation."""
    return LeadScored(
        id="d-1",
        source="agents.lead_qualification",
        subject="00Q000000000001AAA",
        time=NOW,
        causation_id="x",
        correlation_id="x",
        model=ModelRef(name="lead", version="3"),
        features={
            "AnnualRevenue": 2_500_000.0,
            "NumberOfEmployees": 120,
            "Industry": "Technology",
            "LeadSource": "Web",
            "Rating": "Hot",
            "HasOptedOutOfEmail": False,
            "Title": "CTO",
            "Country": "DE",
        },
        factors=(
            Factor(name="AnnualRevenue", contribution=0.31),
            Factor(name="Title", contribution=0.22),
            Factor(name="Industry", contribution=0.12),
            Factor(name="LeadSource", contribution=-0.05),
            Factor(name="Country", contribution=-0.02),
        ),
        enrichment={"clearbit": '{"employees": 120}', "news": '{"funding": "B"}'},
        einstein_score=72.0,
        model_score=88.5,
        enhanced_score=81.9,
        route=LeadRoute.SENIOR_AE,
        reasoning="Senior buyer at a funded technology company.",
    )


def salesforce_write() -> SalesforceWriteRequested:
    """The command writing a scored lead's AI fields back to Salesforce."""
    return SalesforceWriteRequested(
        id="c-1",
        source="agents.lead_qualification",
        subject="00Q000000000001AAA",
        time=NOW,
        causation_id="d-1",
        correlation_id="x",
        operation=SalesforceOperation.UPDATE,
        sobject="Lead",
        record_id="00Q000000000001AAA",
        fields={
            "AI_Enhanced_Score__c": 81.9,
            "AI_Reasoning__c": "Senior buyer at a funded technology company.",
            "AI_Route__c": "SENIOR_AE",
            "Company_Intelligence__c": '{"employees": 120}',
            "Estimated_Budget__c": 50_000.0,
        },
    )


#: (label, topic, event) of every measured event.
CASES: tuple[tuple[str, str, Callable[[], Event]], ...] = (
    ("RecordChanged (Lead, 15 fields)", "sf.cdc.Lead", record_changed),
    ("LeadScored", "decisions.leads", lead_scored),
    ("SalesforceWriteRequested", "commands.salesforce", salesforce_write),
)


def rate(events: int, action: Callable[[], object]) -> tuple[float, float]:
    """Calls of ``action`` per second over ``events`` calls in a row, and CPU µs per call."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(events):
        action()
    cpu_used, elapsed = time.process_time() - cpu, time.perf_counter() - start
    return events / elapsed, cpu_used / events * 1e6


def measure(codec: Codec, topic: str, event: Event, events: int, repeat: int) -> dict[str, float]:
    """Median and best encode and decode rates of ``event`` over ``repeat`` runs."""
    encoded: EncodedValue = codec.encode(topic, event)
    if codec.decode(topic, encoded.value, encoded.headers) != event:
        raise AssertionError(f"{type(event).__name__} does not survive encode and decode")

    def encode() -> object:
        return codec.encode(topic, event)

    def decode() -> object:
        return codec.decode(topic, encoded.value, encoded.headers)

    rate(max(events // 10, 1), encode)  # warm-up
    rate(max(events // 10, 1), decode)
    encodes = [rate(events, encode) for _ in range(repeat)]
    decodes = [rate(events, decode) for _ in range(repeat)]
    return {
        "encode_median": statistics.median(wall for wall, _cpu in encodes),
        "encode_best": max(wall for wall, _cpu in encodes),
        "encode_cpu": min(cpu for _wall, cpu in encodes),
        "decode_median": statistics.median(wall for wall, _cpu in decodes),
        "decode_best": max(wall for wall, _cpu in decodes),
        "decode_cpu": min(cpu for _wall, cpu in decodes),
        "bytes": float(len(encoded.value)),
    }


def main() -> None:
    """Measure every case and print the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="calls per measured run")
    parser.add_argument("--repeat", type=int, default=5, help="measured runs per figure")
    parser.add_argument(
        "--reference", action="store_true", help="the reference path, without compiled code"
    )
    args = parser.parse_args()

    codec = Codec(compiled=not args.reference)
    load_before = os.getloadavg()[0]
    rows = [
        (label, measure(codec, topic, make(), args.events, args.repeat))
        for label, topic, make in CASES
    ]
    load_after = os.getloadavg()[0]

    path = "reference path" if args.reference else "compiled path"
    print(
        f"{args.events:,} events per run, {args.repeat} runs, self-describing format, {path}; "
        f"load average {load_before:.1f} before, {load_after:.1f} after\n"
    )
    print(
        "| event | bytes | encode/s (median) | encode/s (best) | encode CPU µs "
        "| decode/s (median) | decode/s (best) | decode CPU µs |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, figures in rows:
        print(
            f"| {label} | {figures['bytes']:.0f} "
            f"| {figures['encode_median']:,.0f} | {figures['encode_best']:,.0f} "
            f"| {figures['encode_cpu']:.1f} "
            f"| {figures['decode_median']:,.0f} | {figures['decode_best']:,.0f} "
            f"| {figures['decode_cpu']:.1f} |"
        )


if __name__ == "__main__":
    main()
