"""The workload generator behind ``sfe sim load``.

The workload generator behind ``sfe sim load``: realistic, internally consistent records
(accounts with contacts and usage signals, opportunities on those accounts, leads)
created through the public REST API with sObject Collections, deterministic per seed.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from simulator.schema import STAGES

_PREFIXES = (
    "Blue",
    "North",
    "Bright",
    "Iron",
    "Silver",
    "Quantum",
    "Summit",
    "Harbor",
    "Red",
    "Atlas",
)
_SUFFIXES = (
    "Analytics",
    "Systems",
    "Logistics",
    "Health",
    "Capital",
    "Foods",
    "Energy",
    "Labs",
    "Works",
    "Media",
)
_FORMS = ("Inc", "LLC", "GmbH", "Ltd", "Corp")
_INDUSTRIES = (
    "Technology",
    "Finance",
    "Healthcare",
    "Manufacturing",
    "Retail",
    "Education",
    "Energy",
    "Media",
)
_FIRST = (
    "Ana",
    "Ben",
    "Chloe",
    "Dev",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kofi",
    "Lena",
)
_LAST = (
    "Garcia",
    "Smith",
    "Chen",
    "Patel",
    "Okafor",
    "Muller",
    "Rossi",
    "Kim",
    "Silva",
    "Novak",
    "Berg",
)
_TITLES = ("CEO", "CTO", "VP Sales", "VP Engineering", "Director of IT", "Head of Data",
           "Operations Manager", "Procurement Lead", "Software Engineer", "Analyst")  # fmt: skip
_CITIES = (("Berlin", "Germany"), ("Austin", "USA"), ("Toronto", "Canada"), ("Lisbon", "Portugal"),
           ("London", "UK"), ("Singapore", "Singapore"))  # fmt: skip
_SOURCES = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
_STACK = (
    "Salesforce",
    "AWS",
    "Azure",
    "GCP",
    "Snowflake",
    "Kafka",
    "Python",
    "Java",
    "SAP",
    "HubSpot",
)


@dataclass(frozen=True)
class Workload:
    """How many records of each kind, how fast, and the seed."""

    leads: int
    opportunities: int
    accounts: int
    rate: float = 0.0
    seed: int = 7


def _company(rng: random.Random) -> str:
    return f"{rng.choice(_PREFIXES)} {rng.choice(_SUFFIXES)} {rng.choice(_FORMS)}"


def accounts(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Account bodies with firmographics and product-usage signals."""
    rows = []
    for index in range(count):
        employees = int(rng.lognormvariate(5, 1.2)) + 5
        trend = rng.choice(("Increasing", "Stable", "Declining"))
        usage = rng.uniform(20, 95) if trend != "Declining" else rng.uniform(5, 60)
        city, country = rng.choice(_CITIES)
        rows.append({
            "Name": f"{_company(rng)} #{index + 1}", "Industry": rng.choice(_INDUSTRIES),
            "NumberOfEmployees": employees, "AnnualRevenue": round(employees * rng.uniform(80_000, 250_000), -3),
            "Type": rng.choice(("Prospect", "Customer - Direct", "Customer - Channel")),
            "BillingCity": city, "BillingCountry": country,
            "Usage_Score__c": round(usage, 1), "Product_Usage_Trend__c": trend,
            "Engagement_Level__c": "High" if usage > 70 else "Medium" if usage > 40 else "Low",
            "Monthly_Active_Users__c": max(1, int(employees * usage / 100 * rng.uniform(0.3, 0.9))),
            "Feature_Adoption_Rate__c": round(min(100.0, usage * rng.uniform(0.6, 1.1)), 1),
            "Support_Ticket_Count_30d__c": rng.randint(0, 12 if trend == "Declining" else 5),
            "NPS_Score__c": rng.randint(-40, 20) if trend == "Declining" else rng.randint(0, 80),
        })  # fmt: skip
    return rows


