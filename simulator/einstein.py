"""Simulated Einstein: a lead score on every Lead, and the Einstein Discovery predict API.

The score lives in ``Lead.Einstein_Lead_Score__c`` (0-100), computed when a lead is
created unless the client sets it. ``POST /services/data/vNN.N/smartdatadiscovery/predict``
answers with the response shape of Einstein Discovery: a ``total`` per row, the
``middleValues`` (top contributing factors) and ``prescriptions`` (improvements).
The model is a transparent points table, deterministic for the same input.
"""

from __future__ import annotations

import hashlib
from typing import Any

_SENIOR = ("chief", "cto", "ceo", "cfo", "vp", "vice president", "head", "director")
_INDUSTRY_POINTS = {"Technology": 12.0, "Finance": 10.0, "Healthcare": 8.0, "Manufacturing": 6.0}
_SOURCE_POINTS = {
    "Partner Referral": 12.0,
    "Web": 8.0,
    "Phone Inquiry": 6.0,
    "Purchased List": -4.0,
}


def factors(row: dict[str, Any]) -> list[tuple[str, Any, float]]:
    """``(column, value, points)`` for every input that moves the score."""
    found: list[tuple[str, Any, float]] = []
    title = str(row.get("Title") or "").lower()
    if any(word in title for word in _SENIOR):
        found.append(("Title", row.get("Title"), 18.0))
    elif title:
        found.append(("Title", row.get("Title"), 4.0))
    employees = _number(row.get("NumberOfEmployees"))
    if employees:
        found.append(
            ("NumberOfEmployees", row.get("NumberOfEmployees"), min(15.0, employees / 200))
        )
    revenue = _number(row.get("AnnualRevenue"))
    if revenue:
        found.append(("AnnualRevenue", row.get("AnnualRevenue"), min(15.0, revenue / 2_000_000)))
    industry = row.get("Industry")
    if industry in _INDUSTRY_POINTS:
        found.append(("Industry", industry, _INDUSTRY_POINTS[str(industry)]))
    source = row.get("LeadSource")
    if source in _SOURCE_POINTS:
        found.append(("LeadSource", source, _SOURCE_POINTS[str(source)]))
    if row.get("Email"):
        found.append(("Email", row.get("Email"), 5.0))
    return found


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def baseline(row: dict[str, Any]) -> float:
    """The score before any factor: 20-29, stable per lead."""
    seed = hashlib.sha256(str(row.get("Email") or row.get("LastName")).encode()).digest()[0]
    return 20.0 + seed % 10


def lead_score(row: dict[str, Any]) -> int:
    """The 0-100 Einstein lead score for a lead's fields."""
    return max(0, min(100, round(baseline(row) + sum(points for _, _, points in factors(row)))))


def _column(name: str, value: Any, points: float) -> dict[str, Any]:
    label = name.removesuffix("__c").replace("_", " ")
    return {
        "columns": [{"columnLabel": label, "columnName": name, "columnValue": str(value)}],
        "value": round(points, 4),
    }


def predict(body: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """The response of ``smartdatadiscovery/predict`` for raw rows or looked-up records."""
    settings = body.get("settings") or {}
    max_middle = int(settings.get("maxMiddleValues", 3))
    max_prescriptions = int(settings.get("maxPrescriptions", 3))
    predictions = []
    for row in records:
        found = sorted(factors(row), key=lambda f: -abs(f[2]))
        total, base = float(lead_score(row)), baseline(row)
        predictions.append(
            {
                "model": {"id": "1Ot8d0000000001AAA"},
                "prediction": {
                    "total": total,
                    "baseLine": base,
                    "middleValues": [_column(c, v, p) for c, v, p in found[:max_middle]],
                    "other": round(total - base - sum(p for _, _, p in found[:max_middle]), 4),
                },
                "prescriptions": _prescriptions(row)[:max_prescriptions],
                "status": "Success",
            }
        )
    return {
        "predictionDefinition": body.get("predictionDefinition", "1OR8d0000000001AAA"),
        "predictions": predictions,
        "settings": {"maxMiddleValues": max_middle, "maxPrescriptions": max_prescriptions},
    }


def _prescriptions(row: dict[str, Any]) -> list[dict[str, Any]]:
    suggestions = []
    if row.get("LeadSource") != "Partner Referral":
        suggestions.append(
            (
                "LeadSource",
                "Partner Referral",
                12.0 - _SOURCE_POINTS.get(str(row.get("LeadSource")), 0.0),
            )
        )
    if not any(word in str(row.get("Title") or "").lower() for word in _SENIOR):
        suggestions.append(("Title", "VP", 14.0))
    if not row.get("Email"):
        suggestions.append(("Email", "(provided)", 5.0))
    return [_column(c, v, p) for c, v, p in sorted(suggestions, key=lambda s: -s[2])]
