"""Sealing and opening the personal values of whole events, with a cache of subject keys.

:class:`Privacy` is what the pipeline's processes hold: ``seal`` before an event is
appended (ingest, the agents' output), ``unseal`` after it is read by a process that
needs the values (the lead worker, the sinks). Keys come from the key store in one
query per batch and are cached for ``cache_seconds``; an erasure therefore reaches a
running process within that time, and values sealed meanwhile are sealed under a key
that no longer exists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import TypeVar, cast

from sqlalchemy.exc import InterfaceError, OperationalError

from schema_registry.events import (
    Event,
    LeadScored,
    NotificationChannel,
    NotificationRequested,
    PlatformEventPublished,
    RecordChanged,
    SalesforceWriteRequested,
)
from schema_registry.events.envelope import FieldValue
from sfe.privacy.cipher import ERASED, SealError, SubjectKey, is_sealed, parse
from sfe.privacy.cipher import PREFIX as SEALED_PREFIX
from sfe.privacy.keystore import KeyStore, KeyStoreUnavailable, email_digest, index_key
from sfe.privacy.policy import (
    EMAIL_FIELDS,
    LEAD_ENRICHMENT_PERSONAL,
    NOTIFICATION_PERSONAL,
    Policy,
    is_about_person,
)

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)
T = TypeVar("T")

_FIELD_MAPS = (RecordChanged, PlatformEventPublished, SalesforceWriteRequested)


class Privacy:
    """Seals and opens personal values of events under their subjects' keys."""

    def __init__(
        self,
        store: KeyStore,
        *,
        index_key: bytes | None = None,
        policy: Policy | None = None,
        cache_seconds: float = 60.0,
        cache_size: int = 200_000,
        clock: Callable[[], float] = time.monotonic,
        retry_seconds: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Seal and open with the keys of ``store``.

        A store that is down (a database restart) is retried for ``retry_seconds`` before
        the error is raised.
        """
        self.store = store
        self.retry_seconds = retry_seconds
        self._sleep = sleep
        self.policy = policy or Policy.with_extras()
        self.cache_seconds = cache_seconds
        self.cache_size = cache_size
        self._index_key = index_key
        self._clock = clock
        self._cache: dict[str, tuple[SubjectKey | None, float]] = {}
        self._indexed: set[tuple[bytes, str]] = set()

    def __repr__(self) -> str:
        return f"Privacy({self.store!r})"

    # -- keys -----------------------------------------------------------------------------

    def keys(self, subjects: Collection[str], *, create: bool) -> dict[str, SubjectKey | None]:
        """Each subject's key (None: erased, or unknown when not ``create``), cached."""
        now = self._clock()
        found: dict[str, SubjectKey | None] = {}
        missing: list[str] = []
        for subject in set(subjects):
            cached = self._cache.get(subject)
            if cached is not None and cached[1] > now:
                found[subject] = cached[0]
            else:
                missing.append(subject)
        if missing:
            raw = self._retrying(lambda: self.store.keys(missing, create=create))
            if len(self._cache) + len(missing) > self.cache_size:
                self._cache.clear()
            expires = now + self.cache_seconds
            for subject in missing:
                key = raw.get(subject)
                derived = None if key is None else SubjectKey.derive(subject, key)
                found[subject] = derived
                if subject in raw:  # an unknown subject is not remembered: it may appear
                    self._cache[subject] = (derived, expires)
        return found

    def _retrying(self, call: Callable[[], T]) -> T:
        """``call``, again with backoff while the store is unreachable, up to the retry time."""
        deadline = self._clock() + self.retry_seconds
        wait = 0.5
        while True:
            try:
                return call()
            except (OperationalError, InterfaceError, KeyStoreUnavailable) as exc:
                if self._clock() + wait > deadline:
                    raise
                log.warning(
                    "the key store is unreachable; retrying",
                    extra={"error": type(exc).__name__, "wait_s": wait},
                )
                self._sleep(wait)
                wait = min(wait * 2, 8.0)

    def forget(self, subjects: Collection[str] = ()) -> None:
        """Drop cached keys (all of them when ``subjects`` is empty)."""
        if not subjects:
            self._cache.clear()
        for subject in subjects:
            self._cache.pop(subject, None)

    def email_digest(self, address: str) -> bytes:
        """The digest an e-mail address is indexed under (the index key read on first use)."""
        if self._index_key is None:
            self._index_key = index_key(self.store)
        return email_digest(self._index_key, address)

    # -- events ---------------------------------------------------------------------------

    def seal(self, events: Sequence[E]) -> list[E]:
        """The events with their personal values sealed (erased subjects: :data:`ERASED`)."""
        plans = [(event, self._sealing_plan(event)) for event in events]
        subjects = {plan[0] for _, plan in plans if plan is not None}
        if not subjects:
            return list(events)
        keys = self.keys(subjects, create=True)
        emails: list[tuple[bytes, str]] = []
        sealed: list[E] = []
        for event, plan in plans:
            if plan is None:
                sealed.append(event)
                continue
            subject, _names = plan
            sealed.append(self._seal_event(event, plan, keys.get(subject), emails))
        fresh = [entry for entry in emails if entry not in self._indexed]
        if fresh:
            self._retrying(lambda: self.store.index_emails(fresh))
            self._indexed.update(fresh)
            if len(self._indexed) > self.cache_size:
                self._indexed.clear()
        return sealed

    def unseal(self, events: Sequence[E], only: Collection[str] | None = None) -> list[E]:
        """The events with sealed values opened; values of erased subjects read as erased.

        In a ``fields`` map an erased value reads as None (absent); where text is
        required (a notification's recipient) it reads as :data:`ERASED`. With ``only``,
        just those fields of ``fields`` maps are opened and their other sealed values
        read as None: a reader that needs a few fields pays for those.
        """
        subjects: set[str] = set()
        marked = False
        for event in events:
            for value in _personal_candidates(event):
                if isinstance(value, str) and is_sealed(value):
                    subjects.add(parse(value)[0])
                elif value == ERASED:
                    marked = True
        if not subjects and not marked:
            return list(events)
        keys = self.keys(subjects, create=False) if subjects else {}
        wanted = None if only is None else frozenset(only)
        return [self._unseal_event(event, keys, wanted) for event in events]

    def open_values(self, values: Sequence[tuple[str, FieldValue]]) -> list[FieldValue]:
        """Each (field name, value) opened, keys read in one query; erased values: None.

        Values that are not sealed are returned as they are.
        """
        subjects = {
            parse(value)[0] for _, value in values if isinstance(value, str) and is_sealed(value)
        }
        keys = self.keys(subjects, create=False) if subjects else {}
        opened: list[FieldValue] = []
        for name, value in values:
            if isinstance(value, str) and is_sealed(value):
                opened.append(_open(keys.get(parse(value)[0]), name, value))
            else:
                opened.append(None if value == ERASED else value)
        return opened

    # -- internals ------------------------------------------------------------------------

    def _sealing_plan(self, event: Event) -> tuple[str, frozenset[str]] | None:
        if isinstance(event, _FIELD_MAPS):
            return self.policy.personal_fields(event)
        if is_about_person(event):
            return event.subject, frozenset()
        return None

    def _seal_event(
        self,
        event: E,
        plan: tuple[str, frozenset[str]],
        key: SubjectKey | None,
        emails: list[tuple[bytes, str]],
    ) -> E:
        subject, names = plan

        def seal(name: str, value: str) -> str:
            if is_sealed(value) or value == ERASED:
                return value
            return ERASED if key is None else key.seal(name, value)

        if isinstance(event, _FIELD_MAPS):
            fields = dict(event.fields)
            for name in names & fields.keys():
                value = fields[name]
                if isinstance(value, str):
                    if name in EMAIL_FIELDS and key is not None and not is_sealed(value):
                        emails.append((self.email_digest(value), subject))
                    fields[name] = seal(name, value)
            return cast(E, replace(event, fields=fields))
        if isinstance(event, LeadScored):
            enrichment = {
                name: seal(name, value) if name in LEAD_ENRICHMENT_PERSONAL else value
                for name, value in event.enrichment.items()
            }
            return cast(E, replace(event, enrichment=enrichment))
        if isinstance(event, NotificationRequested):
            return cast(
                E,
                replace(
                    event,
                    recipient=seal("recipient", event.recipient)
                    if event.channel is NotificationChannel.EMAIL
                    else event.recipient,
                    title=seal("title", event.title),
                    body=seal("body", event.body),
                ),
            )
        return event

    def _unseal_event(
        self,
        event: E,
        keys: Mapping[str, SubjectKey | None],
        only: frozenset[str] | None = None,
    ) -> E:
        def key_of(value: str) -> SubjectKey | None:
            return keys.get(parse(value)[0])

        if isinstance(event, _FIELD_MAPS):
            fields: dict[str, FieldValue] = dict(event.fields)
            changed = False
            for name, value in fields.items():
                if isinstance(value, str) and value.startswith(SEALED_PREFIX):
                    wanted = only is None or name in only
                    fields[name] = _open_parsed(keys, name, value) if wanted else None
                    changed = True
                elif value == ERASED:
                    fields[name] = None
                    changed = True
            return cast(E, replace(event, fields=fields)) if changed else event
        if isinstance(event, LeadScored):
            enrichment = {
                name: _open_text(key_of(value), name, value) if is_sealed(value) else value
                for name, value in event.enrichment.items()
            }
            return cast(E, replace(event, enrichment=enrichment))
        if isinstance(event, NotificationRequested):

            def opened(name: str, value: str) -> str:
                return _open_text(key_of(value), name, value) if is_sealed(value) else value

            return cast(
                E,
                replace(
                    event,
                    recipient=opened("recipient", event.recipient),
                    title=opened("title", event.title),
                    body=opened("body", event.body),
                ),
            )
        return event


def _personal_candidates(event: Event) -> Sequence[object]:
    """The values of ``event`` that may be sealed or erased."""
    if isinstance(event, _FIELD_MAPS):
        return list(event.fields.values())
    if isinstance(event, LeadScored):
        return list(event.enrichment.values())
    if isinstance(event, NotificationRequested):
        return [getattr(event, name) for name in NOTIFICATION_PERSONAL]
    return ()


def _open_parsed(keys: Mapping[str, SubjectKey | None], name: str, token: str) -> FieldValue:
    """``token`` opened with its subject's key from ``keys`` (None: erased or unreadable)."""
    try:
        subject, body = parse(token)
        key = keys.get(subject)
        return None if key is None else key.open_body(name, body)
    except SealError as exc:
        log.warning("a sealed value does not open", extra={"field": name, "error": str(exc)})
        return None


def _open(key: SubjectKey | None, name: str, token: str) -> FieldValue:
    if key is None:
        return None
    try:
        return key.open(name, token)
    except SealError as exc:
        log.warning("a sealed value does not open", extra={"field": name, "error": str(exc)})
        return None


def _open_text(key: SubjectKey | None, name: str, token: str) -> str:
    opened = _open(key, name, token)
    return ERASED if opened is None else str(opened)
