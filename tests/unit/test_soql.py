"""The SOQL subset parser and evaluator of the org simulator, without a server."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.errors import SalesforceError
from simulator.events import EventBus
from simulator.org import Org
from simulator.query import page, run
from simulator.soql import BoolOp, Comparison, DateRange, date_literal, parse
from simulator.storage import MemoryRecorder

USER = "0058d0000000001AAA"


def new_org() -> Org:
    """An empty in-memory org whose only record is the user with id ``USER``."""
    org = Org(EventBus(3600), MemoryRecorder())
    org.records["User"][USER] = {"Id": USER, "IsDeleted": False, "Username": "u@x.com"}
    return org


def test_parse_full_statement() -> None:
    query = parse(
        "SELECT Id, Account.Name, Owner.Email FROM Contact "
        "WHERE (LastName = 'O\\'Brien' OR Email LIKE '%@x.com') AND NOT Title IN ('CEO', 'CTO') "
        "ORDER BY LastName DESC NULLS LAST, Id LIMIT 10 OFFSET 5"
    )
    assert query.sobject == "Contact"
    assert query.fields == [("Id",), ("Account", "Name"), ("Owner", "Email")]
    assert isinstance(query.where, BoolOp) and query.where.op == "and"
    left, right = query.where.operands
    assert left.operands[0] == Comparison(("LastName",), "=", "O'Brien")
    assert right == BoolOp("not", (Comparison(("Title",), "in", ["CEO", "CTO"]),))
    assert query.order_by == [(("LastName",), True, True), (("Id",), False, False)]
    assert (query.limit, query.offset) == (10, 5)


def test_date_literals() -> None:
    today = date(2026, 3, 10)
    assert date_literal("TODAY", today) == DateRange(date(2026, 3, 10), date(2026, 3, 11))
    assert date_literal("LAST_N_DAYS:7", today) == DateRange(date(2026, 3, 3), date(2026, 3, 11))
    assert date_literal("YESTERDAY", today) == DateRange(date(2026, 3, 9), date(2026, 3, 10))
    assert date_literal("NEXT_N_DAYS:2", today) == DateRange(date(2026, 3, 11), date(2026, 3, 13))
    assert date_literal("SOMEDAY", today) is None
    assert date_literal("THIS_MONTH", today) == DateRange(date(2026, 3, 1), date(2026, 4, 1))
    assert date_literal("LAST_MONTH", date(2026, 1, 15)) == DateRange(
        date(2025, 12, 1), date(2026, 1, 1)
    )
    assert date_literal("THIS_WEEK", today) == DateRange(date(2026, 3, 8), date(2026, 3, 15))
    assert date_literal("N_DAYS_AGO:3", today) == DateRange(date(2026, 3, 7), date(2026, 3, 8))
    assert date_literal("LAST_N_DAYS:x", today) is None


@pytest.mark.parametrize(
    "text",
    ["SELECT FROM Lead", "SELECT Id Lead", "SELECT Id FROM Lead WHERE", "SELECT Id FROM Lead LIMIT x",
     "SELECT Id FROM Lead WHERE Name = ", "SELECT Id FROM Lead WHERE (Name = 'a'", "SELECT Id FROM Lead ORDER"],
)  # fmt: skip
def test_malformed_queries(text: str) -> None:
    with pytest.raises(SalesforceError) as raised:
        parse(text)
    assert raised.value.error_code == "MALFORMED_QUERY"


@pytest.fixture
def org() -> Org:
    org = new_org()
    with org.transaction(USER, "test") as tx:
        account = tx.create("Account", {"Name": "Acme"})
        for index, (name, revenue) in enumerate(
            [("Ann", 10.0), ("Bob", None), ("Cy", 30.0), ("Di", 20.0)]
        ):
            tx.create("Lead", {"LastName": name, "Company": "Co", "AnnualRevenue": revenue,
                               "Rating": ["Hot", "Cold"][index % 2]})  # fmt: skip
        tx.create("Contact", {"LastName": "Linked", "AccountId": account})
        tx.create("Contact", {"LastName": "Alone"})
    return org


def names(org: Org, text: str) -> list[str]:
    records, _ = page(org, run(org, text), 100, "62.0")
    return [r["LastName"] for r in records]


def test_filters_and_ordering(org: Org) -> None:
    assert names(org, "SELECT LastName FROM Lead ORDER BY AnnualRevenue") == [
        "Bob",
        "Ann",
        "Di",
        "Cy",
    ]
    assert names(org, "SELECT LastName FROM Lead ORDER BY AnnualRevenue DESC") == [
        "Cy",
        "Di",
        "Ann",
        "Bob",
    ]
    assert names(org, "SELECT LastName FROM Lead WHERE AnnualRevenue > 10 ORDER BY LastName") == [
        "Cy",
        "Di",
    ]
    assert names(org, "SELECT LastName FROM Lead WHERE AnnualRevenue = null") == ["Bob"]
    assert names(
        org,
        "SELECT LastName FROM Lead WHERE AnnualRevenue != null AND (Rating = 'hot' OR LastName LIKE 'd%') ORDER BY LastName",
    ) == ["Ann", "Cy", "Di"]
    assert names(
        org, "SELECT LastName FROM Lead WHERE LastName NOT IN ('Ann','Bob') ORDER BY LastName"
    ) == ["Cy", "Di"]
    assert names(
        org,
        "SELECT LastName FROM Lead WHERE CreatedDate = TODAY AND CreatedDate > YESTERDAY ORDER BY LastName LIMIT 2 OFFSET 1",
    ) == ["Bob", "Cy"]


def test_relationship_paths(org: Org) -> None:
    records, _ = page(
        org, run(org, "SELECT LastName, Account.Name FROM Contact ORDER BY LastName"), 10, "62.0"
    )
    assert records[0]["Account"] is None
    assert records[1]["Account"]["Name"] == "Acme"
    assert records[1]["Account"]["attributes"]["type"] == "Account"
    assert names(org, "SELECT LastName FROM Contact WHERE Account.Name = 'Acme'") == ["Linked"]


def test_unknown_fields_and_objects(org: Org) -> None:
    with pytest.raises(SalesforceError) as field:
        run(org, "SELECT Foo FROM Lead")
    assert field.value.error_code == "INVALID_FIELD"
    with pytest.raises(SalesforceError) as relation:
        run(org, "SELECT Nope.Name FROM Contact")
    assert relation.value.error_code == "INVALID_FIELD"
    with pytest.raises(SalesforceError) as obj:
        run(org, "SELECT Id FROM Widget__c")
    assert obj.value.error_code == "INVALID_TYPE"


@given(
    st.lists(st.integers(min_value=-1000, max_value=1000), min_size=1, max_size=30),
    st.integers(-1000, 1000),
)
def test_numeric_filter_matches_python(numbers: list[int], threshold: int) -> None:
    org = new_org()
    with org.transaction(USER, "test") as tx:
        for number in numbers:
            tx.create(
                "Lead", {"LastName": str(number), "Company": "Co", "NumberOfEmployees": number}
            )
    found = names(org, f"SELECT LastName FROM Lead WHERE NumberOfEmployees >= {threshold}")
    assert sorted(found) == sorted(str(n) for n in numbers if n >= threshold)


def test_fifteen_character_ids_match(org: Org) -> None:
    linked = next(r for r in org.records["Contact"].values() if r["LastName"] == "Linked")
    short_account = linked["AccountId"][:15]
    assert names(org, f"SELECT LastName FROM Contact WHERE AccountId = '{short_account}'") == [
        "Linked"
    ]
    assert names(org, f"SELECT LastName FROM Contact WHERE Id IN ('{linked['Id'][:15]}')") == [
        "Linked"
    ]


def test_parent_to_child_subqueries(org: Org) -> None:
    with org.transaction(USER, "test") as tx:
        account = next(iter(org.records["Account"]))
        tx.create("Contact", {"LastName": "Another", "AccountId": account})
        tx.create("Account", {"Name": "Empty"})
    text = (
        "SELECT Name, (SELECT LastName FROM Contacts WHERE LastName != 'Nobody' ORDER BY LastName LIMIT 5) "
        "FROM Account ORDER BY Name"
    )
    records, _ = page(org, run(org, text), 10, "62.0")
    acme, empty = records
    assert acme["Contacts"]["totalSize"] == 2 and acme["Contacts"]["done"] is True
    assert [c["LastName"] for c in acme["Contacts"]["records"]] == ["Another", "Linked"]
    assert acme["Contacts"]["records"][0]["attributes"]["type"] == "Contact"
    assert empty["Contacts"] is None
    for bad in ("SELECT Name, (SELECT LastName FROM Widgets) FROM Account",
                "SELECT Name, (SELECT Nope FROM Contacts) FROM Account"):  # fmt: skip
        with pytest.raises(SalesforceError):
            run(org, bad)
    with pytest.raises(SalesforceError) as nested:
        parse("SELECT Id, (SELECT Id, (SELECT Id FROM Tasks) FROM Contacts) FROM Account")
    assert nested.value.error_code == "MALFORMED_QUERY"


def test_aggregates_and_group_by(org: Org) -> None:
    def rows(text: str) -> list[dict[str, object]]:
        return page(org, run(org, text), 100, "62.0")[0]

    (total,) = rows(
        "SELECT COUNT(Id), SUM(AnnualRevenue) total, AVG(AnnualRevenue), MAX(LastName) FROM Lead"
    )
    assert total == {
        "attributes": {"type": "AggregateResult"},
        "expr0": 4,
        "total": 60.0,
        "expr1": 20.0,
        "expr2": "Di",
    }
    grouped = rows(
        "SELECT Rating, COUNT(Id) n, MIN(AnnualRevenue) FROM Lead GROUP BY Rating ORDER BY Rating DESC"
    )
    assert [(r["Rating"], r["n"], r["expr0"]) for r in grouped] == [
        ("Hot", 2, 10.0),
        ("Cold", 2, 20.0),
    ]
    assert rows("SELECT COUNT_DISTINCT(Company) FROM Lead")[0]["expr0"] == 1
    cursor = run(org, "SELECT Rating, COUNT(Id) FROM Lead GROUP BY Rating LIMIT 1")
    assert cursor.size == 1
    with pytest.raises(SalesforceError) as ungrouped:
        run(org, "SELECT LastName, COUNT(Id) FROM Lead")
    assert ungrouped.value.error_code == "MALFORMED_QUERY"
    with pytest.raises(SalesforceError) as unknown:
        run(org, "SELECT SUM(Nope__c) FROM Lead")
    assert unknown.value.error_code == "INVALID_FIELD"
