"""Enrichment providers: the local analysis and the HTTP client against a real local server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agents.enrichment import KEYS, HttpEnrichment, LocalEnrichment, provider_for

ACME: dict[str, Any] = {
    "Company": "Acme Corp",
    "FirstName": "Ada",
    "LastName": "Lovelace",
    "Title": "Chief Technology Officer",
    "NumberOfEmployees": 5000,
    "AnnualRevenue": 10_000_000.0,
    "Industry": "Technology",
    "Country": "Germany",
    "Website": "acme.example",
    "Tech_Stack__c": "Salesforce;AWS;Kafka",
}
SMALL: dict[str, Any] = {"Company": "Tiny Ltd", "NumberOfEmployees": 12, "Title": "Buyer"}

local = LocalEnrichment()


# --- LocalEnrichment ---------------------------------------------------------------------


def test_local_answer_for_a_well_known_lead() -> None:
    assert local.answer(ACME) == {
        "provider": "local",
        "company_intelligence": (
            "Acme Corp: enterprise; 5,000 employees; annual revenue 10,000,000; "
            "industry Technology; country Germany; web acme.example"
        ),
        "tech_stack": "AWS;Kafka;Salesforce",
        "estimated_budget": "150000",
        "decision_makers": "Ada Lovelace (Chief Technology Officer)\nCIO\nVP Procurement",
    }


def test_local_answer_for_a_lead_nothing_is_known_about() -> None:
    assert local.answer({}) == {
        "provider": "local",
        "company_intelligence": "unknown company: unknown size",
        "tech_stack": "",
        "estimated_budget": "",
        "decision_makers": "Owner / CEO",
    }


def test_local_answer_has_exactly_the_documented_keys() -> None:
    assert tuple(local.answer(ACME)) == KEYS


@pytest.mark.parametrize(
    ("employees", "band"),
    [
        (None, "unknown size"),
        (0, "small business"),
        (99, "small business"),
        (100, "mid-market"),
        (999, "mid-market"),
        (1000, "enterprise"),
        ("2500", "enterprise"),
        ("many", "unknown size"),
        (True, "unknown size"),
    ],
)
def test_size_bands(employees: Any, band: str) -> None:
    intelligence = local.answer({"Company": "Co", "NumberOfEmployees": employees})[
        "company_intelligence"
    ]
    assert intelligence.split("; ")[0] == f"Co: {band}"


@pytest.mark.parametrize(
    ("lead", "budget"),
    [
        ({"AnnualRevenue": 10_000_000.0}, "150000"),  # 1.5 % of revenue
        ({"AnnualRevenue": 1_234_567.0}, "19000"),  # 18,518.5 rounded to the thousand
        ({"AnnualRevenue": 2_000_000.0, "NumberOfEmployees": 5000}, "30000"),  # revenue first
        ({"NumberOfEmployees": 250}, "625000"),  # 2,500 per employee
        ({"NumberOfEmployees": 5000}, "5000000"),  # 12,500,000 capped
        ({"AnnualRevenue": 1_000_000_000.0}, "5000000"),  # 15,000,000 capped
        ({"AnnualRevenue": 0.0, "NumberOfEmployees": 10}, "25000"),  # no revenue: employees
        ({"Company": "Co"}, ""),
        ({"Estimated_Budget__c": 42_000.0, "AnnualRevenue": 10_000_000.0}, "42000"),
        ({"Estimated_Budget__c": "75000", "NumberOfEmployees": 5000}, "75000"),
        ({"Estimated_Budget__c": "unknown", "NumberOfEmployees": 250}, "625000"),
    ],
)
def test_budget_rule(lead: dict[str, Any], budget: str) -> None:
    assert local.answer(lead)["estimated_budget"] == budget


@pytest.mark.parametrize(
    ("title", "listed"),
    [
        ("CEO", True),
        ("Chief Revenue Officer", True),
        ("Co-Founder", True),
        ("VP Sales", True),
        ("Vice President, Engineering", True),
        ("Director of IT", True),
        ("Head of Procurement", True),
        ("Sales Manager", False),
        ("Developer", False),
        ("", False),
    ],
)
def test_decision_makers_include_the_lead_from_director_up(title: str, listed: bool) -> None:
    lead: dict[str, Any] = {
        "FirstName": "Ada",
        "LastName": "Lovelace",
        "Title": title,
        "NumberOfEmployees": 500,
    }
    makers = local.answer(lead)["decision_makers"].split("\n")
    expected = ([f"Ada Lovelace ({title})"] if listed else []) + ["Head of IT"]
    assert makers == expected


@pytest.mark.parametrize(
    ("employees", "roles"),
    [
        (5000, ["CIO", "VP Procurement"]),
        (1000, ["CIO", "VP Procurement"]),
        (150, ["Head of IT"]),
        (20, ["Owner / CEO"]),
        (None, ["Owner / CEO"]),
    ],
)
def test_decision_makers_by_company_size(employees: int | None, roles: list[str]) -> None:
    assert local.answer({"NumberOfEmployees": employees})["decision_makers"].split("\n") == roles


def test_an_unnamed_senior_lead_is_this_lead() -> None:
    assert local.answer({"Title": "CFO"})["decision_makers"] == "this lead (CFO)\nOwner / CEO"


def test_a_senior_lead_comes_before_the_roles() -> None:
    answer = local.answer({"FirstName": "Bo", "Title": "CEO", "NumberOfEmployees": 5})
    assert answer["decision_makers"] == "Bo (CEO)\nOwner / CEO"


@pytest.mark.parametrize(
    ("stack", "expected"),
    [
        ("Salesforce;AWS;Kafka", "AWS;Kafka;Salesforce"),
        ("AWS\nGCP;AWS", "AWS;GCP"),
        ("Snowflake", "Snowflake"),
        ("", ""),
        (None, ""),
    ],
)
def test_tech_stack_comes_from_the_leads_field(stack: str | None, expected: str) -> None:
    assert local.answer({"Tech_Stack__c": stack})["tech_stack"] == expected


def test_whitespace_only_tech_stack_entries_are_dropped() -> None:
    assert local.answer({"Tech_Stack__c": "AWS; Salesforce; "})["tech_stack"] == "AWS;Salesforce"


@pytest.mark.parametrize("employees", ["NaN", "inf"])
def test_a_non_finite_employee_count_does_not_raise(employees: str) -> None:
    answer = local.answer({"Company": "Co", "NumberOfEmployees": employees})
    assert answer["company_intelligence"] == "Co: unknown size"


async def test_local_enrich_answers_a_batch_in_order() -> None:
    answers = await local.enrich([ACME, SMALL, {}])
    assert answers == [local.answer(ACME), local.answer(SMALL), local.answer({})]
    assert [a["company_intelligence"].split(";")[0] for a in answers] == [
        "Acme Corp: enterprise",
        "Tiny Ltd: small business",
        "unknown company: unknown size",
    ]


def test_provider_for() -> None:
    assert isinstance(provider_for(None), LocalEnrichment)
    assert isinstance(provider_for(""), LocalEnrichment)
    http = provider_for("http://127.0.0.1:1/enrich", timeout_seconds=0.5)
    assert isinstance(http, HttpEnrichment)
    assert http.url == "http://127.0.0.1:1/enrich"
    assert http.timeout.total == 0.5


# --- HttpEnrichment against a real local server ------------------------------------------

Reply = Callable[[list[dict[str, Any]]], Awaitable[web.StreamResponse]]


@dataclass
class Service:
    """A scripted enrichment service: one reply per request, the last one repeated."""

    replies: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        return await reply(body["leads"])


def answers(**values: Any) -> Reply:
    async def reply(leads: list[dict[str, Any]]) -> web.StreamResponse:
        return web.json_response(
            {"answers": [{**values, "company_intelligence": f"{x['Company']}!"} for x in leads]}
        )

    return reply


def status(code: int) -> Reply:
    """An error status with a well-formed body, so only the status can reveal the failure."""

    async def reply(leads: list[dict[str, Any]]) -> web.StreamResponse:
        body = {"answers": [{"tech_stack": "from an error page"} for _ in leads]}
        return web.json_response(body, status=code)

    return reply


def raw(body: Any) -> Reply:
    async def reply(leads: list[dict[str, Any]]) -> web.StreamResponse:
        text = body if isinstance(body, str) else json.dumps(body)
        return web.Response(text=text, content_type="application/json")

    return reply


def stall(service: Service) -> Reply:
    async def reply(leads: list[dict[str, Any]]) -> web.StreamResponse:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(service.release.wait(), 5.0)
        return web.json_response({"answers": [{} for _ in leads]})

    return reply


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    state = Service()
    app = web.Application()
    app.router.add_post("/enrich", state.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    state.url = str(server.make_url("/enrich"))
    try:
        yield state
    finally:
        state.release.set()
        await server.close()


@pytest.fixture
async def clients() -> AsyncIterator[list[HttpEnrichment]]:
    made: list[HttpEnrichment] = []
    yield made
    for client in made:
        await client.close()


def client(
    clients: list[HttpEnrichment], url: str, attempts: int = 3, **kwargs: Any
) -> HttpEnrichment:
    made = HttpEnrichment(
        url, timeout_seconds=0.2, attempts=attempts, backoff_seconds=0.01, **kwargs
    )
    clients.append(made)
    return made


def fallback(*leads: dict[str, Any]) -> list[dict[str, str]]:
    return [{**local.answer(lead), "provider": "local (fallback)"} for lead in leads]


async def test_http_answers_are_merged_over_the_fallback(
    service: Service, clients: list[HttpEnrichment]
) -> None:
    service.replies = [answers(tech_stack="Kafka;Snowflake", estimated_budget=90000, extra=None)]
    http = client(clients, service.url, headers={"Authorization": "Bearer test"})
    result = await http.enrich([ACME, SMALL])
    assert result == [
        {
            **local.answer(ACME),
            "provider": "http",
            "company_intelligence": "Acme Corp!",
            "tech_stack": "Kafka;Snowflake",
            "estimated_budget": "90000",
        },
        {
            **local.answer(SMALL),
            "provider": "http",
            "company_intelligence": "Tiny Ltd!",
            "tech_stack": "Kafka;Snowflake",
            "estimated_budget": "90000",
        },
    ]
    assert service.requests == [{"leads": [ACME, SMALL]}]
    assert service.headers[0]["Authorization"] == "Bearer test"
    assert http.failures == 0


async def test_a_provider_field_from_the_service_is_overridden(
    service: Service, clients: list[HttpEnrichment]
) -> None:
    service.replies = [answers(provider="someone else")]
    (result,) = await client(clients, service.url).enrich([SMALL])
    assert result["provider"] == "http"


async def test_an_empty_batch_asks_nothing(service: Service, clients: list[HttpEnrichment]) -> None:
    service.replies = [answers()]
    assert await client(clients, service.url).enrich([]) == []
    assert service.requests == []


async def test_succeeds_after_two_server_errors(
    service: Service, clients: list[HttpEnrichment]
) -> None:
    service.replies = [status(500), status(500), answers(tech_stack="GCP")]
    http = client(clients, service.url, attempts=3)
    (result,) = await http.enrich([ACME])
    assert result["provider"] == "http"
    assert result["tech_stack"] == "GCP"
    assert result["company_intelligence"] == "Acme Corp!"
    assert len(service.requests) == 3
    assert http.failures == 2


async def test_falls_back_when_the_service_always_fails(
    service: Service, clients: list[HttpEnrichment]
) -> None:
    service.replies = [status(503)]
    http = client(clients, service.url, attempts=2)
    result = await http.enrich([ACME, SMALL])
    assert result == fallback(ACME, SMALL)
    assert result[0]["provider"] == "local (fallback)"
    assert len(service.requests) == 2
    assert http.failures == 2


async def test_falls_back_when_the_service_is_too_slow(
    service: Service, clients: list[HttpEnrichment]
) -> None:
    service.replies = [stall(service)]
    http = client(clients, service.url, attempts=2)
    started = time.monotonic()
    result = await http.enrich([ACME])
    elapsed = time.monotonic() - started
    assert result == fallback(ACME)
    assert http.failures == 2
    assert len(service.requests) == 2
    assert elapsed < 2.0  # two 0.2 s time-outs and a short backoff, not the 5 s stall


async def test_a_slow_first_answer_is_retried(
    service: Service, clients: list[HttpEnrichment]
) -> None:
    service.replies = [stall(service), answers(tech_stack="Azure")]
    http = client(clients, service.url, attempts=2)
    (result,) = await http.enrich([SMALL])
    assert result["provider"] == "http"
    assert result["tech_stack"] == "Azure"
    assert http.failures == 1


@pytest.mark.parametrize(
    "body",
    [
        {"answers": [{"tech_stack": "AWS"}]},  # one answer for two leads
        {"answers": [{}, {}, {}]},
        {"answers": "none"},
        {"result": []},
        [{"tech_stack": "AWS"}, {"tech_stack": "AWS"}],
        "this is not json",
    ],
)
async def test_a_malformed_answer_falls_back(
    service: Service, clients: list[HttpEnrichment], body: Any
) -> None:
    service.replies = [raw(body)]
    http = client(clients, service.url, attempts=2)
    result = await http.enrich([ACME, SMALL])
    assert result == fallback(ACME, SMALL)
    assert len(service.requests) == 2


async def test_falls_back_when_nothing_listens(clients: list[HttpEnrichment]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    http = client(clients, f"http://127.0.0.1:{port}/enrich", attempts=2)
    assert await http.enrich([SMALL]) == fallback(SMALL)
    assert http.failures == 2


async def test_uses_the_given_fallback(service: Service, clients: list[HttpEnrichment]) -> None:
    class Named(LocalEnrichment):
        name = "named"

    service.replies = [status(500)]
    http = client(clients, service.url, attempts=1, fallback=Named())
    (result,) = await http.enrich([SMALL])
    assert result == {**local.answer(SMALL), "provider": "named (fallback)"}
    assert len(service.requests) == 1


@pytest.mark.parametrize("attempts", [0, -1])
def test_attempts_below_one_are_refused(attempts: int) -> None:
    with pytest.raises(ValueError, match="attempts"):
        HttpEnrichment("http://127.0.0.1:1/enrich", attempts=attempts)


async def test_close_is_safe_before_and_after_use(
    service: Service, clients: list[HttpEnrichment]
) -> None:
    service.replies = [answers()]
    http = client(clients, service.url)
    await http.close()
    await http.enrich([SMALL])
    await http.close()
    await http.close()
    # A closed client opens a new session when used again.
    (result,) = await http.enrich([SMALL])
    assert result["provider"] == "http"
    assert len(service.requests) == 2
