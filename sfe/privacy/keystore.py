"""Where subject keys live: the :class:`KeyStore` interface and its PostgreSQL implementation.

A key store hands out one 32-byte data key per data subject, creating it on first
use, and destroys it on erasure. :class:`PostgresKeyStore` keeps the keys in the
project's database, each wrapped (AES-256-GCM) by a :class:`KeyWrapper`: by default
:class:`MasterKeyWrapper`, under the master key of ``SFE_PRIVACY_MASTER_KEY``; another
wrapper (a KMS, Vault's transit engine) plugs in behind the same two methods. An
erased subject keeps a row without a key (a tombstone): asking for its key again
returns None instead of making a new one, so nothing of it is sealed readably again.

Every row names the wrapper that wrapped it. During a rotation of the master key (or a
move to another wrapper) the store also reads keys wrapped by the ``secondary``
wrappers, while new keys are wrapped by the current one; :meth:`PostgresKeyStore.rewrap`
then moves every key to the current wrapper, after which the old one can be retired.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Engine,
    Index,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    bindparam,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert

from projections.tables import metadata
from sfe.privacy.cipher import KEY_BYTES

SUBJECT_LENGTH = 64
NAMESPACE_LENGTH = 100

subject_keys = Table(
    "privacy_subject_keys",
    metadata,
    Column("namespace", String(NAMESPACE_LENGTH), primary_key=True),
    Column("subject", String(SUBJECT_LENGTH), primary_key=True),
    Column("wrapped_key", LargeBinary),
    Column("wrapped_by", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("erased_at", DateTime(timezone=True)),
    Column("erasure_id", String(64)),
    CheckConstraint(
        "(wrapped_key IS NULL) = (erased_at IS NOT NULL)",
        name="privacy_subject_keys_erased_means_no_key",
    ),
)

subject_emails = Table(
    "privacy_subject_emails",
    metadata,
    Column("namespace", String(NAMESPACE_LENGTH), nullable=False),
    Column("digest", LargeBinary, nullable=False),
    Column("subject", String(SUBJECT_LENGTH), nullable=False),
    PrimaryKeyConstraint("namespace", "digest", "subject", name="privacy_subject_emails_pkey"),
    Index("privacy_subject_emails_subject", "namespace", "subject"),
)


class KeyStoreError(RuntimeError):
    """A key cannot be read: wrapped by another master key, or its wrapping was altered."""


class KeyStoreUnavailable(KeyStoreError):
    """The service holding the wrapping key cannot be reached now (worth retrying)."""


class KeyWrapper(Protocol):
    """Encrypts subject keys for storage (a master key here, a KMS or Vault transit elsewhere).

    ``context`` binds a wrapped key to its namespace and subject: unwrapped under another
    context it is refused, so a wrapped key copied to another row opens nothing.
    """

    @property
    def name(self) -> str:
        """Which key wraps: stored with every wrapped key, checked when unwrapping."""
        ...

    def wrap_many(self, items: Sequence[tuple[str, bytes]]) -> list[bytes]:
        """Each (context, key) encrypted for storage, in one round trip where it costs one."""
        ...

    def unwrap_many(self, items: Sequence[tuple[str, bytes]]) -> list[bytes]:
        """The keys :meth:`wrap_many` returned each (context, wrapped) for."""
        ...


class MasterKeyWrapper:
    """AES-256-GCM under a 32-byte master key, the subject as associated data."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != KEY_BYTES:
            raise ValueError(f"the master key has {KEY_BYTES} bytes, not {len(master_key)}")
        self._aead = AESGCM(master_key)
        fingerprint = hashlib.sha256(b"sfe-master-key-id" + master_key).hexdigest()[:16]
        self._name = f"master:{fingerprint}"

    def __repr__(self) -> str:
        return f"MasterKeyWrapper({self._name})"

    @property
    def name(self) -> str:
        """``master:`` and a fingerprint of the master key (not the key)."""
        return self._name

    def wrap_many(self, items: Sequence[tuple[str, bytes]]) -> list[bytes]:
        """A random nonce followed by the encrypted key, the context as associated data."""
        wrapped = []
        for context, key in items:
            nonce = os.urandom(12)
            wrapped.append(nonce + self._aead.encrypt(nonce, key, _wrap_context(context)))
        return wrapped

    def unwrap_many(self, items: Sequence[tuple[str, bytes]]) -> list[bytes]:
        """The keys, or :class:`KeyStoreError` for one not wrapped here under its context."""
        keys = []
        for context, wrapped in items:
            try:
                keys.append(self._aead.decrypt(wrapped[:12], wrapped[12:], _wrap_context(context)))
            except InvalidTag:
                raise KeyStoreError(
                    f"the key of {context!r} does not open under {self._name}"
                ) from None
        return keys


