"""Customer onboarding (SPEC.md Flow 3): a saga from Closed Won to a provisioned customer.

When an Opportunity becomes "Closed Won", :func:`start` plans the onboarding
(``OnboardingPlanned``), fans out one ``ProvisioningRequested`` per item of
:data:`PROVISIONING_PLAN` to the ecosystem's systems and records the run as STARTED.
The systems answer on ``provisioning.results``; :func:`on_result` marks steps done,
and :func:`on_tick` (called with an explicit clock) retries steps whose deadline
passed and gives up on a step after ``max_attempts``. When every step has ended the
saga completes: the Opportunity gets its portal URL, ``Provisioning_Status__c`` and
``Onboarding_Date__c``, the customer a welcome e-mail and the owner a kickoff Task; or,
when some step failed for good, the Opportunity records the failure and
``#onboarding-alerts`` hears about it.

The saga state is a JSON-ready dict (:data:`SagaState`) kept in a Faust table with a
JSON changelog; every function returns a new state and never modifies its argument.

Ids. Every event of a run derives its id from the **onboarding id** (itself
``run_id(AGENT, change.id)``) and a purpose unique within the run
(``provision:autohelix/create_workspace#2``, ``step:autohelix/create_workspace``,
``complete:opportunity``), not from the event that happened to cause it. So a
redelivered fact, a step completed by the result of an earlier attempt, or two
workers ticking the same saga all yield the same ids, and the sinks apply each effect
once. ``causation_id`` still names the actual cause: the Closed Won change, the
result, or (for a time-out, which has no cause event) the request that timed out.
Times are the cause's time; a time-out's events carry the tick's ``now``, which is
never part of an id.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.base import (
    COMPLETED,
    FAILED,
    PROVISIONING,
    STARTED,
    Decision,
    Derivation,
    Emission,
    run_id,
)
from agents.snapshots import Snapshot, value
from schema_registry.events import (
    ChangeType,
    Event,
    NotificationChannel,
    OnboardingPlanned,
    PlannedProvisioning,
    ProvisioningFinished,
    ProvisioningRequested,
    ProvisioningStatus,
    RecordChanged,
)
from schema_registry.ids import derived_event_id

AGENT = "agents.onboarding"
WORKFLOW = "onboarding"

#: Topic of the onboarding plans (keyed by account id).
DECISIONS = "decisions.onboarding"
#: Topic the ecosystem's systems report their results on (keyed by account id).
RESULTS = "provisioning.results"
#: Slack channel that hears about failed provisioning.
ALERT_CHANNEL = "#onboarding-alerts"
CLOSED_WON = "Closed Won"

#: Saga status while provisioning steps are outstanding.
RUNNING = "RUNNING"
#: Step statuses.
PENDING = "PENDING"
SUCCEEDED = "SUCCEEDED"
#: ``to_state`` of the workflow events between STARTED and the end of a run.
STEP_COMPLETED = "STEP_COMPLETED"
STEP_RETRIED = "STEP_RETRIED"
STEP_FAILED = "STEP_FAILED"

#: Version of the :data:`SagaState` layout (for changelogs written by older code).
STATE_VERSION = 1

_STRING_LENGTH = 255
_TEXT_LENGTH = 32_000

#: A saga's state: a JSON-ready dict (see :func:`start` for its keys).
SagaState = dict[str, Any]


@dataclass(frozen=True)
class OnboardingConfig:
    """Time-outs, retries and the addresses an onboarding uses."""

    #: Seconds a system has to report a result before the request counts as timed out.
    step_timeout_seconds: int = 120
    #: Requests sent per step (the first included) before the step fails for good.
    max_attempts: int = 3
    #: Base of the exponential back-off: after attempt ``n`` fails or times out, the
    #: next attempt waits ``retry_backoff_seconds * 2 ** (n - 1)`` longer than a step
    #: timeout for its result; after a FAILED result it is also sent that much later.
    retry_backoff_seconds: float = 5.0
    #: The success manager kickoff Task is due within this many hours of completion.
    kickoff_within_hours: int = 48
    #: Customer portals live at ``https://<subdomain>.<portal_domain>``.
    portal_domain: str = "portal.example.com"
    #: Prefix of every portal subdomain (the rest is a hash of the account id).
    portal_subdomain_prefix: str = "acct-"
    #: Success manager contact named in the welcome e-mail.
    success_manager_email: str = "success@example.com"
    #: Recipient of the welcome e-mail when the Opportunity has no owner.
    fallback_welcome_recipient: str = "onboarding@example.com"

    def backoff_seconds(self, attempt: int) -> float:
        """Extra wait after attempt number ``attempt`` (1-based) failed or timed out."""
        return self.retry_backoff_seconds * 2 ** (attempt - 1)


#: SPEC.md Flow 3's five provisioning groups, ten ``(system, action)`` tasks each.
PROVISIONING_GROUPS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "Core Infrastructure": (
        ("autohelix", "create_workspace"),
        ("apex_os", "provision_access"),
        ("neural_mesh", "configure_pipeline"),
        ("enterprise_automation", "setup_automation"),
        ("identity", "create_tenant"),
        ("sso", "configure_sso"),
        ("compute", "allocate_quota"),
        ("object_storage", "create_buckets"),
        ("network", "configure_private_network"),
        ("dns", "reserve_subdomain"),
    ),
    "AI/ML Platforms": (
        ("mlops", "deploy_gpu_cluster"),
        ("ai_business_platform", "configure_tenant"),
        ("model_registry", "create_registry"),
        ("feature_store", "create_namespace"),
        ("notebook_hub", "provision_workspace"),
        ("inference_gateway", "create_endpoint"),
        ("vector_store", "create_index"),
        ("experiment_tracking", "create_project"),
        ("training_scheduler", "allocate_queue"),
        ("ai_guardrails", "enable_policies"),
    ),
    "Business Systems": (
        ("ai_ops_studio", "activate_studio"),
        ("process_copilot", "enable_copilot"),
        ("hypervelocity_orchestrator", "configure_orchestrator"),
        ("zero_human_grid", "setup_grid"),
        ("billing", "create_billing_account"),
        ("crm_sync", "link_account"),
        ("support_desk", "create_organization"),
        ("knowledge_base", "provision_space"),
        ("customer_portal", "generate_portal"),
        ("welcome_dashboard", "populate_dashboard"),
    ),
    "Integration & APIs": (
        ("api_keys", "generate_keys"),
        ("api_gateway", "configure_access"),
        ("tree_of_life", "setup_integration"),
        ("enterprise_unified_platform", "enable_platform"),
        ("webhooks", "register_endpoints"),
        ("event_bus", "create_topics"),
        ("developer_portal", "issue_credentials"),
        ("rate_limiter", "set_quotas"),
        ("oauth_clients", "register_clients"),
        ("integration_catalog", "publish_connectors"),
    ),
    "Data & Security": (
        ("nwu_protocol", "allocate_credits"),
        ("database", "create_instances"),
        ("rbac", "configure_permissions"),
        ("monitoring", "setup_dashboards"),
        ("audit_log", "enable_audit_logging"),
        ("secrets_vault", "create_vault"),
        ("backup", "schedule_backups"),
        ("encryption", "provision_keys"),
        ("data_warehouse", "create_schema"),
        ("siem", "configure_alerts"),
    ),
}

#: Every provisioning task of an onboarding, in a fixed order (group by group).
PROVISIONING_PLAN: tuple[tuple[str, str], ...] = tuple(
    task for tasks in PROVISIONING_GROUPS.values() for task in tasks
)

_GROUP_OF = {task: group for group, tasks in PROVISIONING_GROUPS.items() for task in tasks}


def request_key(system: str, action: str) -> str:
    """The key of a step in :data:`SagaState` ``steps``: ``"system/action"``."""
    return f"{system}/{action}"


def portal_subdomain(account_id: str, config: OnboardingConfig) -> str:
    """The customer's portal subdomain: the prefix and 12 hex digits of a hash of the account.

    Stable per account (a second Closed Won deal keeps the portal), DNS-safe, and it
    does not reveal the Salesforce id.
    """
    digest = hashlib.sha256(account_id.encode()).hexdigest()[:12]
    return f"{config.portal_subdomain_prefix}{digest}"


def portal_url(state: SagaState, config: OnboardingConfig) -> str:
    """``https://<subdomain>.<portal_domain>`` of the saga's customer."""
    return f"https://{state['portal_subdomain']}.{config.portal_domain}"


