"""The envelope every event carries, and the base class of all domain events.

An event is an immutable fact named in the past tense. Its envelope follows the
CloudEvents vocabulary: ``id`` (unique, deterministic for derived events), ``type``
(the class name), ``source`` (the producing component), ``subject`` (the Salesforce
record id or other entity the event is about), ``time``, ``causation_id`` (the id of
the event that caused this one), ``correlation_id`` (the id of the first event of the
flow) and ``schema_version`` (the version of the subject's schema the class models).
``type`` and ``schema_version`` are class attributes: they are written on encoding
and checked on decoding, never chosen per instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

#: One Salesforce field value as JSON gives it: Avro union null|boolean|long|double|string.
#: Compound fields (Name, Address) are flattened to dotted names such as ``Name.LastName``.
FieldValue = bool | int | float | str | None

#: Names of the envelope fields, in the order every schema declares them.
ENVELOPE_FIELDS = (
    "id",
    "type",
    "source",
    "subject",
    "time",
    "causation_id",
    "correlation_id",
    "schema_version",
)


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every domain event: the envelope fields an instance chooses."""

    type: ClassVar[str]
    schema_version: ClassVar[int]

    id: str
    source: str
    subject: str
    time: datetime
    causation_id: str | None = None
    correlation_id: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.type = cls.__name__

    def __post_init__(self) -> None:
        if self.time.tzinfo is None:
            raise ValueError(f"{type(self).__name__}.time must be timezone-aware")
