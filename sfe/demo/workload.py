"""The demo's workload: records created and changed in the org simulator, usage in Kafka.

Everything goes through the public interfaces the real systems use: the org through its
REST API (sObject Collections, via simple-salesforce, with the client name
``sfe-demo-workload`` so the pipeline does not take the changes for its own echoes),
usage signals as ``UsageSignalReported`` events on ``usage.signals``, the churn batch as
``sfe churn run``. Over ``duration`` seconds:

- at the start, accounts (three senior AEs own them) with two open opportunities each,
  and 30 days of usage signals per account: declining accounts show falling activity,
  tickets, late payments and poor NPS in proportion to a random severity, growing ones
  full seats and headcount growth;
- new leads throughout, in three phases of a third of the time each, at half the rate,
  the rate and twice the rate (batches of up to 200 leads per call);
- stage changes of open opportunities (mostly forward, some back) in waves between 10 %
  and 80 % of the time, and deals won (each on its own account) at 30 % and 60 %;
- the churn and upsell batch at 60 % (``sfe churn run`` takes some seconds).

All of it is deterministic per seed except the time it happens at; the counts the
demo's summary is checked against (leads created, stage changes, insight runs
expected, deals won) are kept in :class:`WorkloadStats`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from confluent_kafka import Producer
from simple_salesforce import Salesforce

from schema_registry.codec import Codec
from schema_registry.events import UsageSignalReported
from sfe.kafka_security import client_config
from simulator import load
from simulator.config import SimConfig
from simulator.schema import STAGES
from streams.salesforce.auth import SalesforceAuthConfig
from streams.salesforce.rest import connect, http_session

log = logging.getLogger(__name__)

#: The workload's client name in ``Sforce-Call-Options`` (the pipeline's is another).
CLIENT_NAME = "sfe-demo-workload"
USAGE_TOPIC = "usage.signals"
USAGE_SYSTEM = "demo-ecosystem"
OPEN_STAGES = tuple(stage for stage in STAGES if not stage.startswith("Closed"))
CLOSED_WON = "Closed Won"
MAX_RECORDS = 200
#: Share of new leads that are senior buyers at large companies (referrals, inbound).
HOT_SHARE = 0.15
#: Values of the ``Tech_Stack__c`` picklist (simulator/schema.py).
_TECHNOLOGIES = ("Salesforce", "AWS", "Azure", "GCP", "Snowflake", "Kafka", "Python", "Java",
                 "SAP", "HubSpot")  # fmt: skip
_HOT_TITLES = ("CTO", "CEO", "VP Engineering", "VP Sales", "Head of Data", "Director of IT")
_API_PATH = "/services/data/v"


def hot_lead(rng: random.Random) -> dict[str, Any]:
    """Fields of a strong lead: a senior title at a large company, referred or inbound."""
    employees = rng.randint(1500, 20000)
    return {
        "Title": rng.choice(_HOT_TITLES),
        "NumberOfEmployees": employees,
        "AnnualRevenue": round(employees * rng.uniform(120_000, 250_000), -3),
        "Industry": rng.choice(("Technology", "Finance", "Healthcare")),
        "LeadSource": rng.choice(("Partner Referral", "Web")),
        "Tech_Stack__c": ";".join(sorted(rng.sample(_TECHNOLOGIES, rng.randint(3, 6)))),
    }


class ApiCallCounter:
    """Counts the calls a client spends from the org's daily API budget.

    A ``requests`` response hook: every answered ``/services/data`` request counts,
    except refusals that the org does not charge (an invalid session, a spent budget).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Response hook: count ``response`` if the org charged it."""
        if _API_PATH not in response.url or response.status_code == 401:
            return
        if response.status_code == 403 and "REQUEST_LIMIT_EXCEEDED" in response.text:
            return
        with self._lock:
            self.calls += 1


#: The senior AEs the demo's org starts with (they own the accounts and opportunities).
SENIOR_AES = (("Maya", "Okafor"), ("Tom", "Lindqvist"), ("Priya", "Raman"))


def seed_org(config: SimConfig, id_base: int) -> list[str]:
    """Create the simulator's SQLite state with three senior AEs; return their user ids.

    The org's record ids count up from ``id_base`` (the seeded users are the highest
    ids when the simulator starts, and it continues after them). A fresh simulator
    would otherwise start every demo at the same ids, and rows of an earlier run in
    the shared read models (``ml_predictions``, ``workflow_executions``, keyed by
    ids derived from record ids) would stand in for this run's.
    """
    from simulator.ids import make_id
    from simulator.state import build

    simulator = build(config)
    try:
        simulator.org.ids.advance_past(make_id("005", id_base))
        with simulator.org.transaction(simulator.user_id(), "") as tx:
            users = [
                tx.create(
                    "User",
                    {
                        "Username": f"{first.lower()}.{last.lower()}@sfe-demo.local",
                        "FirstName": first,
                        "LastName": last,
                        "Email": f"{first.lower()}.{last.lower()}@sfe-demo.local",
                        "Alias": (first[0] + last[:4]).lower(),
                        "Title": "Senior Account Executive",
                    },
                )
                for first, last in SENIOR_AES
            ]
    finally:
        close = getattr(simulator.recorder, "close", None)
        if close is not None:
            close()
    return users


def auth_config(config: SimConfig, ca_file: str) -> SalesforceAuthConfig:
    """Login settings for the demo's own client of the simulator ``config`` describes."""
    return SalesforceAuthConfig(
        login_url=config.base_url,
        client_id=config.app.client_id,
        client_secret=config.app.client_secret,
        username=config.username,
        password=config.password,
        api_version=config.api_version,
        ca_bundle=Path(ca_file),
        call_options_client=CLIENT_NAME,
    )


