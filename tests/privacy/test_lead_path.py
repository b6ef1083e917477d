"""The lead flow decides the same on sealed facts as on plain ones, and leaks nothing.

The worker's handler runs twice on the same leads: once on plain facts, once on the
facts as the ingest seals them, with a key store in memory. Opened, the second run's
emissions (decisions, predictions, Salesforce commands, notifications, workflow runs)
equal the first's, so the flow opens every personal field it reads; sealed, they hold
none of the leads' personal values.
"""

from __future__ import annotations

import asyncio

from agents import lead_qualification as flow
from agents.enrichment import LocalEnrichment
from ml.inference import load_model
from ml.registry import Registry
from schema_registry.codec import Codec
from schema_registry.events import ChangeType
from sfe.privacy.service import Privacy
from streams.worker.batch import Consumed
from streams.worker.leads import LeadQualificationHandler
from tests.unit.test_privacy import MemoryKeys
from tests.workers.support import change


def leads() -> list[Consumed]:
    events = []
    for index, (einstein, title) in enumerate(
        [(95.0, "Chief Technology Officer"), (62.0, "VP Sales"), (15.0, "Analyst")]
    ):
        fields = {
            "Name.FirstName": f"Zenobia{index}",
            "Name.LastName": "Quarrington",
            "Email": f"zenobia{index}@quarrington.example",
            "Phone": "+44 20 7946 0958",
            "Title": title,
            "Country": "United Kingdom",
            "Description": "Asked for a call back on Tuesday",
            "Decision_Makers__c": "Zenobia Quarrington\nHead of IT",
            "Company": f"Quarrington Holdings {index}",
            "Industry": "Technology",
            "NumberOfEmployees": 1200,
            "AnnualRevenue": 80_000_000.0,
            "LeadSource": "Web",
            "Tech_Stack__c": "AWS;Kafka",
            "Einstein_Lead_Score__c": einstein,
        }
        events.append(change("Lead", f"00Q8d00000000{index:02d}AAA", ChangeType.CREATE, fields))
    return [Consumed("sf.cdc.Lead", 0, offset, event) for offset, event in enumerate(events)]


def test_sealed_facts_are_decided_as_plain_ones(
    registry: Registry, trained: dict[str, object]
) -> None:
    model = load_model(registry, "lead")
    config = flow.LeadConfig(einstein_weight=1.0)
    privacy = Privacy(MemoryKeys(), index_key=b"k" * 32)
    plain_batch = leads()
    sealed_batch = [
        Consumed(item.topic, item.partition, item.offset, event)
        for item, event in zip(
            plain_batch, privacy.seal([item.event for item in plain_batch]), strict=True
        )
    ]
    plain = asyncio.run(LeadQualificationHandler(model, LocalEnrichment(), config)(plain_batch))
    sealed = asyncio.run(
        LeadQualificationHandler(model, LocalEnrichment(), config, privacy)(sealed_batch)
    )
    assert len(sealed) == len(plain) > 12
    assert [(e.topic, e.key) for e in sealed] == [(e.topic, e.key) for e in plain]
    assert privacy.unseal([e.event for e in sealed]) == [e.event for e in plain]
    assert any("Zenobia0" in repr(e.event) for e in plain)  # the check can see a leak
    codec = Codec()
    for emission in sealed:
        encoded = codec.encode(emission.topic, emission.event).value.lower()
        assert b"zenobia" not in encoded and b"quarrington.example" not in encoded
