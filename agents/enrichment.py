"""Enrichment providers for lead qualification: company intelligence and deep analysis.

SPEC.md Flow 1 enriches each new lead in parallel with company intelligence and a
deep analysis (tech stack, budget, decision makers). Providers are pluggable async
clients behind one small interface, :class:`EnrichmentProvider`, answering a whole
batch at once. Two implementations ship:

- :class:`LocalEnrichment`, the default: a deterministic analysis of the lead's own
  fields (no network), also the fallback of the HTTP provider;
- :class:`HttpEnrichment`: POSTs the batch as JSON to a configured URL with a time-out
  and retries with backoff; when the service stays unavailable it answers with its
  fallback and says so in the answer (``provider``), so the decision records which
  source it used.

Answers are flat ``str -> str`` maps recorded in the decision (``LeadScored.enrichment``)
so a replay never asks again. The keys the lead flow reads are listed in ``KEYS``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
from collections.abc import Mapping, Sequence
from typing import Protocol

import aiohttp

from schema_registry.events import FieldValue

log = logging.getLogger(__name__)

Lead = Mapping[str, FieldValue]
Answer = dict[str, str]

#: Keys of an answer the lead flow writes back (``provider`` says who answered).
KEYS = ("provider", "company_intelligence", "tech_stack", "estimated_budget", "decision_makers")

_SENIOR_TITLES = (
    ("C-Level", re.compile(r"\b(chief|ceo|cto|cfo|cio|coo|cmo|founder|president)\b", re.I)),
    ("VP", re.compile(r"\b(vp|vice president)\b", re.I)),
    ("Director", re.compile(r"\b(director|head)\b", re.I)),
)


class EnrichmentProvider(Protocol):
    """Answers enrichment questions about a batch of leads, one answer per lead, in order."""

    name: str

    async def enrich(self, leads: Sequence[Lead]) -> list[Answer]:
        """One answer per lead (keys of ``KEYS``), never raising for one bad lead."""
        ...


def _number(value: FieldValue) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _seniority(title: str) -> str | None:
    for band, pattern in _SENIOR_TITLES:
        if pattern.search(title):
            return band
    return None


class LocalEnrichment:
    """Deterministic enrichment from the lead's own fields (no network).

    - company intelligence: size band from employees, revenue band, industry, country
      and website, in one sentence;
    - tech stack: the lead's ``Tech_Stack__c`` entries;
    - estimated budget: 1.5 % of annual revenue, or 2,500 per employee without revenue,
      rounded to the thousand and capped at 5,000,000 (the lead's own
      ``Estimated_Budget__c`` wins when present; empty when nothing is known);
    - decision makers: the lead itself when its title is Director level or above,
      plus the roles that sign for a company of its size.
    """

    name = "local"

    async def enrich(self, leads: Sequence[Lead]) -> list[Answer]:
        """Answers for every lead (synchronous work; no awaiting needed)."""
        return [self.answer(lead) for lead in leads]

    def answer(self, lead: Lead) -> Answer:
        """The answer for one lead."""
        employees = _number(lead.get("NumberOfEmployees"))
        revenue = _number(lead.get("AnnualRevenue"))
        company = str(lead.get("Company") or "unknown company")
        size = (
            "unknown size"
            if employees is None
            else "enterprise"
            if employees >= 1000
            else "mid-market"
            if employees >= 100
            else "small business"
        )
        parts = [f"{company}: {size}"]
        if employees is not None:
            parts.append(f"{int(employees):,} employees")
        if revenue is not None:
            parts.append(f"annual revenue {revenue:,.0f}")
        for label, key in (("industry", "Industry"), ("country", "Country"), ("web", "Website")):
            if lead.get(key):
                parts.append(f"{label} {lead[key]}")
        stack = sorted(
            {p.strip() for p in re.split(r"[;\n]", str(lead.get("Tech_Stack__c") or ""))} - {""}
        )
        own_budget = _number(lead.get("Estimated_Budget__c"))
        if own_budget is not None:
            budget = own_budget
        elif revenue:
            budget = min(5_000_000.0, round(revenue * 0.015, -3))
        elif employees:
            budget = min(5_000_000.0, round(employees * 2_500.0, -3))
        else:
            budget = None
        makers: list[str] = []
        title = str(lead.get("Title") or "")
        band = _seniority(title)
        name = " ".join(str(lead.get(k) or "") for k in ("FirstName", "LastName")).strip()
        if band is not None:
            makers.append(f"{name or 'this lead'} ({title})")
        if employees is not None and employees >= 1000:
            makers.extend(["CIO", "VP Procurement"])
        elif employees is not None and employees >= 100:
            makers.append("Head of IT")
        else:
            makers.append("Owner / CEO")
        return {
            "provider": self.name,
            "company_intelligence": "; ".join(parts),
            "tech_stack": ";".join(stack),
            # Unknown stays unknown: an empty answer, not a budget of 0.
            "estimated_budget": "" if budget is None else f"{budget:.0f}",
            "decision_makers": "\n".join(dict.fromkeys(makers)),
        }


class HttpEnrichment:
    """An enrichment service over HTTP(S), with time-out, retries and a local fallback.

    Request: ``POST <url>`` with ``{"leads": [{field: value, ...}, ...]}``; response:
    ``{"answers": [{key: value, ...}, ...]}`` in the same order. Answers are merged over
    the fallback's, so a service that knows only some keys still yields a full answer.
    """

    name = "http"

    def __init__(
        self,
        url: str,
        timeout_seconds: float = 2.0,
        attempts: int = 3,
        backoff_seconds: float = 0.2,
        fallback: LocalEnrichment | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.fallback = fallback or LocalEnrichment()
        self.headers = dict(headers or {})
        self._session: aiohttp.ClientSession | None = None
        self.failures = 0

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, leads: Sequence[Lead]) -> list[dict[str, object]]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout, headers=self.headers)
        async with self._session.post(self.url, json={"leads": [dict(x) for x in leads]}) as r:
            if r.status >= 400:
                raise aiohttp.ClientResponseError(
                    r.request_info, r.history, status=r.status, message=r.reason or ""
                )
            body = await r.json(content_type=None)
        answers = body.get("answers") if isinstance(body, dict) else None
        if not isinstance(answers, list) or len(answers) != len(leads):
            raise ValueError(f"expected {len(leads)} answers from {self.url}")
        return [a if isinstance(a, dict) else {} for a in answers]

    async def enrich(self, leads: Sequence[Lead]) -> list[Answer]:
        """The service's answers, or the fallback's after ``attempts`` failures."""
        if not leads:
            return []
        base = [self.fallback.answer(lead) for lead in leads]
        for attempt in range(1, self.attempts + 1):
            try:
                answers = await self._post(leads)
            except (aiohttp.ClientError, TimeoutError, ValueError, json.JSONDecodeError) as exc:
                self.failures += 1
                log.warning(
                    "enrichment service failed",
                    extra={"url": self.url, "attempt": attempt, "error": repr(exc)},
                )
                if attempt < self.attempts:
                    delay = self.backoff_seconds * 2 ** (attempt - 1)
                    await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                continue
            return [
                {**fallback, **{str(k): str(v) for k, v in a.items() if v is not None}}
                | {"provider": self.name}
                for fallback, a in zip(base, answers, strict=True)
            ]
        return [{**answer, "provider": f"{self.fallback.name} (fallback)"} for answer in base]


def provider_for(url: str | None, timeout_seconds: float = 2.0) -> EnrichmentProvider:
    """The HTTP provider when ``url`` is set, else the local one."""
    return HttpEnrichment(url, timeout_seconds) if url else LocalEnrichment()
