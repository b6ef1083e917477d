"""Derivations: features computed from Salesforce fields and usage histories.

Each function takes one record (a mapping of Salesforce field names and usage signals)
and the as-of date, and returns a raw value that the feature's cleaning rules then
check; ``None`` means *missing*. Training (on synthetic or exported histories) and
serving call the same functions, so a feature means the same thing on both sides.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import numpy as np

from ml.features.spec import Record

OPPORTUNITY_STAGES = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Proposal/Price Quote",
    "Negotiation/Review",
)
_STAGE_RANK = {stage: rank for rank, stage in enumerate(OPPORTUNITY_STAGES)}

_SENIORITY = (
    ("C-Level", re.compile(r"\b(chief|ceo|cto|cfo|coo|cio|cmo|founder|owner|president)\b", re.I)),
    ("VP", re.compile(r"\b(vp|svp|evp|vice president)\b", re.I)),
    ("Director", re.compile(r"\b(director|head of)\b", re.I)),
    ("Manager", re.compile(r"\b(manager|lead|supervisor)\b", re.I)),
)


def parse_day(value: Any) -> date | None:
    """A Salesforce Date or DateTime value (ISO text, date or datetime) as a date."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).date()
        except ValueError:
            return None
    return None


def days_until(field: str) -> Any:
    """A derivation: days from the as-of date to the date in ``field`` (negative if past)."""

    def derive(record: Record, as_of: date) -> int | None:
        day = parse_day(record.get(field))
        return None if day is None else (day - as_of).days

    return derive


def days_since(field: str) -> Any:
    """A derivation: days from the date in ``field`` to the as-of date."""

    def derive(record: Record, as_of: date) -> int | None:
        day = parse_day(record.get(field))
        return None if day is None else (as_of - day).days

    return derive


def months_since(field: str) -> Any:
    """A derivation: whole months from the date in ``field`` to the as-of date."""

    def derive(record: Record, as_of: date) -> float | None:
        day = parse_day(record.get(field))
        return None if day is None else round((as_of - day).days / 30.44, 1)

    return derive


def usage_trend(record: Record, _as_of: date) -> float | None:
    """Relative change of mean daily active users, last 15 days against the 15 before.

    Reads ``Daily_Active_Users`` (30 daily counts, oldest first). ``-0.4`` means usage
    fell by 40 %; an account with no usage in either half has trend 0.
    """
    series = record.get("Daily_Active_Users")
    if not isinstance(series, Sequence | np.ndarray) or len(series) < 2:
        return None
    values = np.asarray(series, dtype=np.float64)
    half = len(values) // 2
    before, after = values[:half].mean(), values[half:].mean()
    if before <= 0:
        return 0.0 if after <= 0 else 1.0
    return float(after / before - 1.0)


def late_payments(record: Record, as_of: date) -> int | None:
    """Invoices of the last 90 days paid after their due date or still unpaid when due.

    Reads ``Payments``: a list of ``{"due": date, "paid": date | None}``.
    """
    payments = record.get("Payments")
    if not isinstance(payments, Sequence):
        return None
    late = 0
    for payment in payments:
        due, paid = parse_day(payment.get("due")), parse_day(payment.get("paid"))
        if due is None or (as_of - due).days > 90 or due > as_of:
            continue
        if (paid is None and due < as_of) or (paid is not None and paid > due):
            late += 1
    return late


def count_items(field: str) -> Any:
    """A derivation: entries of a multi-select picklist (``a;b``), JSON list or line list."""

    def derive(record: Record, _as_of: date) -> int | None:
        value = record.get(field)
        if value is None:
            return None
        if isinstance(value, list | tuple):
            return len(value)
        text = str(value).strip()
        if text.startswith("["):
            try:
                return len(json.loads(text))
            except ValueError:
                return None
        return len([part for part in re.split(r"[;\n]", text) if part.strip()])

    return derive


def title_seniority(record: Record, _as_of: date) -> str | None:
    """Seniority band of a lead's ``Title``: C-Level, VP, Director, Manager or Individual."""
    title = record.get("Title")
    if not isinstance(title, str) or not title.strip():
        return None
    for band, pattern in _SENIORITY:
        if pattern.search(title):
            return band
    return "Individual"


def _stage_history(record: Record) -> list[tuple[str, date]]:
    history = record.get("Stage_History")
    if not isinstance(history, Sequence):
        return []
    entries = [(str(h.get("StageName")), parse_day(h.get("CreatedDate"))) for h in history]
    return sorted(((stage, day) for stage, day in entries if day is not None), key=lambda e: e[1])


def days_in_stage(record: Record, as_of: date) -> int | None:
    """Days since the opportunity entered its current stage (from ``Stage_History``)."""
    history = _stage_history(record)
    return (as_of - history[-1][1]).days if history else None


def stage_regressions(record: Record, _as_of: date) -> int | None:
    """How often the opportunity moved back to an earlier stage (from ``Stage_History``)."""
    history = _stage_history(record)
    if not history:
        return None
    ranks = [_STAGE_RANK.get(stage, -1) for stage, _ in history]
    return sum(1 for a, b in itertools.pairwise(ranks) if 0 <= b < a)
