"""Salesforce record ids: 15-character bodies, 18-character checksummed forms, key prefixes.

Ids are opaque to clients but have a fixed shape: a three-character key prefix naming
the object, a pod and reserved character, a base-62 counter, and (in the 18-character
form) a three-character case-folding checksum. :func:`normalize` accepts either form
and raises :class:`MalformedId` for anything else.
"""

from __future__ import annotations

import itertools
import string

_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_CHECKSUM_ALPHABET = string.ascii_uppercase + "012345"
_POD = "8d0"

KEY_PREFIXES: dict[str, str] = {
    "Account": "001",
    "Contact": "003",
    "Opportunity": "006",
    "Lead": "00Q",
    "Task": "00T",
    "User": "005",
    "Case": "500",
    "Organization": "00D",
}


class MalformedId(ValueError):
    """The value is not a 15- or 18-character Salesforce id."""


def _checksum(body: str) -> str:
    suffix = ""
    for start in range(0, 15, 5):
        bits = sum(1 << i for i, char in enumerate(body[start : start + 5]) if char.isupper())
        suffix += _CHECKSUM_ALPHABET[bits]
    return suffix


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(_BASE62[rest])
    return "".join(reversed(digits)).rjust(width, "0")


def make_id(prefix: str, counter: int) -> str:
    """The 18-character id of record number ``counter`` with ``prefix``."""
    body = prefix + _POD + _base62(counter, 9)
    return body + _checksum(body)


def normalize(value: object) -> str:
    """The 18-character form of ``value``, or :class:`MalformedId`."""
    if not isinstance(value, str) or len(value) not in (15, 18) or not value.isalnum():
        raise MalformedId(str(value))
    body = value[:15]
    if len(value) == 18 and value[15:].upper() != _checksum(body):
        raise MalformedId(value)
    return body + _checksum(body)


def prefix_of(record_id: str) -> str:
    """The key prefix of an id."""
    return record_id[:3]


class IdAllocator:
    """Hands out fresh ids per key prefix; restartable from the highest id in use."""

    def __init__(self, start: int = 1) -> None:
        self._counter = itertools.count(start)
        self._last = start - 1

    def next(self, prefix: str) -> str:
        """A new id for ``prefix``."""
        self._last = next(self._counter)
        return make_id(prefix, self._last)

    def advance_past(self, record_id: str) -> None:
        """Make sure later ids never collide with ``record_id`` (after a restart)."""
        number = 0
        for char in record_id[6:15]:
            number = number * 62 + _BASE62.index(char)
        if number > self._last:
            self._last = number
            self._counter = itertools.count(number + 1)
