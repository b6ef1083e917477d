"""Deterministic event ids (ARCHITECTURE.md, principle 3).

A derived event's id is a UUIDv5 of its cause: the id of the event it reacts to, the
agent that derived it, and the purpose (``"score"``, ``"command:AI_Enhanced_Score__c"``,
``"provision:autohelix/workspace"``). Replaying or redelivering the cause therefore
yields the same id, and every idempotent consumer recognises the repeat. The parts
are joined as a JSON array, so no choice of characters can make two causes collide.
"""

from __future__ import annotations

import hashlib
import uuid
from json.encoder import encode_basestring_ascii

#: Namespace of every id this project derives (a fixed, random UUID; never change it).
NAMESPACE = uuid.UUID("6b0f3c4e-8a57-4f0e-9d3a-2f1c5e7b9a10")
_NAMESPACE_BYTES = NAMESPACE.bytes


def derived_event_id(cause_id: str, agent: str, purpose: str) -> str:
    """The id of the event ``agent`` derives from event ``cause_id`` for ``purpose``."""
    for name, part in (("cause_id", cause_id), ("agent", agent), ("purpose", purpose)):
        if not part:
            raise ValueError(f"{name} must not be empty")
    # Exactly ``json.dumps([cause_id, agent, purpose])`` (ASCII-escaped strings joined by
    # ", "), hashed as ``uuid.uuid5`` does, without their per-call overhead.
    name = f"[{encode_basestring_ascii(cause_id)}, {encode_basestring_ascii(agent)}, {encode_basestring_ascii(purpose)}]"
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    hexed = digest.hex()
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


def change_event_id(event_uuid: str, record_id: str) -> str:
    """The id of one record's share of a Salesforce change event (by its ``EventUuid``).

    An event whose ``recordIds`` names several records becomes one Kafka record per
    id; each gets its own id, and a redelivery of the event gets the same ones.
    """
    return derived_event_id(event_uuid, "salesforce.cdc", f"record:{record_id}")
