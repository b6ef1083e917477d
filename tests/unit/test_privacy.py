"""Sealing personal values: the cipher, the policy, and whole events (keys held in memory)."""

from __future__ import annotations

import base64
import os
from collections.abc import Collection, Iterable
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from schema_registry.codec import Codec
from schema_registry.events import (
    ChangeType,
    LeadRoute,
    LeadScored,
    ModelRef,
    NotificationChannel,
    NotificationRequested,
    PlatformEventPublished,
    SalesforceOperation,
    SalesforceWriteRequested,
)
from sfe.privacy.cipher import ERASED, SealError, SubjectKey, is_sealed, parse
from sfe.privacy.keystore import email_digest
from sfe.privacy.policy import Policy, is_person_id, record_subject
from sfe.privacy.service import Privacy
from tests.workers.support import change

LEAD = "00Q8d0000000042AAA"
OTHER_LEAD = "00Q8d0000000043AAA"
CONTACT = "0038d0000000007AAA"
TASK = "00T8d0000000009AAA"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class MemoryKeys:
    """A key store in a dict (the Postgres one is tested against PostgreSQL)."""

    def __init__(self) -> None:
        self.keys_by_subject: dict[str, bytes | None] = {}
        self.emails: set[tuple[bytes, str]] = set()
        self.lookups = 0

    def keys(self, subjects: Collection[str], *, create: bool) -> dict[str, bytes | None]:
        self.lookups += 1
        if create:
            for subject in subjects:
                self.keys_by_subject.setdefault(subject, os.urandom(32))
        return {s: self.keys_by_subject[s] for s in subjects if s in self.keys_by_subject}

    def index_emails(self, entries: Iterable[tuple[bytes, str]]) -> None:
        self.emails.update(entries)

    def subjects_with_email(self, digest: bytes) -> list[str]:
        return sorted(subject for d, subject in self.emails if d == digest)

    def erase(self, subjects: Collection[str], erasure_id: str) -> list[str]:
        erased = [s for s in subjects if self.keys_by_subject.get(s) is not None]
        for subject in subjects:
            self.keys_by_subject[subject] = None
        self.emails = {(d, s) for d, s in self.emails if s not in subjects}
        return erased


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> MemoryKeys:
    return MemoryKeys()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def privacy(store: MemoryKeys, clock: Clock) -> Privacy:
    return Privacy(store, index_key=b"i" * 32, cache_seconds=30.0, clock=clock)


def lead_change(**fields: object) -> object:
    return change("Lead", LEAD, ChangeType.CREATE, dict(fields))


# -- the cipher ------------------------------------------------------------------------------


def test_a_sealed_value_opens_to_its_plaintext_and_hides_it() -> None:
    key = SubjectKey.derive(LEAD, os.urandom(32))
    token = key.seal("Email", "ada@example.org")
    assert is_sealed(token)
    assert "ada" not in token and "example" not in token
    assert parse(token)[0] == LEAD
    assert key.open("Email", token) == "ada@example.org"


def test_sealing_is_deterministic_per_subject_field_and_value() -> None:
    raw = os.urandom(32)
    key = SubjectKey.derive(LEAD, raw)
    assert key.seal("Email", "a@b.c") == SubjectKey.derive(LEAD, raw).seal("Email", "a@b.c")
    assert key.seal("Email", "a@b.c") != key.seal("Email", "a@b.d")
    assert key.seal("Email", "a@b.c") != key.seal("Phone", "a@b.c")
    assert key.seal("Email", "a@b.c") != SubjectKey.derive(OTHER_LEAD, raw).seal("Email", "a@b.c")


