"""Structured logging for every ``sfe`` process: one JSON object per line on stderr.

Fields passed through ``extra=`` (topic, partition, offset, event_id, ...) become keys
of the JSON object, so errors can always be traced to ``topic[partition]@offset``.

:class:`RedactingFilter`, installed on the handler, removes credentials from every
record before it is written, whichever library logged it: bearer and OAuth
authorization headers, ``access_token``/``refresh_token``/``assertion``/``password``/
``client_secret``/``token`` parameters and JSON fields, Salesforce session ids
(``00D...!...``), PEM private key blocks, and every secret value this process has
resolved (:func:`sfe.secrets.known_secrets`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from sfe.secrets import known_secrets

_STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


REDACTED = "[REDACTED]"
_PATTERNS = (
    # Authorization: Bearer <token> / OAuth <token> (headers, reprs of header dicts).
    re.compile(r"(?i)\b(bearer|oauth)(\s+|'\s*:\s*')[A-Za-z0-9._~+/!=-]{8,}"),
    # Form and query parameters: access_token=..., token=..., assertion=...
    re.compile(
        r"(?i)\b(access_token|refresh_token|id_token|assertion|client_secret|password|token|"
        r"session_?id|sig|signature)=[^&\s\"',;)]+"
    ),
    # JSON or dict fields: "access_token": "...", 'password': '...'
    re.compile(
        r"(?i)([\"'](?:access_token|refresh_token|id_token|assertion|client_secret|password|"
        r"token|sessionId|session_id|signature|private_key)[\"']\s*:\s*)[\"'][^\"']*[\"']"
    ),
    # X-Sfe-Signature / X-Vault-Token header values.
    re.compile(r"(?i)\b(x-sfe-signature|x-vault-token)([\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
    # Salesforce session ids: the org id (00D + 12 or 15 chars), '!', the rest.
    re.compile(r"\b00D[A-Za-z0-9]{12,15}![A-Za-z0-9._~+/=-]+"),
    # PEM private keys.
    re.compile(
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.DOTALL
    ),
)


_by_length: tuple[frozenset[str], tuple[str, ...]] = (frozenset(), ())


def _longest_first() -> tuple[str, ...]:
    global _by_length
    known = known_secrets()
    if known is not _by_length[0]:
        _by_length = (known, tuple(sorted(known, key=len, reverse=True)))
    return _by_length[1]


def redact(text: str) -> str:
    """``text`` with credentials and every known secret value replaced by ``[REDACTED]``."""
    for secret in _longest_first():
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(_replacement, text)
    return text


def _replacement(match: re.Match[str]) -> str:
    groups = [g for g in match.groups() if g is not None]
    if match.re is _PATTERNS[0] or match.re is _PATTERNS[3]:
        return groups[0] + groups[1] + REDACTED
    if match.re is _PATTERNS[1]:
        return groups[0] + "=" + REDACTED
    if match.re is _PATTERNS[2]:
        return groups[0] + '"' + REDACTED + '"'
    return REDACTED


class RedactingFilter(logging.Filter):
    """Rewrite a record's message, exception text and string extras without credentials."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; never drops it."""
        try:
            message = record.getMessage()
        except Exception:  # a malformed format string: keep what can be shown
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRIBUTES and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


class JsonFormatter(logging.Formatter):
    """Render a log record as one JSON line with its ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Serialise ``record``; exceptions go under ``exc``."""
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                payload[key] = value
        if record.exc_text:
            payload["exc"] = record.exc_text
        elif record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Install the JSON formatter and the redacting filter on the root logger (idempotent).

    Records go to ``stream`` (standard error by default).
    """
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        if getattr(handler, "_sfe", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    handler._sfe = True  # type: ignore[attr-defined]
    root.addHandler(handler)
