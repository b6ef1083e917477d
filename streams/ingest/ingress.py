"""HTTP ingress: Salesforce Outbound Messages (SOAP) and a signed JSON webhook, into the same topics.

``POST /outbound-messages?token=<secret>`` accepts Salesforce's ``notifications``
envelope and answers with the ``<Ack>true</Ack>`` Salesforce expects, only after the
events are committed to Kafka (no ack, Salesforce retries: nothing is lost). The
notification ids make a retried delivery a no-op.

``POST /webhook`` accepts a JSON body signed with HMAC-SHA256 of the raw body under
the shared secret, in ``X-Sfe-Signature: sha256=<hex>``::

    {"organizationId": "00D...", "deliveryId": "unique id of this delivery",
     "changes": [{"entity": "Lead", "recordId": "00Q...", "changeType": "UPDATE",
                  "commitTimestamp": "2026-11-25T10:00:00Z", "fields": {"Status": "Working"}}]}

Both check the organization id. The secret rotates without downtime: the ingress
accepts the current secret (``SFE_INGRESS_SECRET`` or ``SFE_INGRESS_SECRET_FILE``) and,
while one is set, the previous one (``SFE_INGRESS_SECRET_PREVIOUS[_FILE]``); mounted
files are re-read when they change, so no restart is needed. XML is parsed with
defusedxml (entity expansion and DTDs refused). A request that fails authentication
gets 401/403 and is not kept; a well-authenticated delivery that cannot be read goes
to ``dlq.ingest`` with the reason and is acknowledged, so the sender does not retry it
forever.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeXml
from aiohttp import web
from defusedxml import DefusedXmlException

from schema_registry.errors import SchemaError
from schema_registry.events import ChangeEventHeader, ChangeType, RecordChanged
from schema_registry.ids import derived_event_id
from sfe.secrets import SecretSet, SecretUnavailable
from streams.ingest.changes import MalformedStreamingMessage
from streams.ingest.events import SOURCE, flatten_fields
from streams.ingest.ingestor import Ingestor

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_048_576
SIGNATURE_HEADER = "X-Sfe-Signature"
OUTBOUND_CHANNEL = "/ingress/outbound-messages"
WEBHOOK_CHANNEL = "/ingress/webhook"
_OUTBOUND_NS = "{http://soap.sforce.com/2005/09/outbound}"
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
_RECORD_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_ENTITY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")

ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    '<soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    "<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"
)


class UnreadableDelivery(ValueError):
    """An authenticated delivery whose content is not what Salesforce (or our webhook) sends."""


#: What reading or encoding an authenticated delivery may raise; the delivery is dead-lettered.
#: (``UnicodeDecodeError`` and ``OversizedEvent`` are ``ValueError`` s; ``RecursionError``:
#: JSON nested too deeply for the parser; ``SchemaError``: an event that does not fit its topic.)
_UNREADABLE = (
    UnreadableDelivery,
    MalformedStreamingMessage,
    SchemaError,
    ValueError,
    TypeError,
    RecursionError,
)


def same_org(expected: str, given: str) -> bool:
    """Organization ids match on their 15-character case-sensitive form."""
    return bool(given) and hmac.compare_digest(expected[:15].encode(), given[:15].encode())


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Sfe-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def parse_outbound_message(body: bytes) -> tuple[str, list[tuple[str, RecordChanged]]]:
    """Organization id and (notification id, event) pairs of an Outbound Message."""
    try:
        root = SafeXml.fromstring(body, forbid_dtd=True)
    except (DefusedXmlException, SafeXml.ParseError) as exc:
        raise UnreadableDelivery(f"not acceptable XML: {type(exc).__name__}: {exc}") from None
    notifications = root.find(f".//{_OUTBOUND_NS}notifications")
    if notifications is None:
        raise UnreadableDelivery("no outbound <notifications> element")
    organization_id = _text(notifications, "OrganizationId")
    events: list[tuple[str, RecordChanged]] = []
    for notification in notifications.findall(f"{_OUTBOUND_NS}Notification"):
        notification_id = _text(notification, "Id")
        record = notification.find(f"{_OUTBOUND_NS}sObject")
        if not notification_id or record is None:
            raise UnreadableDelivery("a Notification lacks its Id or sObject")
        entity = (record.get(_XSI_TYPE) or "").split(":")[-1]
        fields = {
            child.tag.split("}")[-1]: None if child.get(_XSI_NIL) == "true" else (child.text or "")
            for child in record
        }
        events.append(
            (
                notification_id,
                _change(
                    entity,
                    str(fields.get("Id") or ""),
                    "UPDATE",
                    fields,
                    notification_id,
                    "outbound-message",
                ),
            )
        )
    if not events:
        raise UnreadableDelivery("the message holds no Notification")
    return organization_id, events


def load_json(body: bytes) -> Any:
    """A webhook body as JSON, strictly; :class:`UnreadableDelivery` (or ``ValueError``) if not.

    ``NaN`` and ``Infinity`` are not JSON, a number too large for a double (``1e999``)
    would become one, and an object naming a key twice is ambiguous (parsers differ on
    which value wins): all three are refused rather than passed on.
    """
    return json.loads(
        body, parse_constant=_not_json, parse_float=_finite, object_pairs_hook=_unique_keys
    )


def _not_json(constant: str) -> Any:
    raise UnreadableDelivery(f"{constant} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise UnreadableDelivery(f"the number {text[:40]} is out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        counts = Counter(name for name, _ in pairs)
        twice = sorted(name for name, count in counts.items() if count > 1)
        raise UnreadableDelivery(f"an object names keys twice: {twice[:5]!r}")
    return found


def parse_webhook(payload: Mapping[str, Any]) -> tuple[str, str, list[RecordChanged]]:
    """Organization id, delivery id and events of a webhook body."""
    organization_id, delivery_id = payload.get("organizationId"), payload.get("deliveryId")
    changes = payload.get("changes")
    if not isinstance(organization_id, str) or not isinstance(delivery_id, str) or not delivery_id:
        raise UnreadableDelivery("organizationId and deliveryId must be strings")
    if not isinstance(changes, list) or not changes:
        raise UnreadableDelivery("changes must be a non-empty list")
    events = []
    for index, change in enumerate(changes):
        if not isinstance(change, Mapping) or not isinstance(change.get("fields", {}), Mapping):
            raise UnreadableDelivery(f"changes[{index}] is not an object with a fields object")
        timestamp = change.get("commitTimestamp")
        moment = _timestamp(timestamp) if isinstance(timestamp, str) else datetime.now(UTC)
        events.append(
            _change(
                str(change.get("entity", "")),
                str(change.get("recordId", "")),
                str(change.get("changeType", "UPDATE")),
                dict(change.get("fields", {})),
                f"{delivery_id}#{index}",
                "webhook",
                moment,
            )
        )
    return organization_id, delivery_id, events


class Ingress:
    """The aiohttp application of the ingress, bound to an ingestor and its secrets."""

    def __init__(self, ingestor: Ingestor, organization_id: str, secret: bytes | SecretSet) -> None:
        """Accept deliveries for ``organization_id`` authenticated with ``secret``.

        ``secret`` is one fixed value or a :class:`SecretSet` (current and previous,
        read again as they change).
        """
        if isinstance(secret, SecretSet):
            self._secrets: Callable[[], tuple[bytes, ...]] = secret.values
        else:
            fixed = (secret,)
            self._secrets = lambda: fixed
        if not any(self._secrets()):
            raise ValueError("the ingress needs a shared secret (SFE_INGRESS_SECRET)")
        self.ingestor = ingestor
        self.organization_id = organization_id

    def _accepted(self) -> tuple[bytes, ...]:
        try:
            return tuple(value for value in self._secrets() if value)
        except SecretUnavailable as exc:  # names the variable, never the value
            log.error("ingress secret unavailable: %s", exc)
            return ()

    def _authentic(self, check: Callable[[bytes], bool], channel: str) -> bool:
        # Every candidate is checked (constant-time each), so timing does not reveal which.
        results = [check(secret) for secret in self._accepted()]
        if any(results[1:]) and not results[0]:
            log.info(
                "delivery authenticated with the previous ingress secret",
                extra={"channel": channel},
            )
        return any(results)

    def app(self) -> web.Application:
        """The routes, with a body size limit."""
        application = web.Application(client_max_size=MAX_BODY_BYTES)
        application.router.add_post("/outbound-messages", self.outbound_message)
        application.router.add_post("/webhook", self.webhook)
        return application

    async def outbound_message(self, request: web.Request) -> web.Response:
        """Receive one Salesforce Outbound Message; acknowledge once committed."""
        token = request.query.get("token", "").encode()
        if not self._authentic(lambda secret: hmac.compare_digest(token, secret), OUTBOUND_CHANNEL):
            return web.Response(status=401, text="missing or wrong token")
        body = await request.read()
        try:
            organization_id, items = parse_outbound_message(body)
            if same_org(self.organization_id, organization_id):
                self.ingestor.encode_delivery([event for _, event in items])
        except _UNREADABLE as exc:
            await self.ingestor.dead_letter_delivery(
                OUTBOUND_CHANNEL, body, str(exc), type(exc).__name__
            )
            return web.Response(text=ACK, content_type="text/xml")
        if not same_org(self.organization_id, organization_id):
            return web.Response(status=403, text="unknown organization")
        for notification_id, event in items:
            await self.ingestor.append_delivery(OUTBOUND_CHANNEL, notification_id, [event])
        return web.Response(text=ACK, content_type="text/xml")

    async def webhook(self, request: web.Request) -> web.Response:
        """Receive one signed JSON delivery; 202 once committed."""
        body = await request.read()
        signature = request.headers.get(SIGNATURE_HEADER, "")
        given = signature.encode()
        if not self._authentic(
            lambda secret: hmac.compare_digest(given, sign(secret, body).encode()), WEBHOOK_CHANNEL
        ):
            return web.json_response({"error": f"missing or wrong {SIGNATURE_HEADER}"}, status=401)
        try:
            payload = load_json(body)
            if not isinstance(payload, Mapping):
                raise UnreadableDelivery("the body is not a JSON object")
            organization_id, delivery_id, events = parse_webhook(payload)
            if same_org(self.organization_id, organization_id):
                self.ingestor.encode_delivery(events)
        except _UNREADABLE as exc:
            await self.ingestor.dead_letter_delivery(
                WEBHOOK_CHANNEL, body, str(exc)[:500], type(exc).__name__
            )
            return web.json_response(
                {"error": "unreadable delivery kept for inspection"}, status=422
            )
        if not same_org(self.organization_id, organization_id):
            return web.json_response({"error": "unknown organization"}, status=403)
        appended = await self.ingestor.append_delivery(WEBHOOK_CHANNEL, delivery_id, events)
        return web.json_response({"accepted": len(events), "duplicate": not appended}, status=202)


def _change(
    entity: str,
    record_id: str,
    change_type: str,
    fields: Mapping[str, Any],
    delivery_id: str,
    origin: str,
    moment: datetime | None = None,
) -> RecordChanged:
    if not _ENTITY.match(entity):
        raise UnreadableDelivery(f"not an sObject name: {entity[:80]!r}")
    if not _RECORD_ID.match(record_id):
        raise UnreadableDelivery(f"not a Salesforce record id: {record_id[:40]!r}")
    if change_type not in ChangeType.__members__:
        raise UnreadableDelivery(f"unknown changeType {change_type[:40]!r}")
    flat = flatten_fields(fields)
    when = moment or datetime.now(UTC)
    return RecordChanged(
        id=derived_event_id(delivery_id, f"sfe.ingress.{origin}", f"record:{record_id}"),
        source=SOURCE,
        subject=record_id,
        time=when,
        header=ChangeEventHeader(
            entity_name=entity,
            record_ids=(record_id,),
            change_type=ChangeType(change_type),
            change_origin=origin,
            transaction_key=delivery_id,
            sequence_number=0,
            commit_timestamp=when,
            commit_number=0,
            commit_user="",
            changed_fields=tuple(sorted(flat)),
        ),
        replay_id=None,
        event_uuid=None,
        fields=flat,
    )


def _text(element: Element, name: str) -> str:
    child = element.find(f"{_OUTBOUND_NS}{name}")
    return (child.text or "").strip() if child is not None else ""


def _timestamp(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UnreadableDelivery(f"commitTimestamp is not ISO 8601: {value[:40]!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