def test_a_value_does_not_open_in_another_field_under_another_key_or_altered() -> None:
    key = SubjectKey.derive(LEAD, os.urandom(32))
    token = key.seal("FirstName", "Ada")
    with pytest.raises(SealError, match="does not open"):
        key.open("LastName", token)
    with pytest.raises(SealError, match="does not open"):
        SubjectKey.derive(LEAD, os.urandom(32)).open("FirstName", token)
    with pytest.raises(SealError, match="not .*" + OTHER_LEAD):
        SubjectKey.derive(OTHER_LEAD, os.urandom(32)).open("FirstName", token)
    body = parse(token)[1]
    for position in range(len(base64.urlsafe_b64decode(body))):  # any byte: nonce, text, tag
        raw = bytearray(base64.urlsafe_b64decode(body))
        raw[position] ^= 0x01
        altered = token.replace(body, base64.urlsafe_b64encode(bytes(raw)).decode())
        with pytest.raises(SealError):
            key.open("FirstName", altered)
    with pytest.raises(SealError, match="malformed"):
        key.open("FirstName", "sfe:pii:v1:nobody")
    with pytest.raises(ValueError, match="32 bytes"):
        SubjectKey.derive(LEAD, b"short")


# -- the policy ------------------------------------------------------------------------------


def test_the_subject_of_a_task_is_the_person_it_names() -> None:
    assert record_subject("Task", TASK, {"WhoId": LEAD}) == LEAD
    assert record_subject("Case", TASK, {"ContactId": CONTACT}) == CONTACT
    assert record_subject("Task", TASK, {"WhoId": "001000000000001AAA"}) == TASK  # an account
    assert record_subject("Task", TASK, {}) == TASK
    assert record_subject("Lead", LEAD, {"WhoId": CONTACT}) == LEAD
    assert is_person_id(LEAD) and is_person_id(CONTACT) and not is_person_id(TASK)


def test_extra_fields_extend_the_list_and_bad_entries_are_refused() -> None:
    policy = Policy.with_extras("Lead.Private_Notes__c, Account.Owner_Mobile__c")
    assert "Private_Notes__c" in policy.fields["Lead"] and "Email" in policy.fields["Lead"]
    assert policy.fields["Account"] == frozenset({"Owner_Mobile__c"})
    with pytest.raises(ValueError, match=r"Object\.Field"):
        Policy.with_extras("Private_Notes__c")


# -- whole events ----------------------------------------------------------------------------


def test_a_lead_change_is_sealed_field_by_field_and_opens_back(
    privacy: Privacy, store: MemoryKeys
) -> None:
    event = lead_change(
        FirstName="Ada", LastName="Lovelace", Email="Ada@Example.org", Company="Analytical",
        NumberOfEmployees=40, Description=None,
    )  # fmt: skip
    (sealed,) = privacy.seal([event])
    encoded = Codec().encode("sf.cdc.Lead", sealed).value
    assert b"Ada" not in encoded and b"Lovelace" not in encoded and b"Example" not in encoded
    assert sealed.fields["Company"] == "Analytical"  # a company is not a person
    assert sealed.fields["NumberOfEmployees"] == 40 and sealed.fields["Description"] is None
    assert all(is_sealed(sealed.fields[name]) for name in ("FirstName", "LastName", "Email"))
    (opened,) = privacy.unseal([sealed])
    assert opened == event
    assert store.subjects_with_email(email_digest(b"i" * 32, " ada@example.ORG")) == [LEAD]


def test_an_erased_subject_reads_as_erased_and_is_never_sealed_readably_again(
    privacy: Privacy, store: MemoryKeys, clock: Clock
) -> None:
    (sealed,) = privacy.seal([lead_change(FirstName="Ada", Company="Analytical")])
    (other,) = privacy.seal([change("Lead", OTHER_LEAD, ChangeType.CREATE, {"FirstName": "Grace"})])
    store.erase([LEAD], "erasure-1")
    (cached,) = privacy.unseal([sealed])
    assert cached.fields["FirstName"] == "Ada"  # within the cache time
    clock.now += 31
    (opened,) = privacy.unseal([sealed])
    assert opened.fields == {"FirstName": None, "Company": "Analytical"}
    assert privacy.unseal([other])[0].fields["FirstName"] == "Grace"
    (later,) = privacy.seal([lead_change(FirstName="Ada")])
    assert later.fields["FirstName"] == ERASED
    assert privacy.unseal([later])[0].fields["FirstName"] is None


def test_one_key_lookup_per_batch_and_none_while_cached(
    privacy: Privacy, store: MemoryKeys
) -> None:
    events = [
        change("Lead", f"00Q8d00000000{n:02d}AAA", ChangeType.CREATE, {"LastName": f"L{n}"})
        for n in range(10, 60)
    ]
    sealed = privacy.seal(events)
    assert store.lookups == 1
    assert privacy.unseal(sealed) == events
    assert store.lookups == 1


