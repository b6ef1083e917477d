"""Salesforce id shapes of the org simulator: checksums, round trips, allocation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator import ids


def test_known_checksum() -> None:
    # A documented example: 001A0000006Vm9r -> 001A0000006Vm9rIAC
    assert ids.normalize("001A0000006Vm9r") == "001A0000006Vm9rIAC"
    assert ids.normalize("001A0000006Vm9rIAC") == "001A0000006Vm9rIAC"


@given(
    st.integers(min_value=1, max_value=62**9 - 1),
    st.sampled_from(sorted(ids.KEY_PREFIXES.values())),
)
def test_generated_ids_round_trip(counter: int, prefix: str) -> None:
    record_id = ids.make_id(prefix, counter)
    assert len(record_id) == 18
    assert ids.normalize(record_id) == record_id
    assert ids.normalize(record_id[:15]) == record_id


@pytest.mark.parametrize("bad", ["", "123", "001A0000006Vm9rXXX", "001A0000006Vm9r!", None, 5])
def test_malformed_ids(bad: object) -> None:
    with pytest.raises(ids.MalformedId):
        ids.normalize(bad)


def test_allocator_continues_after_restart() -> None:
    first = ids.IdAllocator()
    used = [first.next("00Q") for _ in range(5)]
    second = ids.IdAllocator()
    second.advance_past(used[-1])
    assert second.next("00Q") not in used
