"""Exceptions of the schema registry package: one base, one per failure a caller handles.

:class:`UndecodableEvent` is the only exception decoding raises, whatever went wrong
(truncated bytes, unknown schema, wrong magic byte, failed upcast); its ``reason``
is what the ingestor writes to the dead-letter topic next to the raw bytes.
"""

from __future__ import annotations


class SchemaError(Exception):
    """Base of every error raised by ``schema_registry``."""


class UnknownSubject(SchemaError):
    """No schema is kept for this subject (or this version of it)."""

    def __init__(self, subject: str, version: int | None = None) -> None:
        self.subject = subject
        self.version = version
        where = subject if version is None else f"{subject} v{version}"
        super().__init__(f"no schema is kept for {where}")


class EventNotEncodable(SchemaError):
    """An event does not fit the schema of the topic it is sent to."""


class UndecodableEvent(SchemaError):
    """Bytes read from a topic cannot be turned into an event; ``reason`` says why."""

    def __init__(self, topic: str, reason: str) -> None:
        self.topic = topic
        self.reason = reason
        super().__init__(f"cannot decode a record of {topic}: {reason}")
