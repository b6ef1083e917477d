"""Record snapshots folded from CDC changes: merge, nulls, deletes, snapshots, idempotence."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from agents.snapshots import Snapshot, empty, evolve, value
from schema_registry.events import ChangeEventHeader, ChangeType, RecordChanged

WHEN = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
LEAD = "00Q000000000001AAA"


def change(
    change_type: ChangeType,
    fields: dict[str, Any] | None = None,
    *,
    commit: int = 1,
    nulled: tuple[str, ...] = (),
    snapshot: bool = False,
    entity: str = "Lead",
) -> RecordChanged:
    return RecordChanged(
        id=f"{change_type}-{commit}",
        source="salesforce.cdc",
        subject=LEAD,
        time=WHEN,
        header=ChangeEventHeader(
            entity_name=entity,
            record_ids=(LEAD,),
            change_type=change_type,
            change_origin="",
            transaction_key=f"tx-{commit}",
            sequence_number=1,
            commit_timestamp=WHEN,
            commit_number=commit,
            commit_user="005USER",
            changed_fields=tuple(fields or ()),
            nulled_fields=nulled,
        ),
        replay_id=str(commit),
        event_uuid=f"uuid-{commit}",
        fields=dict(fields or {}),
        is_snapshot=snapshot,
    )


CREATE = change(ChangeType.CREATE, {"Company": "Acme", "Status": "Open", "Rating": "Hot"}, commit=1)
UPDATE = change(ChangeType.UPDATE, {"Status": "Working"}, commit=2, nulled=("Rating",))


def created() -> Snapshot:
    return evolve(None, CREATE)


def test_empty_snapshot() -> None:
    assert empty("Lead") == {"entity": "Lead", "fields": {}, "deleted": False, "commit_number": 0}


def test_create_starts_the_snapshot() -> None:
    assert created() == {
        "entity": "Lead",
        "fields": {"Company": "Acme", "Status": "Open", "Rating": "Hot"},
        "deleted": False,
        "commit_number": 1,
    }


def test_gap_create_starts_the_snapshot() -> None:
    result = evolve(None, change(ChangeType.GAP_CREATE, {"Company": "Acme"}, commit=4))
    assert result == {
        "entity": "Lead",
        "fields": {"Company": "Acme"},
        "deleted": False,
        "commit_number": 4,
    }


def test_update_merges_and_nulls_fields() -> None:
    assert evolve(created(), UPDATE) == {
        "entity": "Lead",
        "fields": {"Company": "Acme", "Status": "Working", "Rating": None},
        "deleted": False,
        "commit_number": 2,
    }


def test_update_of_an_unknown_record_keeps_what_it_says() -> None:
    assert evolve(None, UPDATE) == {
        "entity": "Lead",
        "fields": {"Status": "Working", "Rating": None},
        "deleted": False,
        "commit_number": 2,
    }


def test_evolve_does_not_modify_its_input() -> None:
    before = created()
    kept = copy.deepcopy(before)
    after = evolve(before, UPDATE)
    assert before == kept
    assert after is not before
    assert after["fields"] is not before["fields"]


@pytest.mark.parametrize("kind", [ChangeType.DELETE, ChangeType.GAP_DELETE])
def test_delete_marks_the_record_deleted_and_keeps_its_fields(kind: ChangeType) -> None:
    result = evolve(created(), change(kind, commit=3))
    assert result["deleted"] is True
    assert result["fields"] == {"Company": "Acme", "Status": "Open", "Rating": "Hot"}
    assert result["commit_number"] == 3


@pytest.mark.parametrize("kind", [ChangeType.UNDELETE, ChangeType.GAP_UNDELETE])
def test_undelete_restores_the_record(kind: ChangeType) -> None:
    deleted = evolve(created(), change(ChangeType.DELETE, commit=3))
    result = evolve(deleted, change(kind, {"Status": "Open"}, commit=4))
    assert result["deleted"] is False
    assert result["commit_number"] == 4
    assert result["fields"]["Company"] == "Acme"


def test_an_update_does_not_undelete() -> None:
    deleted = evolve(created(), change(ChangeType.DELETE, commit=3))
    assert evolve(deleted, change(ChangeType.UPDATE, {"Status": "x"}, commit=4))["deleted"] is True


def test_a_snapshot_replaces_the_fields() -> None:
    after_update = evolve(created(), UPDATE)
    read = change(
        ChangeType.UPDATE, {"Company": "Acme GmbH", "Status": "Open"}, commit=5, snapshot=True
    )
    assert evolve(after_update, read) == {
        "entity": "Lead",
        "fields": {"Company": "Acme GmbH", "Status": "Open"},
        "deleted": False,
        "commit_number": 5,
    }


def test_a_snapshot_of_a_live_record_undeletes_it() -> None:
    deleted = evolve(created(), change(ChangeType.DELETE, commit=3))
    read = change(ChangeType.UPDATE, {"Company": "Acme"}, commit=4, snapshot=True)
    assert evolve(deleted, read)["deleted"] is False


def test_a_snapshot_of_a_deleted_record_deletes_it() -> None:
    read = change(ChangeType.DELETE, {}, commit=4, snapshot=True)
    assert evolve(created(), read) == {
        "entity": "Lead",
        "fields": {},
        "deleted": True,
        "commit_number": 4,
    }


@pytest.mark.parametrize(
    "step",
    [
        CREATE,
        UPDATE,
        change(ChangeType.DELETE, commit=3),
        change(ChangeType.UNDELETE, commit=3),
        change(ChangeType.UPDATE, {"Company": "Acme GmbH"}, commit=3, snapshot=True),
    ],
    ids=["create", "update", "delete", "undelete", "snapshot"],
)
def test_applying_a_change_twice_equals_once(step: RecordChanged) -> None:
    once = evolve(created(), step)
    assert evolve(once, step) == once


def test_redelivering_a_whole_history_changes_nothing() -> None:
    history = [
        CREATE,
        UPDATE,
        change(ChangeType.UPDATE, {"Rating": "Warm"}, commit=3),
        change(ChangeType.DELETE, commit=4),
        change(ChangeType.UNDELETE, commit=5),
    ]
    state: Snapshot | None = None
    for step in history:
        state = evolve(state, step)
    final = state
    for step in history:
        state = evolve(state, step)
    assert state == final
    assert final == {
        "entity": "Lead",
        "fields": {"Company": "Acme", "Status": "Working", "Rating": "Warm"},
        "deleted": False,
        "commit_number": 5,
    }


def test_an_older_change_is_ignored() -> None:
    newer = evolve(
        evolve(created(), UPDATE), change(ChangeType.UPDATE, {"Rating": "Warm"}, commit=5)
    )
    stale = change(ChangeType.UPDATE, {"Rating": "Cold", "Status": "Old"}, commit=4)
    assert evolve(newer, stale) == newer
    assert evolve(newer, change(ChangeType.DELETE, commit=3))["deleted"] is False
    assert evolve(newer, CREATE)["fields"]["Status"] == "Working"


def test_a_change_without_a_commit_number_is_applied() -> None:
    state = evolve(created(), change(ChangeType.UPDATE, {"Status": "Working"}, commit=9))
    read = change(ChangeType.UPDATE, {"Status": "Closed"}, commit=0, snapshot=True)
    result = evolve(state, read)
    assert result["fields"] == {"Status": "Closed"}
    assert result["commit_number"] == 9  # the highest seen is kept


def test_the_entity_comes_from_the_change() -> None:
    assert evolve(None, change(ChangeType.CREATE, {"Name": "A"}, entity="Account"))["entity"] == (
        "Account"
    )


def test_value() -> None:
    state = evolve(created(), UPDATE)
    assert value(state, "Status") == "Working"
    assert value(state, "Rating") is None
    assert value(state, "Missing") is None
    assert value(None, "Status") is None
    assert value({}, "Status") is None
    assert value({"entity": "Lead"}, "Status") is None
    assert value({"fields": {"Amount": 0}}, "Amount") == 0
