"""Derivations: features computed from Salesforce fields and usage histories.

Each derivation takes one record (a mapping of Salesforce field names and usage signals)
and the as-of date, and returns a raw value that the feature's cleaning rules then
check; ``None`` means *missing*. Training (on synthetic or exported histories) and
serving call the same functions, so a feature means the same thing on both sides.
Each reads one field, so each is a :class:`~ml.features.spec.FieldDerivation` (a
function of that field's value), which batch scoring computes once per distinct value.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import numpy as np

from ml.features.spec import FieldDerivation

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


def _days_until(value: Any, as_of: date) -> int | None:
    day = parse_day(value)
    return None if day is None else (day - as_of).days


def _days_since(value: Any, as_of: date) -> int | None:
    day = parse_day(value)
    return None if day is None else (as_of - day).days


def _months_since(value: Any, as_of: date) -> float | None:
    day = parse_day(value)
    return None if day is None else round((as_of - day).days / 30.44, 1)


def days_until(field: str) -> FieldDerivation:
    """A derivation: days from the as-of date to the date in ``field`` (negative if past)."""
    return FieldDerivation(field, _days_until)


def days_since(field: str) -> FieldDerivation:
    """A derivation: days from the date in ``field`` to the as-of date."""
    return FieldDerivation(field, _days_since)


def months_since(field: str) -> FieldDerivation:
    """A derivation: whole months from the date in ``field`` to the as-of date."""
    return FieldDerivation(field, _months_since)


def _usage_trend(series: Any, _as_of: date) -> float | None:
    if not isinstance(series, Sequence | np.ndarray) or len(series) < 2:
        return None
    values = np.asarray(series, dtype=np.float64)
    half = len(values) // 2
    before, after = values[:half].mean(), values[half:].mean()
    if before <= 0:
        return 0.0 if after <= 0 else 1.0
    return float(after / before - 1.0)


usage_trend = FieldDerivation("Daily_Active_Users", _usage_trend)
"""Relative change of mean daily active users, last 15 days against the 15 before.

Reads ``Daily_Active_Users`` (30 daily counts, oldest first). ``-0.4`` means usage
fell by 40 %; an account with no usage in either half has trend 0.
"""


def _late_payments(payments: Any, as_of: date) -> int | None:
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


late_payments = FieldDerivation("Payments", _late_payments)
"""Invoices of the last 90 days paid after their due date or still unpaid when due.

Reads ``Payments``: a list of ``{"due": date, "paid": date | None}``.
"""


def _count_items(value: Any, _as_of: date) -> int | None:
    # A batch table holds NaN where a record lacks the field: missing, as None is.
    if value is None or (isinstance(value, float) and math.isnan(value)):
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


def count_items(field: str) -> FieldDerivation:
    """A derivation: entries of a multi-select picklist (``a;b``), JSON list or line list."""
    return FieldDerivation(field, _count_items)


def _seniority(title: Any, _as_of: date) -> str | None:
    if not isinstance(title, str) or not title.strip():
        return None
    for band, pattern in _SENIORITY:
        if pattern.search(title):
            return band
    return "Individual"


title_seniority = FieldDerivation("Title", _seniority)
"""Seniority band of a lead's ``Title``: C-Level, VP, Director, Manager or Individual."""


def _stage_history(history: Any) -> list[tuple[str, date]]:
    if not isinstance(history, Sequence):
        return []
    entries = [(str(h.get("StageName")), parse_day(h.get("CreatedDate"))) for h in history]
    return sorted(((stage, day) for stage, day in entries if day is not None), key=lambda e: e[1])


def _days_in_stage(history: Any, as_of: date) -> int | None:
    entries = _stage_history(history)
    return (as_of - entries[-1][1]).days if entries else None


def _stage_regressions(history: Any, _as_of: date) -> int | None:
    entries = _stage_history(history)
    if not entries:
        return None
    ranks = [_STAGE_RANK.get(stage, -1) for stage, _ in entries]
    return sum(1 for a, b in itertools.pairwise(ranks) if 0 <= b < a)


days_in_stage = FieldDerivation("Stage_History", _days_in_stage)
"""Days since the opportunity entered its current stage (from ``Stage_History``)."""

stage_regressions = FieldDerivation("Stage_History", _stage_regressions)
"""How often the opportunity moved back to an earlier stage (from ``Stage_History``)."""


def ratio(numerator: Any, denominator: Any) -> float | None:
    """``numerator / denominator`` for seat utilisation: None without a positive denominator.

    A missing numerator (None, or the NaN a batch table holds for a record that lacks the
    field) counts as 0 users, so a record scores the same alone or in any batch.
    """
    try:
        seats = float(denominator)
    except (TypeError, ValueError):
        return None
    if math.isnan(seats) or seats <= 0:
        return None
    try:
        users = float(numerator) if numerator is not None else 0.0
    except (TypeError, ValueError):
        users = 0.0
    return (0.0 if math.isnan(users) else users) / seats
