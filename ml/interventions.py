"""From churn risk factors to the retention actions of the churn flow (SPEC Flow 4).

An account whose churn probability exceeds the threshold (70 % by default) gets the
immediate actions that every high-risk account gets; then each factor that *raises*
the risk adds the actions that address it, strongest factor first. Actions are not
repeated; each carries the reason that selected it, for ``Intervention_Plan__c`` and
``Recommended_Actions__c``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ml.explain import Factor

HIGH_RISK = 0.7

ALERT_CSM = "Alert Customer Success Manager"
HIGH_PRIORITY_CASE = "Create high-priority case in Salesforce"
EXECUTIVE_OUTREACH = "Trigger executive outreach workflow"
RETENTION_OFFER = "Generate retention offer (AI-calculated discount)"
EMERGENCY_QBR = "Schedule emergency QBR"
DEDICATED_CSM = "Deploy dedicated success manager"
USAGE_MONITORING = "Increase product usage monitoring"
TRAINING = "Offer product training sessions"
EARLY_ACCESS = "Provide feature previews/early access"
TAM = "Assign technical account manager"

IMMEDIATE = frozenset(
    {
        ALERT_CSM,
        HIGH_PRIORITY_CASE,
        EXECUTIVE_OUTREACH,
        RETENTION_OFFER,
        EMERGENCY_QBR,
        DEDICATED_CSM,
    }
)

FACTOR_ACTIONS: dict[str, tuple[str, ...]] = {
    "monthly_active_users": (USAGE_MONITORING, TRAINING),
    "seat_utilization": (USAGE_MONITORING, TRAINING),
    "usage_trend_30d": (USAGE_MONITORING, DEDICATED_CSM),
    "engagement_score": (USAGE_MONITORING, TRAINING),
    "engagement_level": (USAGE_MONITORING, TRAINING),
    "feature_adoption_rate": (TRAINING, EARLY_ACCESS),
    "support_tickets_30d": (TAM, HIGH_PRIORITY_CASE),
    "late_payments_90d": (RETENTION_OFFER,),
    "days_to_renewal": (EMERGENCY_QBR, EXECUTIVE_OUTREACH),
    "nps_score": (EXECUTIVE_OUTREACH, ALERT_CSM),
    "competitor_mentions_30d": (RETENTION_OFFER, EXECUTIVE_OUTREACH),
    "tenure_months": (DEDICATED_CSM,),
    "plan_tier": (EARLY_ACCESS,),
}


@dataclass(frozen=True)
class Intervention:
    """One recommended action, when to take it, and why."""

    action: str
    timing: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"action": self.action, "timing": self.timing, "reason": self.reason}


def suggest(
    probability: float, factors: Iterable[Factor], threshold: float = HIGH_RISK
) -> list[Intervention]:
    """Actions for an account with churn ``probability`` and its explanation ``factors``."""
    plan: dict[str, Intervention] = {}

    def add(action: str, reason: str) -> None:
        if action not in plan:
            timing = "immediate" if action in IMMEDIATE else "medium-term"
            plan[action] = Intervention(action, timing, reason)

    if probability > threshold:
        reason = f"churn probability {probability:.0%} exceeds {threshold:.0%}"
        for action in (ALERT_CSM, HIGH_PRIORITY_CASE, DEDICATED_CSM):
            add(action, reason)
    for factor in sorted(factors, key=lambda f: -f.contribution):
        if factor.contribution <= 0:
            continue
        for action in FACTOR_ACTIONS.get(factor.feature, ()):
            add(action, factor.describe())
    return sorted(plan.values(), key=lambda i: i.timing != "immediate")