def triggers(
    change: RecordChanged, snapshot: Snapshot | None, before: Snapshot | None = None
) -> bool:
    """Whether ``change`` starts an onboarding: an Opportunity that just became Closed Won.

    That is a CREATE already Closed Won, or an UPDATE naming ``StageName`` among its
    changed fields with the value "Closed Won"; our own write-backs (echoes) and
    deleted records never start one. A snapshot (``is_snapshot``: a record re-read
    after a gap, an overflow or an expired replay id) starts one only when it shows
    Closed Won and ``before`` (what the agent knew of the record until then) had another
    stage: the deal was won while its changes were missed. A snapshot of a record the
    agent never saw (a backfill of old deals) starts nothing: it may have been won, and
    onboarded, long ago.
    """
    header = change.header
    if header.entity_name != "Opportunity" or change.is_echo:
        return False
    if snapshot is not None and snapshot.get("deleted"):
        return False
    if change.is_snapshot:
        earlier = value(before, "StageName")
        return (
            earlier is not None
            and earlier != CLOSED_WON
            and change.fields.get("StageName") == CLOSED_WON
        )
    if header.change_type is ChangeType.CREATE:
        return change.fields.get("StageName") == CLOSED_WON
    if header.change_type is ChangeType.UPDATE:
        return "StageName" in header.changed_fields and change.fields.get("StageName") == CLOSED_WON
    return False


