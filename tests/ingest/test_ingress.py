"""The HTTP ingress against the real broker: Outbound Messages, the signed webhook, hostile input."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from schema_registry.codec import Codec
from schema_registry.events import EventDeadLettered, RecordChanged
from sfe.settings import Settings
from streams.ingest.appender import TransactionalAppender
from streams.ingest.changes import EchoPolicy
from streams.ingest.ingestor import Ingestor, IngestSettings
from streams.ingest.ingress import ACK, MAX_BODY_BYTES, SIGNATURE_HEADER, Ingress, sign
from tests.kafka_helpers import consume_records

pytestmark = pytest.mark.integration

ORG = "00D5g000000ABCDEAA"
SECRET = b"ingress-test-secret"

OUTBOUND = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{org}</OrganizationId>
   <ActionId>04k5g000000AAAAAA0</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/62.0/00D5g000000ABCD</EnterpriseUrl>
   <PartnerUrl>https://example.my.salesforce.com/services/Soap/u/62.0/00D5g000000ABCD</PartnerUrl>
   <Notification>
    <Id>{notification}</Id>
    <sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>0065g00000XYZ12AAA</sf:Id>
     <sf:StageName>Closed Won</sf:StageName>
     <sf:Amount>125000.0</sf:Amount>
     <sf:NextStep xsi:nil="true"/>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"""

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<lolz>&lol3;</lolz>"""


@pytest.fixture
async def ingress(stack: Settings, prefix: str) -> AsyncIterator[tuple[TestClient, str]]:
    appender = TransactionalAppender(
        stack.kafka_bootstrap,
        f"tx-{prefix}",
        prefix + "sfe.ingest.checkpoints",
        Codec(topic_prefix=prefix),
    )
    ingestor = Ingestor(
        appender,
        Codec(topic_prefix=prefix),
        EchoPolicy("sfe-pipeline"),
        None,
        IngestSettings(topic_prefix=prefix),
    )
    ingestor.start()
    client = TestClient(TestServer(Ingress(ingestor, ORG, SECRET).app()))
    await client.start_server()
    yield client, prefix
    await client.close()


def read(
    stack: Settings, prefix: str, topic: str, expected: int, timeout: float = 10
) -> list[object]:
    codec = Codec(topic_prefix=prefix)
    return [
        codec.decode(prefix + topic, v, h)
        for _, v, h in consume_records(stack, prefix + topic, expected, timeout=timeout)
    ]


async def test_outbound_message_is_acknowledged_after_commit_and_retries_are_no_ops(
    stack: Settings, ingress: tuple[TestClient, str]
) -> None:
    client, prefix = ingress
    body = OUTBOUND.format(org=ORG, notification="04l5g000000NOTE1AA")
    for _ in range(2):  # Salesforce retries until it sees the Ack
        response = await client.post(f"/outbound-messages?token={SECRET.decode()}", data=body)
        assert response.status == 200
        assert await response.text() == ACK
    events = read(stack, prefix, "sf.cdc.Opportunity", 2, timeout=5)
    assert len(events) == 1
    (event,) = events
    assert isinstance(event, RecordChanged)
    assert event.subject == "0065g00000XYZ12AAA"
    assert event.fields["StageName"] == "Closed Won" and event.fields["NextStep"] is None


async def test_outbound_message_authentication(
    stack: Settings, ingress: tuple[TestClient, str]
) -> None:
    client, _ = ingress
    body = OUTBOUND.format(org=ORG, notification="04l5g000000NOTE2AA")
    assert (await client.post("/outbound-messages?token=wrong", data=body)).status == 401
    assert (await client.post("/outbound-messages", data=body)).status == 401
    other_org = OUTBOUND.format(org="00D000000000001AAA", notification="04l5g000000NOTE3AA")
    assert (
        await client.post(f"/outbound-messages?token={SECRET.decode()}", data=other_org)
    ).status == 403


async def test_xml_bomb_is_dead_lettered_not_expanded(
    stack: Settings, ingress: tuple[TestClient, str]
) -> None:
    client, prefix = ingress
    response = await client.post(f"/outbound-messages?token={SECRET.decode()}", data=BILLION_LAUGHS)
    assert response.status == 200
    (dead,) = read(stack, prefix, "dlq.ingest", 1)
    assert isinstance(dead, EventDeadLettered)
    assert "DTD" in dead.reason or "Entities" in dead.reason
    assert dead.original_value == BILLION_LAUGHS.encode()


async def test_signed_webhook(stack: Settings, ingress: tuple[TestClient, str]) -> None:
    client, prefix = ingress
    payload = {
        "organizationId": ORG,
        "deliveryId": "d-1",
        "changes": [
            {
                "entity": "Lead",
                "recordId": "00Q5g00000ABCDEAAA",
                "changeType": "UPDATE",
                "commitTimestamp": "2026-11-25T10:00:00Z",
                "fields": {"Status": "Working", "Name": {"LastName": "Byron"}},
            },
        ],
    }
    body = json.dumps(payload).encode()
    headers = {SIGNATURE_HEADER: sign(SECRET, body), "Content-Type": "application/json"}
    first = await client.post("/webhook", data=body, headers=headers)
    again = await client.post("/webhook", data=body, headers=headers)
    assert first.status == again.status == 202
    assert (await again.json())["duplicate"] is True
    bad = await client.post("/webhook", data=body, headers={SIGNATURE_HEADER: "sha256=00"})
    assert bad.status == 401
    (event,) = read(stack, prefix, "sf.cdc.Lead", 2, timeout=5)
    assert isinstance(event, RecordChanged)
    assert event.fields == {"Status": "Working", "Name.LastName": "Byron"}


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({"organizationId": ORG, "deliveryId": "x", "changes": []}).encode(),
        json.dumps(
            {
                "organizationId": ORG,
                "deliveryId": "x",
                "changes": [{"entity": "Lead'; DROP", "recordId": "00Q5g00000ABCDEAAA"}],
            }
        ).encode(),
        json.dumps(
            {
                "organizationId": ORG,
                "deliveryId": "x",
                "changes": [{"entity": "Lead", "recordId": "' OR Id != null"}],
            }
        ).encode(),
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
async def test_hostile_webhook_bodies_are_dead_lettered_with_a_reason(
    stack: Settings, ingress: tuple[TestClient, str], body: bytes
) -> None:
    client, prefix = ingress
    response = await client.post(
        "/webhook", data=body, headers={SIGNATURE_HEADER: sign(SECRET, body)}
    )
    assert response.status == 422
    (dead,) = read(stack, prefix, "dlq.ingest", 1)
    assert isinstance(dead, EventDeadLettered) and dead.reason


async def test_oversized_body_is_refused(ingress: tuple[TestClient, str]) -> None:
    client, _ = ingress
    body = b"x" * (MAX_BODY_BYTES + 1)
    response = await client.post(
        "/webhook", data=body, headers={SIGNATURE_HEADER: sign(SECRET, body)}
    )
    assert response.status == 413