class KeyStore(Protocol):
    """One data key per subject, made on first use and destroyed on erasure."""

    def keys(self, subjects: Collection[str], *, create: bool) -> dict[str, bytes | None]:
        """The key of each subject: None when erased; made now when absent and ``create``.

        Subjects absent and not created are left out of the answer.
        """
        ...

    def index_emails(self, entries: Iterable[tuple[bytes, str]]) -> None:
        """Remember that each (e-mail digest, subject) pair belongs together."""
        ...

    def subjects_with_email(self, digest: bytes) -> list[str]:
        """The subjects an e-mail digest was indexed for."""
        ...

    def erase(self, subjects: Collection[str], erasure_id: str) -> list[str]:
        """Destroy the subjects' keys and index entries; return those that still had a key."""
        ...


class PostgresKeyStore:
    """Subject keys in ``privacy_subject_keys``, wrapped by ``wrapper``.

    ``namespace`` (the topic prefix) separates environments sharing one database: the
    same record id in two of them has two keys, and erasing it in one leaves the other.
    """

    def __init__(
        self,
        engine: Engine,
        wrapper: KeyWrapper,
        namespace: str = "",
        secondary: Sequence[KeyWrapper] = (),
    ) -> None:
        """Keys wrapped by ``wrapper``; those wrapped by a ``secondary`` one are read too."""
        self.engine = engine
        self.wrapper = wrapper
        self.namespace = namespace
        self.readers: dict[str, KeyWrapper] = {w.name: w for w in (*secondary, wrapper)}

    def __repr__(self) -> str:
        return f"PostgresKeyStore(namespace={self.namespace!r}, {self.wrapper!r})"

    def keys(self, subjects: Collection[str], *, create: bool) -> dict[str, bytes | None]:
        """Read the subjects' keys in one query; make the missing ones in one more."""
        wanted = sorted(set(subjects))
        if not wanted:
            return {}
        found = self._read(wanted)
        missing = [subject for subject in wanted if subject not in found]
        if missing and create:
            fresh = {subject: os.urandom(KEY_BYTES) for subject in missing}
            wrapped = self.wrapper.wrap_many(
                [(self._context(subject), key) for subject, key in fresh.items()]
            )
            rows = [
                {
                    "namespace": self.namespace,
                    "subject": subject,
                    "wrapped_key": key,
                    "wrapped_by": self.wrapper.name,
                }
                for subject, key in zip(fresh, wrapped, strict=True)
            ]
            with self.engine.begin() as connection:
                inserted = set(
                    connection.execute(
                        insert(subject_keys)
                        .on_conflict_do_nothing()
                        .returning(subject_keys.c.subject),
                        rows,
                    ).scalars()
                )
            found.update({subject: fresh[subject] for subject in inserted})
            raced = [subject for subject in missing if subject not in inserted]
            if raced:  # another process made these first: theirs count
                found.update(self._read(raced))
        return found

    def index_emails(self, entries: Iterable[tuple[bytes, str]]) -> None:
        """Insert the pairs not yet indexed (subjects already erased are not indexed)."""
        rows = [
            {"namespace": self.namespace, "digest": digest, "subject": subject}
            for digest, subject in set(entries)
        ]
        if not rows:
            return
        with self.engine.begin() as connection:
            connection.execute(insert(subject_emails).on_conflict_do_nothing(), rows)

    def subjects_with_email(self, digest: bytes) -> list[str]:
        """Subjects indexed under ``digest``."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(subject_emails.c.subject)
                .where(subject_emails.c.namespace == self.namespace)
                .where(subject_emails.c.digest == digest)
                .order_by(subject_emails.c.subject)
            )
            return [row.subject for row in rows]

    def erase(
        self,
        subjects: Collection[str],
        erasure_id: str,
        within: Callable[[Connection, list[str]], None] | None = None,
    ) -> list[str]:
        """Tombstone every subject (known or not), drop its index entries, then vacuum.

        ``within`` runs in the same transaction with the subjects that still had a key
        (the audit entry of the erasure). The vacuum removes the dead row versions that
        still held the wrapped keys from the table's pages (backups and WAL archives
        taken before keep them: see docs/privacy.md).
        """
        wanted = sorted(set(subjects))
        if not wanted:
            return []
        now = datetime.now(UTC)
        with self.engine.begin() as connection:
            erased = [
                row.subject
                for row in connection.execute(
                    update(subject_keys)
                    .where(subject_keys.c.namespace == self.namespace)
                    .where(subject_keys.c.subject.in_(wanted))
                    .where(subject_keys.c.wrapped_key.is_not(None))
                    .values(wrapped_key=None, erased_at=now, erasure_id=erasure_id)
                    .returning(subject_keys.c.subject)
                )
            ]
            connection.execute(
                insert(subject_keys).on_conflict_do_nothing(),
                [
                    {
                        "namespace": self.namespace,
                        "subject": subject,
                        "wrapped_key": None,
                        "wrapped_by": self.wrapper.name,
                        "erased_at": now,
                        "erasure_id": erasure_id,
                    }
                    for subject in wanted
                ],
            )
            connection.execute(
                delete(subject_emails)
                .where(subject_emails.c.namespace == self.namespace)
                .where(subject_emails.c.subject.in_(wanted))
            )
            if within is not None:
                within(connection, sorted(erased))
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM privacy_subject_keys, privacy_subject_emails"))
        return sorted(erased)

    def _read(self, subjects: list[str]) -> dict[str, bytes | None]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(
                    subject_keys.c.subject, subject_keys.c.wrapped_key, subject_keys.c.wrapped_by
                )
                .where(subject_keys.c.namespace == self.namespace)
                .where(subject_keys.c.subject.in_(subjects))
            ).all()
        found: dict[str, bytes | None] = {}
        held = []
        for row in rows:
            if row.wrapped_key is None:
                found[row.subject] = None
                continue
            held.append((row.subject, row.wrapped_by, bytes(row.wrapped_key)))
        found.update(self._unwrap(held))
        return found

    def _unwrap(self, rows: Sequence[tuple[str, str, bytes]]) -> dict[str, bytes]:
        """The keys of (subject, wrapped_by, wrapped) rows, one call per wrapper."""
        by_wrapper: dict[str, list[tuple[str, bytes]]] = {}
        for subject, wrapped_by, wrapped in rows:
            if wrapped_by not in self.readers:
                raise KeyStoreError(
                    f"the key of {subject} is wrapped by {wrapped_by}, not by the configured "
                    f"{' or '.join(sorted(self.readers))}; during a master-key rotation set "
                    f"SFE_PRIVACY_MASTER_KEY_SECONDARY to the other master key"
                )
            by_wrapper.setdefault(wrapped_by, []).append((subject, wrapped))
        keys: dict[str, bytes] = {}
        for name, items in by_wrapper.items():
            opened = self.readers[name].unwrap_many(
                [(self._context(subject), wrapped) for subject, wrapped in items]
            )
            keys.update({subject: key for (subject, _), key in zip(items, opened, strict=True)})
        return keys

    def wrapped_by(self) -> dict[str, int]:
        """How many keys of the namespace each wrapper holds (erased subjects left out)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(subject_keys.c.wrapped_by, func.count())
                .where(subject_keys.c.namespace == self.namespace)
                .where(subject_keys.c.wrapped_key.is_not(None))
                .group_by(subject_keys.c.wrapped_by)
            ).all()
        return {name: int(count) for name, count in rows}

    def rewrap(self, batch_size: int = 500) -> Counter[str]:
        """Wrap every key held by another wrapper with the current one; count them by wrapper.

        Batches of ``batch_size`` rows, each in its own transaction with its rows locked
        (other processes keep reading and making keys meanwhile). The old wrapper must be
        among the ``secondary`` ones. A vacuum then drops the old wrapped bytes from the
        table's pages, so the retired master key opens nothing left in the database.
        """
        moved: Counter[str] = Counter()
        while True:
            with self.engine.begin() as connection:
                rows = connection.execute(
                    select(
                        subject_keys.c.subject,
                        subject_keys.c.wrapped_by,
                        subject_keys.c.wrapped_key,
                    )
                    .where(subject_keys.c.namespace == self.namespace)
                    .where(subject_keys.c.wrapped_key.is_not(None))
                    .where(subject_keys.c.wrapped_by != self.wrapper.name)
                    .order_by(subject_keys.c.subject)
                    .limit(batch_size)
                    .with_for_update(skip_locked=True)
                ).all()
                if not rows:
                    break
                keys = self._unwrap([(r.subject, r.wrapped_by, bytes(r.wrapped_key)) for r in rows])
                subjects = [row.subject for row in rows]
                wrapped = self.wrapper.wrap_many(
                    [(self._context(subject), keys[subject]) for subject in subjects]
                )
                connection.execute(
                    update(subject_keys)
                    .where(subject_keys.c.namespace == self.namespace)
                    .where(subject_keys.c.subject == bindparam("row_subject"))
                    .where(subject_keys.c.wrapped_by == bindparam("old_wrapper"))
                    .values(wrapped_key=bindparam("new_key"), wrapped_by=self.wrapper.name),
                    [
                        {"row_subject": r.subject, "old_wrapper": r.wrapped_by, "new_key": new}
                        for r, new in zip(rows, wrapped, strict=True)
                    ],
                )
                moved.update(row.wrapped_by for row in rows)
        if moved:
            with self.engine.connect().execution_options(
                isolation_level="AUTOCOMMIT"
            ) as connection:
                connection.execute(text("VACUUM privacy_subject_keys"))
        return moved

    def _context(self, subject: str) -> str:
        """What a wrapped key is bound to: namespace and subject."""
        return f"{self.namespace}\x00{subject}"


def email_digest(index_key: bytes, address: str) -> bytes:
    """The keyed digest an e-mail address is indexed under (case and spaces ignored)."""
    return hmac.new(index_key, address.strip().lower().encode(), hashlib.sha256).digest()


#: The key store entry holding the e-mail index key (no record id looks like it).
INDEX_SUBJECT = "sfe:email-index"


def index_key(store: KeyStore) -> bytes:
    """The key e-mail addresses are digested under: a key of the store, made on first use."""
    key = store.keys([INDEX_SUBJECT], create=True).get(INDEX_SUBJECT)
    if key is None:
        raise KeyStoreError("the e-mail index key was destroyed; no address can be looked up")
    return key


def _wrap_context(subject: str) -> bytes:
    return b"sfe-subject-key\x00" + subject.encode()
