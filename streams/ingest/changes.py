"""Salesforce streaming messages into per-record facts: the pure half of ingestion.

A CometD message carries one CDC event (which may name several records) or one
Platform Event. :func:`split_message` turns it into :class:`IngestedFact` values,
one per record id, each keeping the transaction key and sequence number, so a
Kafka record is keyed by the record it describes and per-record order follows
commit order. Our own writes, echoed back by CDC, are flagged (principle 5), and
every fact has a delivery key that identifies a redelivery of the same event.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CHANGE_EVENT_CHANNEL = re.compile(r"^/data/(?P<entity>\w+?)ChangeEvent$")
PLATFORM_EVENT_CHANNEL = re.compile(r"^/event/(?P<name>\w+__e)$")
GAP_CHANGE_TYPES = frozenset({"GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE"})
OVERFLOW_CHANGE_TYPE = "GAP_OVERFLOW"


class MalformedStreamingMessage(ValueError):
    """A streaming message lacks what Salesforce always sends; the reason says what."""


@dataclass(frozen=True)
class EchoPolicy:
    """How our own writes are recognised when CDC echoes them back."""

    client_id: str
    integration_user_id: str | None = None

    def is_echo(self, header: Mapping[str, Any]) -> bool:
        """True when ``changeOrigin`` names our client or ``commitUser`` is our integration user."""
        origin = str(header.get("changeOrigin") or "")
        if re.search(rf"(^|;)client={re.escape(self.client_id)}($|;)", origin):
            return True
        user = header.get("commitUser")
        return self.integration_user_id is not None and user == self.integration_user_id


@dataclass(frozen=True)
class IngestedFact:
    """One record's share of one streaming event, ready to be appended to Kafka."""

    channel: str
    replay_id: int | str
    kind: str  # "change" or "platform_event"
    entity: str  # sObject name (Lead) or event name (New_Lead__e)
    record_id: str | None
    change_type: str | None
    echo: bool
    header: Mapping[str, Any] = field(default_factory=dict)
    fields: Mapping[str, Any] = field(default_factory=dict)
    event_uuid: str | None = None

    @property
    def source_identity(self) -> str:
        """Identity of the Salesforce event this fact comes from, stable across redeliveries.

        Platform Events carry an ``EventUuid``; a change event is identified by its
        entity, transaction key and sequence number; the channel and replay id are
        the last resort.
        """
        if self.event_uuid:
            return self.event_uuid
        transaction_key = self.header.get("transactionKey")
        sequence_number = self.header.get("sequenceNumber")
        if transaction_key and sequence_number is not None:
            return f"{self.entity}:{transaction_key}:{sequence_number}"
        return f"{self.channel}#{self.replay_id}"

    @property
    def delivery_key(self) -> str:
        """Identity of this delivery: the same event redelivered has the same key."""
        return f"{self.source_identity}#{self.record_id or ''}"

    @property
    def is_gap(self) -> bool:
        """A gap event: no field values; the record must be read back over REST."""
        return self.change_type in GAP_CHANGE_TYPES

    @property
    def is_overflow(self) -> bool:
        """An overflow event: too many changes in one transaction; reconcile the entity."""
        return self.change_type == OVERFLOW_CHANGE_TYPE


def split_message(message: Mapping[str, Any], echo_policy: EchoPolicy) -> list[IngestedFact]:
    """Split one CometD message into per-record facts (one fact for a Platform Event).

    Whatever the message holds (wrong types, values nested too deeply to print), the
    only error raised is :class:`MalformedStreamingMessage`, with the reason.
    """
    if not isinstance(message, Mapping):
        raise MalformedStreamingMessage(f"a message is an object, not {type(message).__name__}")
    try:
        return _split(message, echo_policy)
    except MalformedStreamingMessage:
        raise
    except (ValueError, TypeError, KeyError, ArithmeticError, RecursionError) as exc:
        reason = str(exc)[:300] or type(exc).__name__
        raise MalformedStreamingMessage(f"{type(exc).__name__}: {reason}") from None


def label(value: object) -> str:
    """``value`` for an error message: strings and numbers as they are (cut short), else the type."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value) if not isinstance(value, int) or abs(value) < 10**40 else "<huge int>"
        return text[:80]
    return f"<{type(value).__name__}>"


def _split(message: Mapping[str, Any], echo_policy: EchoPolicy) -> list[IngestedFact]:
    channel = message.get("channel")
    data = message.get("data")
    if not isinstance(channel, str) or not isinstance(data, Mapping):
        raise MalformedStreamingMessage("message has no channel or no data object")
    event = data.get("event")
    payload = data.get("payload")
    if not isinstance(event, Mapping) or "replayId" not in event:
        raise MalformedStreamingMessage(f"{label(channel)}: data.event.replayId is missing")
    if not isinstance(payload, Mapping):
        raise MalformedStreamingMessage(f"{label(channel)}: data.payload is not an object")
    replay_id = event["replayId"]
    if not isinstance(replay_id, int | str) or isinstance(replay_id, bool):
        raise MalformedStreamingMessage(
            f"{label(channel)}: replayId {label(replay_id)} is no replay id"
        )
    if PLATFORM_EVENT_CHANNEL.match(channel) or channel.startswith("/event/"):
        return [_platform_event(channel, replay_id, event, payload)]
    if not channel.startswith("/data/"):
        raise MalformedStreamingMessage(f"{label(channel)} is not a change event channel")
    return _change_event(channel, replay_id, payload, echo_policy)


def _change_event(
    channel: str, replay_id: int | str, payload: Mapping[str, Any], echo_policy: EchoPolicy
) -> list[IngestedFact]:
    header = payload.get("ChangeEventHeader")
    if not isinstance(header, Mapping):
        raise MalformedStreamingMessage(
            f"{label(channel)}@{label(replay_id)}: ChangeEventHeader is missing"
        )
    for required in ("entityName", "changeType", "recordIds"):
        if required not in header:
            raise MalformedStreamingMessage(
                f"{label(channel)}@{label(replay_id)}: header has no {required}"
            )
    record_ids = header["recordIds"]
    if not isinstance(record_ids, list) or not record_ids:
        raise MalformedStreamingMessage(
            f"{label(channel)}@{label(replay_id)}: recordIds is not a non-empty list"
        )
    values = {name: value for name, value in payload.items() if name != "ChangeEventHeader"}
    echo = echo_policy.is_echo(header)
    return [
        IngestedFact(
            channel=channel,
            replay_id=replay_id,
            kind="change",
            entity=str(header["entityName"]),
            record_id=str(record_id),
            change_type=str(header["changeType"]),
            echo=echo,
            header=dict(header),
            fields=values,
        )
        for record_id in record_ids
    ]


def _platform_event(
    channel: str, replay_id: int | str, event: Mapping[str, Any], payload: Mapping[str, Any]
) -> IngestedFact:
    name = channel.removeprefix("/event/")
    event_uuid = event.get("EventUuid") or payload.get("EventUuid")
    record_id = payload.get("Lead_Id__c") or payload.get("RecordId__c")
    return IngestedFact(
        channel=channel,
        replay_id=replay_id,
        kind="platform_event",
        entity=name,
        record_id=str(record_id) if record_id else None,
        change_type=None,
        echo=False,
        fields=dict(payload),
        event_uuid=str(event_uuid) if event_uuid else None,
    )


def topic_for(fact: IngestedFact) -> str:
    """The ingest topic of a fact: ``sf.cdc.<Object>`` or ``sf.events.<Name>``."""
    if fact.kind == "change":
        return f"sf.cdc.{fact.entity}"
    return f"sf.events.{fact.entity}"
