"""The opportunity agent on the transactional batch path: no insight lost, snapshots kept.

Every opportunity is created with its whole record and then moved to another stage by an
UPDATE that names ``StageName`` only, so the second insight is right only when the agent
decides it from the snapshot the CREATE left, whichever process, restarted or new, holds
the opportunity's partition by then.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest

from schema_registry.events import ChangeType, Event, OpportunityInsightsComputed
from sfe.settings import Settings
from tests.ports import free_port
from tests.workers.support import WorkerProcess, append, change, read_events, wait_for_samples

pytestmark = pytest.mark.integration

ACCOUNT = "001000000000ACCAAA"
OWNER = "005000000000OWNAAA"
SETTINGS = {"SFE_WORKER_BATCH_SIZE": "40", "SFE_WORKER_BATCH_WAIT_MS": "50"}


def opportunity_id(index: int) -> str:
    return f"006{index:012d}AAA"


def amount(index: int) -> float:
    return 10_000.0 + 250.0 * index


def created(index: int) -> Event:
    return change(
        "Opportunity",
        opportunity_id(index),
        ChangeType.CREATE,
        {
            "Name": f"Deal {index}",
            "AccountId": ACCOUNT,
            "OwnerId": OWNER,
            "StageName": "Prospecting",
            "Amount": amount(index),
            "CloseDate": "2027-03-31",
            "Type": "New Business",
            "LeadSource": "Web",
        },
    )


def moved(index: int) -> Event:
    return change(
        "Opportunity", opportunity_id(index), ChangeType.UPDATE, {"StageName": "Qualification"}
    )


def insights(stack: Settings, prefix: str, count: int, timeout: float) -> list[Event]:
    return read_events(
        stack, prefix, "decisions.opportunities", lambda e: len(e) >= count, timeout, settle=3
    )


def assert_once_each_from_the_whole_record(found: list[Event], total: int) -> None:
    """Two insights per opportunity, no id twice, the second one with the CREATE's amount."""
    ids = Counter(event.id for event in found)
    assert len(found) == 2 * total, f"{len(found)} committed insights for {2 * total} changes"
    assert max(ids.values()) == 1
    for index in range(total):
        mine = [e for e in found if e.subject == opportunity_id(index)]
        assert len(mine) == 2, f"{opportunity_id(index)} has {len(mine)} insights"
        for insight in mine:
            assert isinstance(insight, OpportunityInsightsComputed)
            assert insight.features["amount"] == amount(index), insight.features


def test_sigkill_mid_stream_loses_no_insight_and_keeps_the_snapshots(
    stack: Settings, prefix: str, spawn: Callable[..., WorkerProcess]
) -> None:
    total = 400
    append(stack, prefix, "sf.cdc.Opportunity", [created(i) for i in range(total)])
    append(stack, prefix, "sf.cdc.Opportunity", [moved(i) for i in range(total)])

    first = spawn("worker", "--role", "opportunities", **SETTINGS)
    partial = read_events(
        stack, prefix, "decisions.opportunities", lambda e: len(e) >= 150, timeout=120
    )
    first.kill()
    assert 150 <= len(partial) < 2 * total, "the worker must be killed mid-stream"

    spawn("worker", "--role", "opportunities", **SETTINGS)
    assert_once_each_from_the_whole_record(insights(stack, prefix, 2 * total, 240), total)


def test_a_joining_worker_decides_from_the_snapshots_of_the_partitions_it_takes(
    stack: Settings, prefix: str, spawn: Callable[..., WorkerProcess]
) -> None:
    total = 60
    append(stack, prefix, "sf.cdc.Opportunity", [created(i) for i in range(total)])
    first_port, second_port = free_port(), free_port()
    spawn("worker", "--role", "opportunities", SFE_METRICS_PORT=str(first_port), **SETTINGS)
    assert len(insights(stack, prefix, total, 120)) == total

    # The second worker joins the group: the partitions it is given carry their snapshots.
    spawn("worker", "--role", "opportunities", SFE_METRICS_PORT=str(second_port), **SETTINGS)
    held = wait_for_samples(second_port, "sfe_state_partitions", timeout=90, state="opportunities")
    deadline = time.monotonic() + 90
    while not (held and held[0].value > 0) and time.monotonic() < deadline:
        time.sleep(1)
        held = wait_for_samples(second_port, "sfe_state_partitions", state="opportunities")
    assert held and held[0].value > 0, "the joining worker was given no partition"
    append(stack, prefix, "sf.cdc.Opportunity", [moved(i) for i in range(total)])
    assert_once_each_from_the_whole_record(insights(stack, prefix, 2 * total, 120), total)
    for port in (first_port, second_port):
        samples = wait_for_samples(
            port, "sfe_operations", component="opportunities", outcome="success"
        )
        decided = [s.value for s in samples if s.name == "sfe_operations_total"]
        assert decided and decided[0] > 0, f"the worker on {port} decided nothing"
