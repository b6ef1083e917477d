"""The simulated ecosystem answers provisioning requests deterministically."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schema_registry.codec import Codec
from schema_registry.events import ProvisioningRequested, ProvisioningStatus
from schema_registry.ids import derived_event_id
from simulator import ecosystem

T0 = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
ACCOUNT = "001000000000001AAA"


def request(
    n: int = 0, system: str = "apex_os", action: str = "provision_access"
) -> ProvisioningRequested:
    return ProvisioningRequested(
        id=f"request-{n}",
        source="agents.onboarding",
        subject=ACCOUNT,
        time=T0,
        causation_id="change-1",
        correlation_id="flow-1",
        onboarding_id="onboarding-1",
        account_id=ACCOUNT,
        system=system,
        action=action,
        parameters={"account_id": ACCOUNT},
        deadline=T0 + timedelta(seconds=120),
    )


def test_a_result_answers_its_request() -> None:
    result = ecosystem.respond(request())
    assert result.id == derived_event_id("request-0", "ecosystem.apex_os", "result")
    assert result.source == "ecosystem.apex_os"
    assert result.subject == ACCOUNT
    assert result.time == T0
    assert result.causation_id == "request-0"
    assert result.correlation_id == "flow-1"
    assert result.onboarding_id == "onboarding-1"
    assert (result.system, result.action) == ("apex_os", "provision_access")
    assert result.status is ProvisioningStatus.SUCCEEDED
    assert result.resource_url == (
        "https://apex-os.ecosystem.example.com/001000000000001AAA/provision_access"
    )
    assert result.detail == "apex_os: provision_access for account 001000000000001AAA provisioned"
    Codec().encode(ecosystem.RESULT_TOPIC, result)


def test_the_same_request_gets_the_same_result() -> None:
    assert ecosystem.respond(request(7), 0.5, "s") == ecosystem.respond(request(7), 0.5, "s")


def test_a_failure_has_no_resource_url() -> None:
    result = ecosystem.respond(request(), failure_rate=1.0)
    assert result.status is ProvisioningStatus.FAILED
    assert result.resource_url is None
    assert "failed" in result.detail


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3, 1.0])
def test_the_failure_rate_is_honoured_over_many_requests(rate: float) -> None:
    failures = sum(
        ecosystem.respond(request(n), rate, "seed").status is ProvisioningStatus.FAILED
        for n in range(1000)
    )
    assert abs(failures - rate * 1000) <= 45


def test_the_seed_changes_which_requests_fail() -> None:
    def failing(seed: str) -> set[int]:
        return {n for n in range(200) if ecosystem.fails(f"request-{n}", 0.5, seed)}

    assert failing("a") == failing("a")
    assert failing("a") != failing("b")


def test_a_rate_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="failure_rate"):
        ecosystem.respond(request(), failure_rate=1.5)


def test_topic_names() -> None:
    assert ecosystem.REQUEST_TOPIC == "commands.provisioning"
    assert ecosystem.RESULT_TOPIC == "provisioning.results"
