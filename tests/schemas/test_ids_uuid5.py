"""derived_event_id is exactly uuid5 over the JSON array of its parts (fast path)."""

from __future__ import annotations

import json
import uuid

from hypothesis import given
from hypothesis import strategies as st

from schema_registry.ids import NAMESPACE, derived_event_id

part = st.text(min_size=1, max_size=40)


@given(part, part, part)
def test_same_id_as_uuid5_of_the_json_array(cause: str, agent: str, purpose: str) -> None:
    expected = str(uuid.uuid5(NAMESPACE, json.dumps([cause, agent, purpose])))
    assert derived_event_id(cause, agent, purpose) == expected


def test_a_known_id_never_changes() -> None:
    # Ids are stored in Kafka and PostgreSQL: this value must stay the same forever.
    assert derived_event_id("cause", "agent", "purpose") == str(
        uuid.uuid5(
            uuid.UUID("6b0f3c4e-8a57-4f0e-9d3a-2f1c5e7b9a10"), '["cause", "agent", "purpose"]'
        )
    )
