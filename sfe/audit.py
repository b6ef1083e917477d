"""A tamper-evident audit trail: an append-only, hash-chained ``audit_log`` in PostgreSQL.

Every Salesforce write batch, replay, reconciliation, erasure and administrative action
appends one entry with :func:`record`, inside the caller's transaction, so an audited
effect and its entry commit (or roll back) together. Each entry carries the hash of the
entry before it (``prev_hash``) and its own ``hash``: the SHA-256 of a canonical
serialization of ``seq, at, actor, action, subject, details, prev_hash``. Appends are
serialized by a transaction-scoped advisory lock, so the chain is one line even with
many writers, and ``seq`` has no gaps (it is assigned under the lock, not by a sequence).

``audit_head`` (one row) holds the last ``seq`` and ``hash``, advanced in the same
transaction as each append; ``audit_anchor`` (at most one row) holds the ``seq`` and
``hash`` of the last entry removed by :func:`prune`, where verification starts.

What :func:`verify` detects, given the migration's triggers may have been bypassed:

- an edited entry (its content no longer matches its hash);
- an entry whose hash was recomputed after an edit (the next entry's ``prev_hash``
  no longer matches);
- deleted entries in the middle (a gap in ``seq``, or a ``prev_hash`` mismatch);
- deleted entries at the end (the chain ends before the head says it does);
- entries appended behind :func:`record`'s back (the chain runs past the head);
- a forged anchor (no ``audit.prune`` entry records it).

What it cannot detect: someone with full write access to the database (the table
owner or a superuser) can rewrite the whole chain, head and anchor consistently, and
the result verifies. The chain only makes such a rewrite visible against a copy of the
head taken before it: export ``sfe audit head`` periodically (to a ticket, a log
shipped elsewhere, a write-once bucket) and compare. The triggers of migration 0003
stop ordinary application code from updating or deleting entries; a table owner can
disable them, which the chain then reveals.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import PurePath
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Index,
    SmallInteger,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    delete,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, insert

from projections.tables import metadata

#: The ``prev_hash`` of the first entry ever appended.
GENESIS_HASH = "0" * 64
#: Key of the advisory lock that serializes appends (and prunes) in one database.
LOCK_KEY = 0x5FE_A0D1_7000
#: The session setting that allows deleting entries (``SET LOCAL``); only :func:`prune` sets it.
PRUNE_SETTING = "sfe.audit_prune"
#: Retention of entries unless ``SFE_AUDIT_RETENTION_DAYS`` says otherwise (7 years).
DEFAULT_RETENTION_DAYS = 2557
#: Version of the canonical serialization, part of every hashed document.
HASH_VERSION = 1

HASH_LENGTH = 64

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("subject", Text, nullable=False),
    Column("details", JSONB(none_as_null=False), nullable=False),
    Column("prev_hash", String(HASH_LENGTH), nullable=False),
    Column("hash", String(HASH_LENGTH), nullable=False),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_action", "action"),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(HASH_LENGTH), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("id = 1", name="audit_head_one_row"),
)

audit_anchor = Table(
    "audit_anchor",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(HASH_LENGTH), nullable=False),
    Column("pruned_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("id = 1", name="audit_anchor_one_row"),
)


class AuditError(RuntimeError):
    """The audit trail cannot be appended to (its head row is missing)."""


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the chain."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: Any
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify`: intact, or the first broken ``seq`` and why."""

    ok: bool
    entries: int
    head_seq: int | None
    head_hash: str | None
    anchor_seq: int = 0
    broken_seq: int | None = None
    reason: str | None = None

    def line(self) -> str:
        """One line for people: the verdict."""
        if self.ok:
            return f"audit trail intact: {self.entries} entries, head {self.head_hash}"
        where = f"seq {self.broken_seq}" if self.broken_seq is not None else "head"
        return f"audit trail BROKEN at {where}: {self.reason}"