def test_tasks_platform_events_and_commands_are_sealed_under_their_person(
    privacy: Privacy,
) -> None:
    task = change(
        "Task", TASK, ChangeType.CREATE, {"WhoId": LEAD, "Subject": "Call Ada", "Status": "Open"}
    )
    published = PlatformEventPublished(
        id="e1", source="t", subject="e1", time=NOW, event_name="New_Lead__e",
        replay_id="1", event_uuid="u", created_date=NOW, created_by_id="005000000000001AAA",
        fields={"Lead_Id__c": LEAD, "Email__c": "ada@example.org", "Company__c": "Analytical"},
    )  # fmt: skip
    command = SalesforceWriteRequested(
        id="c1", source="t", subject=LEAD, time=NOW, operation=SalesforceOperation.UPDATE,
        sobject="Lead", record_id=LEAD,
        fields={"Decision_Makers__c": "Ada Lovelace (CTO)", "AI_Enhanced_Score__c": 91.0},
    )  # fmt: skip
    sealed_task, sealed_event, sealed_command = privacy.seal([task, published, command])
    assert parse(str(sealed_task.fields["Subject"]))[0] == LEAD
    assert sealed_task.fields["Status"] == "Open" and sealed_task.fields["WhoId"] == LEAD
    assert parse(str(sealed_event.fields["Email__c"]))[0] == LEAD
    assert sealed_event.fields["Company__c"] == "Analytical"
    assert is_sealed(sealed_command.fields["Decision_Makers__c"])
    assert sealed_command.fields["AI_Enhanced_Score__c"] == 91.0
    assert privacy.unseal([sealed_task, sealed_event, sealed_command]) == [
        task,
        published,
        command,
    ]


def test_decisions_and_notifications_about_a_person_are_sealed(privacy: Privacy) -> None:
    decision = LeadScored(
        id="d1", source="t", subject=LEAD, time=NOW,
        model=ModelRef(name="lead", version="1"), features={}, factors=(),
        enrichment={"decision_makers": "Ada Lovelace (CTO)", "tech_stack": "Python"},
        einstein_score=90.0, model_score=80.0, enhanced_score=84.0,
        route=LeadRoute.SENIOR_AE, reasoning="high fit",
    )  # fmt: skip
    mail = NotificationRequested(
        id="n1", source="t", subject=LEAD, time=NOW, channel=NotificationChannel.EMAIL,
        recipient="ada@example.org", template="intro", title="Hello", body="Hello Ada",
    )  # fmt: skip
    account_note = NotificationRequested(
        id="n2", source="t", subject="0018d0000000001AAA", time=NOW,
        channel=NotificationChannel.SLACK, recipient="#cs", template="t", title="x", body="y",
    )  # fmt: skip
    slack = NotificationRequested(
        id="n3", source="t", subject=LEAD, time=NOW, channel=NotificationChannel.SLACK,
        recipient="#leads", template="t", title="Ada Lovelace", body="Call Ada",
    )  # fmt: skip
    sealed_decision, sealed_mail, same_note, sealed_slack = privacy.seal(
        [decision, mail, account_note, slack]
    )
    assert sealed_slack.recipient == "#leads" and is_sealed(sealed_slack.body)
    assert is_sealed(sealed_decision.enrichment["decision_makers"])
    assert sealed_decision.enrichment["tech_stack"] == "Python"
    assert all(is_sealed(v) for v in (sealed_mail.recipient, sealed_mail.title, sealed_mail.body))
    assert same_note == account_note
    assert privacy.unseal([sealed_decision, sealed_mail]) == [decision, mail]
    privacy.store.erase([LEAD], "e")
    privacy.forget()
    erased_decision, erased_mail = privacy.unseal([sealed_decision, sealed_mail])
    assert erased_decision.enrichment["decision_makers"] == ERASED
    assert (erased_mail.recipient, erased_mail.body) == (ERASED, ERASED)