def opportunities(
    rng: random.Random, count: int, account_rows: list[tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Opportunity bodies on existing accounts, amounts scaled to the account's revenue."""
    today = datetime.now(UTC).date()
    rows = []
    for index in range(count):
        account_id, account = (
            account_rows[index % len(account_rows)] if account_rows else (None, {})
        )
        stage_index = rng.randrange(len(STAGES))
        stage = STAGES[stage_index]
        closed = stage.startswith("Closed")
        revenue = float(account.get("AnnualRevenue") or 1_000_000)
        close = (
            today - timedelta(days=rng.randint(1, 90))
            if closed
            else today + timedelta(days=rng.randint(7, 180))
        )
        row = {
            "Name": f"{str(account.get('Name', 'New')).split(' #')[0]} - {rng.choice(('Platform', 'Expansion', 'Renewal', 'Pilot'))} {index + 1}",
            "StageName": stage, "CloseDate": close.isoformat(),
            "Amount": round(revenue * rng.uniform(0.002, 0.02), -2),
            "Probability": 100.0 if stage == "Closed Won" else 0.0 if stage == "Closed Lost" else round(10 + stage_index * 10.0, 0),
            "Type": rng.choice(("New Business", "Existing Business")), "LeadSource": rng.choice(_SOURCES),
        }  # fmt: skip
        if account_id:
            row["AccountId"] = account_id
        rows.append(row)
    return rows


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method; the means here are small)."""
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _pick(rng: random.Random, weighted: tuple[tuple[Any, float], ...]) -> Any:
    """One value of ``(value, weight)`` pairs, drawn by weight."""
    return rng.choices([value for value, _ in weighted], [w for _, w in weighted])[0]


# The lead model's training distributions (ml/synthetic/leads.py), so its categories are known.
_LEAD_SOURCES = (("Web", 0.35), ("Event", 0.15), ("Cold Call", 0.15), ("Partner", 0.13),
                 ("Referral", 0.12), ("Advertisement", 0.10))  # fmt: skip
#: Seniority bands (C-Level, VP, Director, Manager, Individual): (titles, intent lean), share.
_LEAD_TITLES = (
    ((("CEO", "CTO", "Chief Information Officer"), 0.5), 0.08),
    ((("VP Sales", "VP Engineering", "SVP Operations"), 0.35), 0.12),
    ((("Director of IT", "Head of Data", "Engineering Director"), 0.15), 0.20),
    ((("IT Manager", "Operations Manager", "Procurement Lead"), 0.0), 0.30),
    ((("Software Engineer", "Analyst", "Consultant"), -0.25), 0.30),
)
_LEAD_INDUSTRIES = (("Technology", 0.25), ("Financial Services", 0.15), ("Healthcare", 0.12),
                    ("Retail", 0.12), ("Manufacturing", 0.12), ("Media", 0.08), ("Education", 0.08),
                    ("Government", 0.08))  # fmt: skip
_LEAD_PLACES = (
    (("New York", "United States"), 0.15), (("Austin", "United States"), 0.15),
    (("San Francisco", "United States"), 0.15), (("London", "United Kingdom"), 0.12),
    (("Berlin", "Germany"), 0.10), (("Paris", "France"), 0.08), (("Toronto", "Canada"), 0.08),
    (("Sydney", "Australia"), 0.07), (("Bangalore", "India"), 0.10),
)  # fmt: skip
_LEAD_STACK = ("Salesforce", "AWS", "Azure", "GCP", "Snowflake", "Kafka", "Kubernetes", "SAP",
               "Databricks")  # fmt: skip


def leads(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Lead bodies with people, titles, firmographics, tech stacks and 30-day engagement.

    Drawn as the lead model's training data is (:mod:`ml.synthetic.leads`): sources,
    seniority bands, industries and countries in its proportions, log-normal company size
    (median 148 employees) with revenue and budget scaled to it, and engagement counts
    ``Web_Visits_30d__c ~ Poisson(e^(1.5 + 0.5 i))``, ``Email_Opens_30d__c ~ Poisson(e^(1 + 0.4 i))``,
    ``Content_Downloads_30d__c ~ Poisson(e^(-0.5 + 0.6 i))`` of a hidden buying intent ``i``.
    Here intent leans a little on seniority and company size (senior people at large
    companies engage more), so strong leads exist: roughly one in ten is worth a senior AE.
    """
    rows = []
    for index in range(count):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        company = _company(rng)
        domain = company.split()[0].lower() + company.split()[1].lower() + ".example.com"
        employees = min(500_000, max(1, round(rng.lognormvariate(5, 1.5))))
        titles, lean = _pick(rng, _LEAD_TITLES)
        # Training draws intent ~ N(0, 1) independently; here it leans mildly on seniority
        # and size (mean 0.03, sd 0.99 overall), which keeps the engagement marginals close.
        intent = rng.gauss(lean + 0.15 * (math.log10(employees) - 2.2), 0.95)
        city, country = _pick(rng, _LEAD_PLACES)
        revenue = round(employees * 150_000 * rng.lognormvariate(0, 0.5), -3)
        row: dict[str, Any] = {
            "FirstName": first, "LastName": f"{last}-{index + 1}", "Company": company,
            "Title": rng.choice(titles), "Email": f"{first.lower()}.{last.lower()}{index + 1}@{domain}",
            "LeadSource": _pick(rng, _LEAD_SOURCES), "Industry": _pick(rng, _LEAD_INDUSTRIES),
            "NumberOfEmployees": employees, "City": city, "Country": country,
            "Tech_Stack__c": ";".join(sorted(rng.sample(_LEAD_STACK, min(len(_LEAD_STACK), _poisson(rng, 3))))) or None,
            "Decision_Makers__c": "\n".join(
                f"{rng.choice(_FIRST)} {rng.choice(_LAST)}" for _ in range(_poisson(rng, 1.5))) or None,
            "Web_Visits_30d__c": _poisson(rng, math.exp(1.5 + 0.5 * intent)),
            "Email_Opens_30d__c": _poisson(rng, math.exp(1.0 + 0.4 * intent)),
            "Content_Downloads_30d__c": _poisson(rng, math.exp(-0.5 + 0.6 * intent)),
        }  # fmt: skip
        if rng.random() >= 0.08:
            row["AnnualRevenue"] = revenue
        if rng.random() >= 0.2:
            row["Estimated_Budget__c"] = round(revenue * 0.002 * rng.lognormvariate(0, 0.6), -2)
        rows.append(row)
    return rows


def _create(client: Any, sobject: str, bodies: list[dict[str, Any]], rate: float) -> list[str]:
    ids: list[str] = []
    chunk = 200 if rate <= 0 else max(1, min(200, int(rate)))
    for start in range(0, len(bodies), chunk):
        began = time.monotonic()
        records = [{"attributes": {"type": sobject}, **b} for b in bodies[start : start + chunk]]
        results = client.restful(
            "composite/sobjects", method="POST", json={"allOrNone": True, "records": records}
        )
        ids.extend(r["id"] for r in results if r.get("success"))
        if rate > 0:
            time.sleep(max(0.0, len(records) / rate - (time.monotonic() - began)))
    return ids


def run_workload(client: Any, workload: Workload) -> dict[str, int]:
    """Create the workload through ``client`` (a simple-salesforce client); returns counts."""
    rng = random.Random(workload.seed)
    account_bodies = accounts(rng, workload.accounts)
    account_ids = _create(client, "Account", account_bodies, workload.rate)
    contacts = [
        {"FirstName": rng.choice(_FIRST), "LastName": rng.choice(_LAST), "Title": rng.choice(_TITLES),
         "AccountId": account_id}
        for account_id in account_ids for _ in range(rng.randint(1, 3))
    ]  # fmt: skip
    contact_ids = _create(client, "Contact", contacts, workload.rate)
    pairs = list(zip(account_ids, account_bodies, strict=False))
    opportunity_ids = _create(
        client, "Opportunity", opportunities(rng, workload.opportunities, pairs), workload.rate
    )
    lead_ids = _create(client, "Lead", leads(rng, workload.leads), workload.rate)
    return {"accounts": len(account_ids), "contacts": len(contact_ids),
            "opportunities": len(opportunity_ids), "leads": len(lead_ids)}  # fmt: skip