@dataclass(frozen=True)
class _RunDerivation(Derivation):
    """A :class:`Derivation` whose ids come from the run and a purpose unique in the run.

    The envelope's ``causation_id`` stays the cause's id; ``at`` (when given) replaces
    the cause's time, for time-outs observed by a tick.
    """

    run: str = ""
    at: datetime | None = None

    def id(self, purpose: str) -> str:
        """The id of the run's event for ``purpose`` (independent of the cause)."""
        if purpose in self._used:
            raise ValueError(f"{self.agent} derived two events for purpose {purpose!r}")
        self._used.add(purpose)
        return derived_event_id(self.run, self.agent, purpose)

    @property
    def time(self) -> datetime:
        """The tick's clock for a time-out, else the cause's time."""
        return self.at or self.cause.time


def _derivation(state: SagaState, cause: Event, at: datetime | None = None) -> _RunDerivation:
    return _RunDerivation(
        AGENT,
        cause,
        correlation_id=state["correlation_id"],
        run=state["onboarding_id"],
        at=at,
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def start(
    change: RecordChanged, snapshot: Snapshot | None, config: OnboardingConfig
) -> tuple[SagaState, Decision]:
    """Plan the onboarding of the opportunity in ``change`` and fan out its requests.

    ``snapshot`` is the Opportunity's snapshot including ``change``. Emits
    ``OnboardingPlanned`` (``decisions.onboarding``; ``deadline_seconds`` is each
    request's time-out), one ``ProvisioningRequested`` per :data:`PROVISIONING_PLAN`
    item (``commands.provisioning``, deadline = the change's time + the step
    time-out) and the run's STARTED transition. Account-keyed events use the
    ``AccountId`` of the snapshot; an Opportunity without one is keyed (and its
    requests addressed) by the opportunity id instead.

    The returned state holds: ``version``, ``onboarding_id``, ``opportunity_id``,
    ``account_id``, ``owner_id`` (or None), ``correlation_id``, ``status``
    (RUNNING/COMPLETED/FAILED), ``started`` and ``finished`` (ISO or None),
    ``portal_subdomain`` and ``steps``: per ``"system/action"`` the ``system``,
    ``action``, current ``request_id``, ``status`` (PENDING/SUCCEEDED/FAILED),
    ``attempts``, ``requested`` and ``deadline`` (ISO), ``resource_url`` and ``detail``.
    """
    opportunity_id = change.subject
    account = value(snapshot, "AccountId") or change.fields.get("AccountId")
    owner = value(snapshot, "OwnerId") or change.fields.get("OwnerId")
    account_id = str(account) if account else opportunity_id
    onboarding_id = run_id(AGENT, change.id)
    state: SagaState = {
        "version": STATE_VERSION,
        "onboarding_id": onboarding_id,
        "opportunity_id": opportunity_id,
        "account_id": account_id,
        "owner_id": str(owner) if owner else None,
        "correlation_id": change.correlation_id or change.id,
        "status": RUNNING,
        "started": _iso(change.time),
        "finished": None,
        "portal_subdomain": portal_subdomain(account_id, config),
        "steps": {},
    }
    derive = _derivation(state, change)
    planned = OnboardingPlanned(
        **derive.envelope("planned", account_id),
        opportunity_id=opportunity_id,
        account_id=account_id,
        tasks=tuple(PlannedProvisioning(system=s, action=a) for s, a in PROVISIONING_PLAN),
        deadline_seconds=config.step_timeout_seconds,
    )
    emissions = [Emission(DECISIONS, account_id, planned)]
    deadline = change.time + timedelta(seconds=config.step_timeout_seconds)
    for system, action in PROVISIONING_PLAN:
        key = request_key(system, action)
        request = _request(state, derive, system, action, attempt=1, deadline=deadline)
        state["steps"][key] = {
            "system": system,
            "action": action,
            "request_id": request.id,
            "status": PENDING,
            "attempts": 1,
            "requested": _iso(request.time),
            "deadline": _iso(deadline),
            "resource_url": None,
            "detail": "",
        }
        emissions.append(Emission(PROVISIONING, account_id, request))
    emissions.append(
        derive.workflow(
            "workflow:started",
            WORKFLOW,
            onboarding_id,
            None,
            STARTED,
            f"Closed Won: provisioning {len(PROVISIONING_PLAN)} tasks",
            opportunity_id,
            0,
            len(PROVISIONING_PLAN),
            account_id=account_id,
            portal_subdomain=state["portal_subdomain"],
        )
    )
    return state, Decision(tuple(emissions), "started")


def _request(
    state: SagaState,
    derive: Derivation,
    system: str,
    action: str,
    attempt: int,
    deadline: datetime,
) -> ProvisioningRequested:
    """Attempt ``attempt`` of a step's request: the same parameters on every attempt."""
    key = request_key(system, action)
    return ProvisioningRequested(
        **derive.envelope(f"provision:{key}#{attempt}", state["account_id"]),
        onboarding_id=state["onboarding_id"],
        account_id=state["account_id"],
        system=system,
        action=action,
        parameters=_parameters(state, system, action),
        deadline=deadline,
    )


def _parameters(state: SagaState, system: str, action: str) -> dict[str, str]:
    return {
        "account_id": state["account_id"],
        "opportunity_id": state["opportunity_id"],
        "portal_subdomain": state["portal_subdomain"],
        "group": _GROUP_OF.get((system, action), ""),
        # Equal on every attempt: a system may treat a retry as the request it already has.
        "idempotency_key": f"{state['onboarding_id']}/{request_key(system, action)}",
    }


def _sent(state: SagaState, step: Mapping[str, Any]) -> ProvisioningRequested:
    """The step's outstanding request as it was sent (the cause of its time-out)."""
    return ProvisioningRequested(
        id=step["request_id"],
        source=AGENT,
        subject=state["account_id"],
        time=_parse(step["requested"]),
        correlation_id=state["correlation_id"],
        onboarding_id=state["onboarding_id"],
        account_id=state["account_id"],
        system=step["system"],
        action=step["action"],
        parameters=_parameters(state, step["system"], step["action"]),
        deadline=_parse(step["deadline"]),
    )


def in_flight(state: SagaState | None) -> bool:
    """Whether the saga still waits for provisioning steps."""
    return state is not None and state.get("status") == RUNNING


def next_deadline(state: SagaState) -> datetime | None:
    """The earliest deadline of a pending step (when a tick has something to do), or None."""
    if not in_flight(state):
        return None
    pending = [_parse(s["deadline"]) for s in state["steps"].values() if s["status"] == PENDING]
    return min(pending, default=None)


def done_count(state: SagaState) -> int:
    """How many steps succeeded."""
    return sum(1 for step in state["steps"].values() if step["status"] == SUCCEEDED)


def on_result(
    state: SagaState, result: ProvisioningFinished, config: OnboardingConfig
) -> tuple[SagaState, Decision]:
    """Record a system's result; complete the saga when it was the last step outstanding.

    A result is matched to its step by onboarding id, system and action, so the result
    of any attempt counts. A SUCCEEDED result marks the step done (STEP_COMPLETED). A
    FAILED result of the step's current request (``causation_id``, when given, equal to
    the outstanding request id) fails that attempt: with attempts left the next one is
    due after the back-off (the next :func:`on_tick` sends it), otherwise the step fails
    for good. A FAILED result of an older attempt is ignored, since a newer attempt is
    in flight. A result for another saga, an unknown step, a step that already ended or
    a saga that already ended changes nothing and emits nothing, so redelivery is safe.
    """
    step = state.get("steps", {}).get(request_key(result.system, result.action))
    if (
        result.onboarding_id != state.get("onboarding_id")
        or step is None
        or not in_flight(state)
        or step["status"] != PENDING
    ):
        return state, Decision(outcome="duplicate_or_unknown")
    key = request_key(result.system, result.action)
    new = copy.deepcopy(state)
    current = new["steps"][key]
    derive = _derivation(new, result)
    if result.status == ProvisioningStatus.SUCCEEDED:
        current["status"] = SUCCEEDED
        current["resource_url"] = result.resource_url
        current["detail"] = result.detail
        done = done_count(new)
        emissions = [
            derive.workflow(
                f"step:{key}",
                WORKFLOW,
                new["onboarding_id"],
                STARTED if done == 1 else STEP_COMPLETED,
                STEP_COMPLETED,
                key,
                new["opportunity_id"],
                done,
                len(new["steps"]),
                system=result.system,
                action=result.action,
            )
        ]
        finished, closing = _finish_if_done(new, derive, result.time, config)
        outcome = finished["status"].lower() if closing else "step_done"
        return finished, Decision((*emissions, *closing), outcome)
    if result.causation_id is not None and result.causation_id != current["request_id"]:
        return state, Decision(outcome="stale_failure")
    if current["attempts"] < config.max_attempts:
        retry_at = result.time + timedelta(seconds=config.backoff_seconds(current["attempts"]))
        current["deadline"] = _iso(min(retry_at, _parse(current["deadline"])))
        current["detail"] = f"attempt {current['attempts']} failed: {result.detail}"
        return new, Decision(outcome="retry_scheduled")
    current["status"] = FAILED
    current["detail"] = f"failed after {current['attempts']} attempts: {result.detail}"
    return _after_give_up(new, {key: derive}, derive, result.time, config)


def on_tick(
    state: SagaState, now: datetime, config: OnboardingConfig
) -> tuple[SagaState, Decision]:
    """Retry pending steps whose deadline passed; give up on those out of attempts.

    A step whose deadline is at or before ``now`` is sent again as attempt ``n + 1``
    (same system, action and parameters; id derived from the onboarding id, the step
    and the attempt number; deadline ``now`` + step time-out + back-off of attempt
    ``n``; ``causation_id`` the request that timed out), or, after ``max_attempts``,
    fails for good and is reported to ``#onboarding-alerts``. Ids never depend on
    ``now``: two workers ticking the same saga emit the same ids. A tick with nothing
    due returns the state unchanged and emits nothing.
    """
    now = _aware(now)
    if not in_flight(state):
        return state, Decision(outcome="not_running")
    due = [
        key
        for key, step in state["steps"].items()
        if step["status"] == PENDING and _parse(step["deadline"]) <= now
    ]
    if not due:
        return state, Decision(outcome="nothing_due")
    new = copy.deepcopy(state)
    emissions: list[Emission] = []
    given_up: dict[str, _RunDerivation] = {}
    for key in due:
        step = new["steps"][key]
        derive = _derivation(new, _sent(new, step), at=now)
        attempt = step["attempts"]
        reason = step["detail"] or f"no result by {step['deadline']}"
        if attempt >= config.max_attempts:
            step["status"] = FAILED
            step["detail"] = f"failed after {attempt} attempts: {reason}"
            given_up[key] = derive
            continue
        deadline = now + timedelta(
            seconds=config.step_timeout_seconds + config.backoff_seconds(attempt)
        )
        request = _request(new, derive, step["system"], step["action"], attempt + 1, deadline)
        step.update(
            request_id=request.id,
            attempts=attempt + 1,
            requested=_iso(now),
            deadline=_iso(deadline),
            detail="",
        )
        emissions.append(Emission(PROVISIONING, new["account_id"], request))
        emissions.append(
            derive.workflow(
                f"retry:{key}#{attempt + 1}",
                WORKFLOW,
                new["onboarding_id"],
                None,
                STEP_RETRIED,
                f"{key}: attempt {attempt + 1} of {config.max_attempts} ({reason})",
                new["opportunity_id"],
                done_count(new),
                len(new["steps"]),
                system=step["system"],
                action=step["action"],
            )
        )
    if not given_up:
        return new, Decision(tuple(emissions), "retried")
    # The saga's end (if this tick ends it) is caused by the last step given up.
    last_cause = list(given_up.values())[-1]
    final, decision = _after_give_up(new, given_up, last_cause, now, config)
    return final, Decision((*emissions, *decision.emissions), decision.outcome)


def _after_give_up(
    state: SagaState,
    given_up: Mapping[str, _RunDerivation],
    derive: _RunDerivation,
    at: datetime,
    config: OnboardingConfig,
) -> tuple[SagaState, Decision]:
    """Steps ``given_up`` (each with its cause) just failed for good.

    Each gets STEP_FAILED, and an alert of its own unless the saga ends now (then the
    final alert, derived by ``derive``, names every failed step).
    """
    finished, closing = _finish_if_done(state, derive, at, config)
    emissions: list[Emission] = []
    for key, cause in given_up.items():
        step = state["steps"][key]
        emissions.append(
            cause.workflow(
                f"step-failed:{key}",
                WORKFLOW,
                state["onboarding_id"],
                None,
                STEP_FAILED,
                f"{key}: {step['detail']}",
                state["opportunity_id"],
                done_count(state),
                len(state["steps"]),
                system=step["system"],
                action=step["action"],
            )
        )
        if not closing:
            # While the saga runs on, say so per step; the final alert names them all.
            emissions.append(
                cause.notify(
                    f"alert:{key}",
                    state["opportunity_id"],
                    NotificationChannel.SLACK,
                    ALERT_CHANNEL,
                    "onboarding_step_failed",
                    f"Provisioning step failed: {key}",
                    _clip(
                        f"Onboarding {state['onboarding_id']} of opportunity "
                        f"{state['opportunity_id']} (account {state['account_id']}): "
                        f"{key} {step['detail']}. The other steps continue.",
                        _TEXT_LENGTH,
                    ),
                    {"onboarding_id": state["onboarding_id"], "step": key},
                )
            )
    outcome = "failed" if closing else "step_failed"
    return finished, Decision((*emissions, *closing), outcome)


def _finish_if_done(
    state: SagaState, derive: _RunDerivation, at: datetime, config: OnboardingConfig
) -> tuple[SagaState, tuple[Emission, ...]]:
    """Complete or fail ``state`` (modified in place) if no step is pending any more."""
    steps = state["steps"]
    if any(step["status"] == PENDING for step in steps.values()):
        return state, ()
    state["finished"] = _iso(at)
    failed = [key for key, step in steps.items() if step["status"] == FAILED]
    if failed:
        state["status"] = FAILED
        return state, _failure(state, derive, failed)
    state["status"] = COMPLETED
    return state, _completion(state, derive, at, config)


def _completion(
    state: SagaState, derive: _RunDerivation, at: datetime, config: OnboardingConfig
) -> tuple[Emission, ...]:
    """Portal URL and status to the Opportunity, welcome e-mail, kickoff Task, COMPLETED."""
    opportunity = state["opportunity_id"]
    url = portal_url(state, config)
    completed_on = at.astimezone(UTC).date()
    kickoff_on = (at + timedelta(hours=config.kickoff_within_hours)).astimezone(UTC).date()
    total = len(state["steps"])
    guide = f"{url}/getting-started"
    training = f"{url}/training"
    update = derive.update(
        "complete:opportunity",
        "Opportunity",
        opportunity,
        {
            "Provisioning_Status__c": "Complete",
            "Portal_URL__c": _clip(url, _STRING_LENGTH),
            "Onboarding_Date__c": completed_on.isoformat(),
        },
    )
    welcome = derive.notify(
        "complete:welcome",
        opportunity,
        NotificationChannel.EMAIL,
        state["owner_id"] or config.fallback_welcome_recipient,
        "onboarding_welcome",
        "Welcome: your portal is ready",
        _clip(
            f"Your environment is provisioned ({total} of {total} services ready).\n"
            f"Portal (single sign-on): {url}\n"
            f"Getting started guide: {guide}\n"
            f"Training materials: {training}\n"
            f"Your success manager: {config.success_manager_email}; "
            f"a kickoff is scheduled by {kickoff_on.isoformat()}.",
            _TEXT_LENGTH,
        ),
        {
            "portal_url": url,
            "getting_started_url": guide,
            "training_url": training,
            "success_manager": config.success_manager_email,
            "account_id": state["account_id"],
            "opportunity_id": opportunity,
        },
    )
    task_fields: dict[str, str] = {
        "Subject": "Success manager kickoff",
        "Description": _clip(
            f"Onboarding complete: {total} services provisioned. Portal: {url}. "
            f"Hold the kickoff within {config.kickoff_within_hours} hours.",
            _TEXT_LENGTH,
        ),
        "Status": "Not Started",
        "Priority": "High",
        "ActivityDate": kickoff_on.isoformat(),
        "WhatId": opportunity,
    }
    if state["owner_id"]:
        task_fields["OwnerId"] = state["owner_id"]
    kickoff = derive.create("complete:kickoff", "Task", opportunity, task_fields)
    done = derive.workflow(
        "workflow:completed",
        WORKFLOW,
        state["onboarding_id"],
        STEP_COMPLETED,
        COMPLETED,
        f"{total} of {total} steps provisioned; portal {url}",
        opportunity,
        total,
        total,
        portal_url=url,
    )
    return update, welcome, kickoff, done


def _failure(state: SagaState, derive: _RunDerivation, failed: list[str]) -> tuple[Emission, ...]:
    """The failure to the Opportunity, an alert naming the failed steps, FAILED."""
    opportunity = state["opportunity_id"]
    total = len(state["steps"])
    summary = f"Failed: {len(failed)} of {total} steps"
    update = derive.update(
        "failed:opportunity",
        "Opportunity",
        opportunity,
        {"Provisioning_Status__c": _clip(summary, _STRING_LENGTH)},
    )
    lines = "\n".join(f"- {key}: {state['steps'][key]['detail']}" for key in failed)
    alert = derive.notify(
        "failed:alert",
        opportunity,
        NotificationChannel.SLACK,
        ALERT_CHANNEL,
        "onboarding_failed",
        f"Onboarding failed: {len(failed)} of {total} steps",
        _clip(
            f"Onboarding {state['onboarding_id']} of opportunity {opportunity} "
            f"(account {state['account_id']}) failed; these steps did not provision:\n{lines}",
            _TEXT_LENGTH,
        ),
        {
            "onboarding_id": state["onboarding_id"],
            "account_id": state["account_id"],
            "failed_steps": _clip(",".join(failed), _TEXT_LENGTH),
        },
    )
    ended = derive.workflow(
        "workflow:failed",
        WORKFLOW,
        state["onboarding_id"],
        None,
        FAILED,
        _clip(f"{summary}: {', '.join(failed)}", _STRING_LENGTH),
        opportunity,
        done_count(state),
        total,
    )
    return update, alert, ended


def _clip(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def state_from_plan(planned: OnboardingPlanned, config: OnboardingConfig) -> SagaState:
    """The saga state :func:`start` returned, rebuilt from its ``OnboardingPlanned`` event.

    The saga is tracked by an agent keyed by account (as its requests and results are),
    which sees the plan rather than the opportunity change. Everything :func:`start`
    put in the state follows from the plan (ids are derived from the onboarding id,
    itself derived from the plan's cause) except the opportunity owner, which the plan
    does not carry: the welcome e-mail then goes to ``fallback_welcome_recipient`` and
    the kickoff task to the integration user.
    """
    if planned.causation_id is None:
        raise ValueError(f"OnboardingPlanned {planned.id} names no cause")
    onboarding_id = run_id(AGENT, planned.causation_id)
    deadline = planned.time + timedelta(seconds=planned.deadline_seconds)
    state: SagaState = {
        "version": STATE_VERSION,
        "onboarding_id": onboarding_id,
        "opportunity_id": planned.opportunity_id,
        "account_id": planned.account_id,
        "owner_id": None,
        "correlation_id": planned.correlation_id or planned.causation_id,
        "status": RUNNING,
        "started": _iso(planned.time),
        "finished": None,
        "portal_subdomain": portal_subdomain(planned.account_id, config),
        "steps": {},
    }
    for task in planned.tasks:
        key = request_key(task.system, task.action)
        state["steps"][key] = {
            "system": task.system,
            "action": task.action,
            "request_id": derived_event_id(onboarding_id, AGENT, f"provision:{key}#1"),
            "status": PENDING,
            "attempts": 1,
            "requested": _iso(planned.time),
            "deadline": _iso(deadline),
            "resource_url": None,
            "detail": "",
        }
    return state