def test_open_values_opens_in_one_lookup_and_leaves_plain_values(privacy: Privacy) -> None:
    (sealed,) = privacy.seal([lead_change(FirstName="Ada", LastName="Lovelace")])
    pairs = [("FirstName", sealed.fields["FirstName"]), ("Score", 3.5), ("X", ERASED)]
    assert privacy.open_values(pairs) == ["Ada", 3.5, None]


def test_reconcile_compares_opened_values_and_skips_erased_ones(
    privacy: Privacy, store: MemoryKeys
) -> None:
    from projections.reconcile import RecordExpectation, open_expectations

    command = SalesforceWriteRequested(
        id="c1", source="t", subject=LEAD, time=NOW, operation=SalesforceOperation.UPDATE,
        sobject="Lead", record_id=LEAD, fields={"Decision_Makers__c": "Ada (CTO)"},
    )  # fmt: skip
    other = replace(command, subject=OTHER_LEAD, record_id=OTHER_LEAD)
    sealed, sealed_other = privacy.seal([command, other])
    kept = RecordExpectation(LEAD, dict(sealed.fields) | {"AI_Enhanced_Score__c": 80.0})
    erased = RecordExpectation(OTHER_LEAD, dict(sealed_other.fields))
    store.erase([OTHER_LEAD], "e")
    privacy.forget()
    open_expectations([kept, erased], privacy)
    assert kept.values == {"Decision_Makers__c": "Ada (CTO)", "AI_Enhanced_Score__c": 80.0}
    assert erased.values == {}


def test_delivery_errors_never_quote_the_personal_values() -> None:
    import threading

    from projections.notifications import ScrubbingTransport
    from projections.notify.transport import (
        PermanentDelivery,
        RetryPolicy,
        TransientDelivery,
        deliver,
    )

    mail = NotificationRequested(
        id="n1", source="t", subject=LEAD, time=NOW, channel=NotificationChannel.EMAIL,
        recipient="ada@example.org", template="intro", title="Hello Ada", body="Dear Ada",
    )  # fmt: skip

    class Refusing:
        channel = NotificationChannel.EMAIL
        calls = 0

        def send(self, command: NotificationRequested) -> None:
            self.calls += 1
            if self.calls == 1:
                raise TransientDelivery("SMTP_451", f"RCPT <{command.recipient}>: try later")
            raise PermanentDelivery("SMTP_550", f"RCPT <{command.recipient}>: no such user")

    scrubbing = ScrubbingTransport(Refusing(), [mail.recipient, mail.title, mail.body])
    with pytest.raises(PermanentDelivery) as refused:
        deliver(scrubbing, mail, RetryPolicy(backoff_base_s=0.01), threading.Event())
    assert refused.value.message == "RCPT <<personal data>>: no such user"
    assert "ada" not in str(refused.value)


def test_only_the_fields_asked_for_are_opened(privacy: Privacy) -> None:
    (sealed,) = privacy.seal([lead_change(FirstName="Ada", Phone="555", Company="Analytical")])
    (opened,) = privacy.unseal([sealed], only={"FirstName"})
    assert opened.fields == {"FirstName": "Ada", "Phone": None, "Company": "Analytical"}


def test_a_store_that_is_down_is_retried_then_given_up_on(store: MemoryKeys) -> None:
    from sqlalchemy.exc import OperationalError

    clock = Clock()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds

    class Restarting(MemoryKeys):
        failures = 3

        def keys(self, subjects: Collection[str], *, create: bool) -> dict[str, bytes | None]:
            if self.failures:
                self.failures -= 1
                raise OperationalError("SELECT", {}, Exception("the server closed the connection"))
            return super().keys(subjects, create=create)

    down = Restarting()
    privacy = Privacy(down, index_key=b"i" * 32, clock=clock, sleep=sleep, retry_seconds=60)
    (sealed,) = privacy.seal([lead_change(FirstName="Ada")])
    assert is_sealed(sealed.fields["FirstName"]) and waits == [0.5, 1.0, 2.0]
    gone = Restarting()
    gone.failures = 10**6
    impatient = Privacy(gone, index_key=b"i" * 32, clock=clock, sleep=sleep, retry_seconds=5)
    with pytest.raises(OperationalError):
        impatient.seal([lead_change(FirstName="Ada")])