def connect_counted(config: SalesforceAuthConfig) -> tuple[Salesforce, ApiCallCounter]:
    """A logged-in client whose API calls are counted."""
    counter = ApiCallCounter()
    session = http_session(config)
    session.hooks["response"].append(counter)
    return connect(config, session), counter


def collection(
    sf: Salesforce, method: str, sobject: str, rows: Sequence[dict[str, Any]]
) -> list[str]:
    """Create (POST) or update (PATCH) ``rows`` in calls of up to 200, all or none each."""
    ids: list[str] = []
    for start in range(0, len(rows), MAX_RECORDS):
        records = [
            {"attributes": {"type": sobject}, **row} for row in rows[start : start + MAX_RECORDS]
        ]
        answer: list[dict[str, Any]] = list(
            sf.restful(
                "composite/sobjects", method=method, json={"allOrNone": True, "records": records}
            )
            or []
        )
        failed = [item for item in answer if not item.get("success")]
        if failed:
            raise RuntimeError(f"{method} {sobject} failed: {failed[:3]}")
        ids.extend(str(item["id"]) for item in answer)
    return ids


@dataclass(frozen=True)
class Plan:
    """How much of each kind, and when (seconds from the workload's start)."""

    duration: float
    rate: float
    accounts: int
    seed: int = 7

    @classmethod
    def for_run(cls, duration: float, rate: float, seed: int = 7) -> Plan:
        """A plan scaled to the run: one account per 3 s of duration, 12 to 60."""
        return cls(duration, rate, max(12, min(60, int(duration / 3))), seed)

    @property
    def opportunities(self) -> int:
        """Two open opportunities per account."""
        return 2 * self.accounts

    @property
    def closed_won(self) -> int:
        """Deals won: one per six accounts, at least two."""
        return max(2, self.accounts // 6)

    @property
    def stage_waves(self) -> tuple[float, ...]:
        """When opportunities change stage: eight waves from 10 % to 80 % of the time."""
        return tuple(self.duration * (0.1 + 0.1 * i) for i in range(8))

    @property
    def won_waves(self) -> tuple[float, ...]:
        """When deals are won: at 30 % and 60 % of the time."""
        return (self.duration * 0.3, self.duration * 0.6)

    @property
    def churn_at(self) -> float:
        """When the churn and upsell batch runs (it takes a while: well before the end)."""
        return self.duration * 0.6

    def lead_rate(self, elapsed: float) -> float:
        """Leads per second at ``elapsed``: half the rate, the rate, twice the rate."""
        third = self.duration / 3
        if elapsed < third:
            return self.rate / 2
        if elapsed < 2 * third:
            return self.rate
        return self.rate * 2

    def expected_leads(self) -> int:
        """About how many leads the run creates."""
        return round(self.duration / 3 * 3.5 * self.rate)


@dataclass(frozen=True)
class ChurnResult:
    """What ``sfe churn run`` reported."""

    assessed: int
    high_risk: int
    upsell_candidates: int
    output: str


@dataclass
class WorkloadStats:
    """What the workload did so far (read by the progress line and the summary)."""

    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    account_ids: list[str] = field(default_factory=list)
    opportunity_ids: list[str] = field(default_factory=list)
    lead_ids: list[str] = field(default_factory=list)
    stage_changes: int = 0
    #: Insight runs the opportunity agent must make: creates and moves to an open stage.
    insights_expected: int = 0
    won_ids: list[str] = field(default_factory=list)
    usage_signals: int = 0
    churn: ChurnResult | None = None
    churn_started: bool = False
    #: Leads created per second since the demo's origin (second -> count).
    leads_per_second: Counter[int] = field(default_factory=Counter)
    started_at: float = 0.0
    #: Set when the leads and changes are done (the churn batch may still run).
    changes_done: bool = False
    finished_at: float | None = None

    def count_leads(self) -> int:
        """Leads created so far."""
        with self.lock:
            return len(self.lead_ids)


def usage_signals(
    account_id: str, body: dict[str, Any], rng: random.Random, today: date
) -> list[UsageSignalReported]:
    """Thirty days of usage for one account, consistent with its usage trend."""
    trend = body.get("Product_Usage_Trend__c")
    severity = rng.uniform(0.0, 1.0) if trend == "Declining" else 0.0
    growth = rng.uniform(0.5, 1.0) if trend == "Increasing" else 0.0
    seats = max(5, int(body["NumberOfEmployees"] * 0.5))
    mau = seats * (0.9 if growth else 0.6) * (1 - 0.6 * severity)
    signals: list[UsageSignalReported] = []

    def report(metric: str, value: float, moment: datetime) -> None:
        signals.append(
            UsageSignalReported(
                id=str(uuid.uuid4()),
                source=USAGE_SYSTEM,
                subject=account_id,
                time=moment,
                system=USAGE_SYSTEM,
                metric=metric,
                value=float(value),
                observed_at=moment,
            )
        )

    for back in range(30, 0, -1):
        day = today - timedelta(days=back)
        moment = datetime(day.year, day.month, day.day, 20, tzinfo=UTC)
        progress = (30 - back) / 30
        report(
            "daily_active_users",
            max(0.0, mau * 0.5 * (1 - severity * progress * 0.7 + growth * progress * 0.2)),
            moment,
        )
        report("support_tickets", 1 if rng.random() < 0.05 + 0.4 * severity else 0, moment)
        report("api_calls", seats * rng.uniform(20, 60) * (1 + 2 * growth) * (1 - severity), moment)
        if back % 10 == 0:
            report("late_payment", 1 if rng.random() < 0.8 * severity else 0, moment)
        if rng.random() < 0.3 * severity:
            report("competitor_mentions", 1, moment)
    last = today - timedelta(days=1)
    moment = datetime(last.year, last.month, last.day, 23, tzinfo=UTC)
    report("licensed_seats", seats, moment)
    report("monthly_active_users", mau, moment)
    report("nps", round(50 - 90 * severity + 20 * growth + rng.uniform(-15, 15)), moment)
    adoption = float(body.get("Feature_Adoption_Rate__c") or 50.0)
    report(
        "feature_adoption_rate",
        min(100.0, adoption * (1 - 0.5 * severity) * (1 + 0.3 * growth)),
        moment,
    )
    report("storage_utilization", 0.5 + 0.45 * growth, moment)
    report("products_owned", 1 if growth else rng.randint(1, 4), moment)
    report("employee_growth_12m", 0.35 * growth - 0.1 * severity, moment)
    report("engagement_score", float(body.get("Usage_Score__c") or 50.0), moment)
    return signals


def append_signals(bootstrap: str, prefix: str, signals: Sequence[UsageSignalReported]) -> None:
    """Append ``signals`` to the prefixed ``usage.signals``, keyed by account."""
    codec = Codec(topic_prefix=prefix)
    producer = Producer({**client_config(bootstrap), "linger.ms": 20, "enable.idempotence": True})
    topic = prefix + USAGE_TOPIC
    for signal in signals:
        encoded = codec.encode(topic, signal)
        while True:
            try:
                producer.produce(
                    topic,
                    key=signal.subject.encode(),
                    value=encoded.value,
                    headers=list(encoded.headers),
                )
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(60) != 0:
        raise RuntimeError(f"usage signals were not all delivered to {topic}")


class Workload(threading.Thread):
    """Drives the plan against the org; :attr:`error` holds what stopped it early."""

    def __init__(
        self,
        sf: Salesforce,
        plan: Plan,
        owners: Sequence[str],
        publish_usage: Callable[[Sequence[UsageSignalReported]], None],
        run_churn: Callable[[], ChurnResult],
        stop: threading.Event,
        origin: float | None = None,
    ) -> None:
        """Drive ``plan``; per-second counts are seconds since ``origin`` (epoch seconds)."""
        super().__init__(name="demo-workload", daemon=True)
        self.origin = time.time() if origin is None else origin
        self.sf = sf
        self.plan = plan
        self.owners = tuple(owners)
        self.publish_usage = publish_usage
        self.run_churn = run_churn
        self.stop = stop
        self.stats = WorkloadStats()
        self.error: BaseException | None = None
        self._rng = random.Random(plan.seed)
        self._stages: dict[str, int] = {}
        self._churn_thread: threading.Thread | None = None

    def run(self) -> None:
        """Run the plan; record an error instead of raising it."""
        try:
            self._run()
        except BaseException as exc:  # reported by the orchestrator
            log.exception("workload failed")
            self.error = exc
        finally:
            self.stats.finished_at = time.monotonic()

    def _run(self) -> None:
        stats, plan = self.stats, self.plan
        stats.started_at = time.monotonic()
        self._accounts_and_opportunities()
        waves = [(at, self._stage_wave) for at in plan.stage_waves]
        waves += [(at, self._won_wave) for at in plan.won_waves]
        waves.append((plan.churn_at, self._start_churn))
        waves.sort(key=lambda pair: pair[0])
        owed = 0.0
        tick = 0.5
        last = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            elapsed = now - stats.started_at
            if elapsed >= plan.duration:
                break
            owed += plan.lead_rate(elapsed) * (now - last)
            last = now
            due = int(owed)
            if due:
                owed -= due
                self._leads(due, int(time.time() - self.origin))
            while waves and waves[0][0] <= elapsed:
                _, action = waves.pop(0)
                action()
            self.stop.wait(max(0.0, tick - (time.monotonic() - now)))
        stats.changes_done = True
        if self._churn_thread is None and not self.stop.is_set():
            self._start_churn()
        if self._churn_thread is not None:
            while self._churn_thread.is_alive() and not self.stop.is_set():
                self._churn_thread.join(0.5)

    def _accounts_and_opportunities(self) -> None:
        rng, plan, stats = self._rng, self.plan, self.stats
        bodies = load.accounts(rng, plan.accounts)
        for index, body in enumerate(bodies):
            body["OwnerId"] = self.owners[index % len(self.owners)]
        account_ids = collection(self.sf, "POST", "Account", bodies)
        pairs = list(zip(account_ids, bodies, strict=True))
        rows = load.opportunities(rng, plan.opportunities, pairs)
        today = datetime.now(UTC).date()
        for index, row in enumerate(rows):
            stage = rng.randrange(len(OPEN_STAGES) - 1)
            row.update(
                StageName=OPEN_STAGES[stage],
                Probability=float(10 + 10 * stage),
                CloseDate=(today + timedelta(days=rng.randint(7, 120))).isoformat(),
                OwnerId=self.owners[index % len(self.owners)],
            )
        opportunity_ids = collection(self.sf, "POST", "Opportunity", rows)
        for opportunity_id, row in zip(opportunity_ids, rows, strict=True):
            self._stages[opportunity_id] = OPEN_STAGES.index(row["StageName"])
        signals = [
            signal
            for account_id, body in pairs
            for signal in usage_signals(account_id, body, rng, today)
        ]
        self.publish_usage(signals)
        with stats.lock:
            stats.account_ids.extend(account_ids)
            stats.opportunity_ids.extend(opportunity_ids)
            stats.insights_expected += len(opportunity_ids)
            stats.usage_signals += len(signals)

    def _leads(self, count: int, second: int) -> None:
        stats = self.stats
        start = stats.count_leads()
        rng = self._rng
        bodies = load.leads(rng, count)
        for offset, body in enumerate(bodies):
            if rng.random() < HOT_SHARE:
                body.update(hot_lead(rng))
            number = start + offset + 1
            first, last = str(body["FirstName"]), str(body["LastName"]).rsplit("-", 1)[0]
            domain = str(body["Email"]).split("@", 1)[1]
            body["LastName"] = f"{last}-{number}"
            body["Email"] = f"{first.lower()}.{last.lower()}{number}@{domain}"
        ids = collection(self.sf, "POST", "Lead", bodies)
        with stats.lock:
            stats.lead_ids.extend(ids)
            stats.leads_per_second[second] += len(ids)

    def _candidates(self) -> list[str]:
        won = set(self.stats.won_ids)
        return [o for o in self.stats.opportunity_ids if o not in won]

    def _stage_wave(self) -> None:
        """Move about an eighth of the open opportunities to another open stage."""
        rng = self._rng
        candidates = self._candidates()
        if not candidates:
            return
        chosen = rng.sample(candidates, max(1, len(candidates) // 8))
        rows = []
        for opportunity_id in chosen:
            stage = self._stages[opportunity_id]
            forward = rng.random() < 0.8 and stage < len(OPEN_STAGES) - 1
            stage = stage + 1 if forward or stage == 0 else stage - 1
            self._stages[opportunity_id] = stage
            rows.append(
                {"Id": opportunity_id, "StageName": OPEN_STAGES[stage],
                 "Probability": float(10 + 10 * stage)}
            )  # fmt: skip
        collection(self.sf, "PATCH", "Opportunity", rows)
        with self.stats.lock:
            self.stats.stage_changes += len(rows)
            self.stats.insights_expected += len(rows)

    def _won_wave(self) -> None:
        """Win half of the planned deals, each on an account with no deal won yet."""
        stats, plan = self.stats, self.plan
        per_wave = -(-plan.closed_won // len(plan.won_waves))
        want = min(per_wave, plan.closed_won - len(stats.won_ids))
        if want <= 0:
            return
        # Opportunity i is on account i % accounts: the first block is on distinct accounts.
        won = set(stats.won_ids)
        chosen = [o for o in stats.opportunity_ids[: plan.accounts] if o not in won][:want]
        today = datetime.now(UTC).date().isoformat()
        rows = [
            {"Id": o, "StageName": CLOSED_WON, "Probability": 100.0, "CloseDate": today}
            for o in chosen
        ]
        collection(self.sf, "PATCH", "Opportunity", rows)
        with stats.lock:
            stats.won_ids.extend(chosen)
            stats.stage_changes += len(rows)

    def _start_churn(self) -> None:
        if self._churn_thread is not None:
            return

        def churn() -> None:
            try:
                result = self.run_churn()
            except BaseException as exc:
                self.error = exc
                return
            with self.stats.lock:
                self.stats.churn = result

        self.stats.churn_started = True
        self._churn_thread = threading.Thread(target=churn, name="demo-churn", daemon=True)
        self._churn_thread.start()