@dataclass(frozen=True)
class PruneReport:
    """What :func:`prune` removed, the anchor it left, and its own entry."""

    deleted: int
    anchor_seq: int
    anchor_hash: str
    entry: AuditEntry


@dataclass
class _Walk:
    """State of a walk along the chain."""

    expected_seq: int
    prev_hash: str
    anchor_hash: str
    entries: int = 0
    last_prune: Any = field(default=None)


def default_actor(label: str | None = None) -> str:
    """``label@host:pid`` (the OS user when no label is given): who appends from this process."""
    try:
        who = label or getpass.getuser()
    except (KeyError, OSError):
        who = label or f"uid {os.getuid()}"
    return f"{who}@{socket.gethostname()}:{os.getpid()}"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, date | Decimal | UUID | PurePath):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"not JSON serializable in audit details: {type(value).__name__}")


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, ASCII only: one text per JSON value."""
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
        default=_json_default,
    )


def canonical_time(at: datetime) -> str:
    """``at`` in UTC with microseconds (what ``timestamptz`` keeps)."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    details: Any,
    prev_hash: str,
) -> str:
    """Hex SHA-256 of the canonical serialization of one entry (and the hash before it)."""
    document = {
        "v": HASH_VERSION,
        "seq": seq,
        "at": canonical_time(at),
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": details,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(document).encode("ascii")).hexdigest()


def _lock(connection: Connection) -> None:
    connection.execute(select(func.pg_advisory_xact_lock(LOCK_KEY)))


def _as_stored(connection: Connection, details: Any) -> Any:
    """``details`` as PostgreSQL's JSONB will give it back (its number and key normalization)."""
    stored = connection.execute(
        select(bindparam("details", canonical_json(details), type_=Text).cast(JSONB))
    ).scalar_one()
    return stored


def record(
    connection: Connection,
    action: str,
    subject: str,
    details: Mapping[str, Any] | None = None,
    actor: str | None = None,
) -> AuditEntry:
    """Append one entry inside the caller's transaction and advance the head.

    Takes the audit lock until the transaction ends, so keep the transaction short
    after this call. ``details`` must be JSON (datetimes, decimals, UUIDs and paths
    become strings); ``actor`` defaults to ``user@host:pid``.
    """
    if not action:
        raise ValueError("an audit entry needs an action")
    _lock(connection)
    head = connection.execute(
        select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
    ).one_or_none()
    if head is None:
        raise AuditError("audit_head has no row: the trail was tampered with (sfe audit verify)")
    stored = _as_stored(connection, dict(details or {}))
    seq, prev_hash = int(head.seq) + 1, str(head.hash)
    at = datetime.now(UTC)
    who = actor or default_actor()
    digest = entry_hash(seq, at, who, action, subject, stored, prev_hash)
    connection.execute(
        insert(audit_log).values(
            seq=seq,
            at=at,
            actor=who,
            action=action,
            subject=subject,
            details=stored,
            prev_hash=prev_hash,
            hash=digest,
        )
    )
    connection.execute(
        audit_head.update()
        .where(audit_head.c.id == 1)
        .values(seq=seq, hash=digest, updated_at=func.now())
    )
    return AuditEntry(seq, at, who, action, subject, stored, prev_hash, digest)


def record_action(
    database_url: str, action: str, subject: str, details: Mapping[str, Any] | None = None
) -> AuditEntry:
    """Append one entry in a transaction of its own (an admin command's action, once done)."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            return record(connection, action, subject, details)
    finally:
        engine.dispose()


def head(connection: Connection) -> tuple[int, str] | None:
    """The last ``seq`` and ``hash`` of the chain (None if the head row is missing)."""
    row = connection.execute(
        select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
    ).one_or_none()
    return None if row is None else (int(row.seq), str(row.hash))


def anchor(connection: Connection) -> tuple[int, str]:
    """Where the chain starts: the last pruned entry's ``seq`` and ``hash``, or (0, genesis)."""
    row = connection.execute(
        select(audit_anchor.c.seq, audit_anchor.c.hash).where(audit_anchor.c.id == 1)
    ).one_or_none()
    return (0, GENESIS_HASH) if row is None else (int(row.seq), str(row.hash))


_WALK = text(
    """
    SELECT h.seq AS head_seq, h.hash AS head_hash,
           coalesce(a.seq, 0) AS anchor_seq, coalesce(a.hash, :genesis) AS anchor_hash,
           l.seq, l.at, l.actor, l.action, l.subject, l.details, l.prev_hash, l.hash
    FROM audit_head h
    LEFT JOIN audit_anchor a ON a.id = 1
    LEFT JOIN audit_log l ON l.seq > coalesce(a.seq, 0)
    WHERE h.id = 1
    ORDER BY l.seq
    """
).bindparams(genesis=GENESIS_HASH)


def verify(connection: Connection, chunk_size: int = 5000) -> VerifyReport:
    """Walk the chain from the anchor to the head; the first broken ``seq`` and why, if any.

    One statement reads head, anchor and entries (one snapshot, so concurrent appends
    never look like tampering), through a server-side cursor in chunks of
    ``chunk_size``: memory stays flat for any length of trail.
    """
    result = connection.execution_options(yield_per=chunk_size).execute(_WALK)
    walk: _Walk | None = None
    head_seq: int | None = None
    head_hash: str | None = None
    anchor_seq = 0
    try:
        for row in result:
            if walk is None:
                head_seq, head_hash = int(row.head_seq), str(row.head_hash)
                anchor_seq = int(row.anchor_seq)
                walk = _Walk(anchor_seq + 1, str(row.anchor_hash), str(row.anchor_hash))
            if row.seq is None:  # no entries after the anchor
                break
            broken = _check(walk, row)
            if broken is not None:
                return VerifyReport(
                    False, walk.entries, head_seq, head_hash, anchor_seq, broken[0], broken[1]
                )
    finally:
        result.close()
    if walk is None or head_seq is None:
        return VerifyReport(False, 0, None, None, reason="audit_head has no row (deleted)")
    return _check_end(walk, head_seq, str(head_hash), anchor_seq)


def _check(walk: _Walk, row: Any) -> tuple[int, str] | None:
    seq = int(row.seq)
    if seq != walk.expected_seq:
        missing = (
            f"{walk.expected_seq}"
            if seq == walk.expected_seq + 1
            else f"{walk.expected_seq}..{seq - 1}"
        )
        return walk.expected_seq, f"entries {missing} missing (deleted); chain resumes at {seq}"
    if row.prev_hash != walk.prev_hash:
        before = "the anchor" if walk.entries == 0 else f"seq {seq - 1}"
        return seq, (
            f"prev_hash does not match the hash of {before} "
            f"({before} rewritten, or entries replaced)"
        )
    digest = entry_hash(seq, row.at, row.actor, row.action, row.subject, row.details, row.prev_hash)
    if digest != row.hash:
        return seq, "content does not match its hash (entry edited)"
    if row.action == "audit.prune":
        walk.last_prune = row.details
    walk.entries += 1
    walk.expected_seq = seq + 1
    walk.prev_hash = digest
    return None


def _check_end(walk: _Walk, head_seq: int, head_hash: str, anchor_seq: int) -> VerifyReport:
    last_seq = walk.expected_seq - 1

    def broken(seq: int | None, reason: str) -> VerifyReport:
        return VerifyReport(False, walk.entries, head_seq, head_hash, anchor_seq, seq, reason)

    if last_seq < head_seq:
        gone = f"{last_seq + 1}" if last_seq + 1 == head_seq else f"{last_seq + 1}..{head_seq}"
        return broken(
            last_seq + 1, f"entries {gone} missing at the end (the head is at {head_seq})"
        )
    if last_seq > head_seq:
        return broken(head_seq + 1, f"entries after the head ({head_seq}) were added around it")
    if walk.prev_hash != head_hash:
        return broken(head_seq, "the head's hash does not match the last entry's")
    if anchor_seq > 0:
        last = walk.last_prune if isinstance(walk.last_prune, dict) else {}
        recorded = (last.get("anchor_seq"), last.get("anchor_hash"))
        if recorded != (anchor_seq, walk.anchor_hash):
            return broken(
                anchor_seq + 1,
                f"the anchor (seq {anchor_seq}) is not the one the last audit.prune recorded",
            )
    return VerifyReport(True, walk.entries, head_seq, head_hash, anchor_seq)


def entries(
    connection: Connection, limit: int = 20, action: str | None = None
) -> Iterator[AuditEntry]:
    """The newest ``limit`` entries, newest first; ``action`` may end in ``*`` (a prefix)."""
    statement = select(audit_log).order_by(audit_log.c.seq.desc()).limit(limit)
    if action:
        if action.endswith("*"):
            prefix = action[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            statement = statement.where(audit_log.c.action.like(prefix + "%"))
        else:
            statement = statement.where(audit_log.c.action == action)
    for row in connection.execute(statement):
        yield AuditEntry(
            int(row.seq),
            row.at,
            row.actor,
            row.action,
            row.subject,
            row.details,
            row.prev_hash,
            row.hash,
        )


def prune(
    connection: Connection,
    older_than: timedelta | datetime,
    actor: str | None = None,
) -> PruneReport:
    """Delete the entries older than ``older_than`` (an age or a cut-off time), keeping the chain verifiable.

    Only a prefix of the chain goes: up to the entry before the first one at or after
    the cut-off. The last deleted entry's ``seq`` and ``hash`` become the anchor
    verification starts from, and the prune is itself an entry (``audit.prune``,
    which names the anchor), all in the caller's transaction.
    """
    cutoff = datetime.now(UTC) - older_than if isinstance(older_than, timedelta) else older_than
    _lock(connection)
    start_seq, start_hash = anchor(connection)
    first_kept = connection.execute(
        select(func.min(audit_log.c.seq)).where(
            audit_log.c.seq > start_seq, audit_log.c.at >= cutoff
        )
    ).scalar_one_or_none()
    if first_kept is None:
        last = head(connection)
        if last is None:
            raise AuditError(
                "audit_head has no row: the trail was tampered with (sfe audit verify)"
            )
        through = last[0]
    else:
        through = int(first_kept) - 1
    deleted = 0
    anchor_seq, anchor_hash = start_seq, start_hash
    if through > start_seq:
        row = connection.execute(
            select(audit_log.c.hash).where(audit_log.c.seq == through)
        ).one_or_none()
        if row is None:
            raise AuditError(f"audit entry {through} is missing: verify the trail before pruning")
        anchor_seq, anchor_hash = through, str(row.hash)
        connection.execute(select(func.set_config(PRUNE_SETTING, "on", True)))
        deleted = connection.execute(delete(audit_log).where(audit_log.c.seq <= through)).rowcount
        statement = insert(audit_anchor).values(
            id=1, seq=anchor_seq, hash=anchor_hash, pruned_at=func.now()
        )
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=[audit_anchor.c.id],
                set_={"seq": anchor_seq, "hash": anchor_hash, "pruned_at": func.now()},
            )
        )
        connection.execute(select(func.set_config(PRUNE_SETTING, "off", True)))
    entry = record(
        connection,
        "audit.prune",
        "audit_log",
        {
            "cutoff": canonical_time(cutoff),
            "deleted": deleted,
            "anchor_seq": anchor_seq,
            "anchor_hash": anchor_hash,
        },
        actor=actor,
    )
    return PruneReport(deleted, anchor_seq, anchor_hash, entry)
