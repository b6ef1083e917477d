"""A stand-in for the ecosystem's provisioning systems: one result per request.

The ~93 systems of SPEC.md are other teams' consumers of ``commands.provisioning``;
for the demo, dev tooling and tests, :func:`respond` answers a request the way such a
system would, on ``provisioning.results``. It is a pure function: the outcome (and
whether a request fails, at ``failure_rate``) depends only on the request id and a
seed, the result's id is derived from the request id and its time is the request's,
so a redelivered request is answered with the very same result. A retried request
carries a new id, so it gets a fresh draw and may succeed where the first failed.
"""

from __future__ import annotations

import hashlib

from schema_registry.events import ProvisioningFinished, ProvisioningRequested, ProvisioningStatus
from schema_registry.ids import derived_event_id

#: The topic the systems read requests from (keyed by account id).
REQUEST_TOPIC = "commands.provisioning"
#: The topic the systems report results on (keyed by account id).
RESULT_TOPIC = "provisioning.results"
#: Domain of the simulated systems' resource URLs.
DOMAIN = "ecosystem.example.com"


def source(system: str) -> str:
    """The ``source`` of a system's results: ``ecosystem.<system>``."""
    return f"ecosystem.{system}"


def fails(request_id: str, failure_rate: float, seed: str = "") -> bool:
    """Whether the request with ``request_id`` fails: a hash of id and seed below the rate."""
    if not 0.0 <= failure_rate <= 1.0:
        raise ValueError(f"failure_rate must be between 0 and 1, not {failure_rate}")
    digest = hashlib.sha256(f"{request_id}|{seed}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    return draw < failure_rate


def resource_url(request: ProvisioningRequested) -> str:
    """Where the provisioned resource lives: ``https://<system>.<domain>/<account>/<action>``."""
    host = request.system.replace("_", "-").lower()
    return f"https://{host}.{DOMAIN}/{request.account_id}/{request.action}"


def respond(
    request: ProvisioningRequested, failure_rate: float = 0.0, seed: str = ""
) -> ProvisioningFinished:
    """The result a system reports for ``request`` (deterministic; see the module doc)."""
    failed = fails(request.id, failure_rate, seed)
    what = f"{request.action} for account {request.account_id}"
    return ProvisioningFinished(
        id=derived_event_id(request.id, source(request.system), "result"),
        source=source(request.system),
        subject=request.account_id,
        time=request.time,
        causation_id=request.id,
        correlation_id=request.correlation_id,
        onboarding_id=request.onboarding_id,
        system=request.system,
        action=request.action,
        status=ProvisioningStatus.FAILED if failed else ProvisioningStatus.SUCCEEDED,
        resource_url=None if failed else resource_url(request),
        detail=(
            f"{request.system}: {what} failed (simulated outage)"
            if failed
            else f"{request.system}: {what} provisioned"
        ),
    )
