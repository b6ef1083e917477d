"""The four models' feature sets: names, types, Salesforce origins and valid ranges.

Record keys are the feature name itself or the Salesforce field named as an alias
(``Monthly_Active_Users__c``); derived features are computed from the fields and
usage histories named in their source (see :mod:`ml.features.signals`). Percent
fields use Salesforce's 0-100 scale.
"""

from __future__ import annotations

from ml.features import signals
from ml.features.spec import Derivation, Feature, FeatureSet, FeatureType


def _num(
    name: str,
    source: str,
    low: float,
    high: float,
    *aliases: str,
    derive: Derivation | None = None,
) -> Feature:
    return Feature(name, FeatureType.NUMERIC, source, tuple(aliases), low, high, derive)


def _cat(name: str, source: str, *aliases: str, derive: Derivation | None = None) -> Feature:
    return Feature(name, FeatureType.CATEGORICAL, source, tuple(aliases), derive=derive)


_MAU = _num(
    "monthly_active_users",
    "Account.Monthly_Active_Users__c: distinct users active in the last 30 days",
    0,
    1_000_000,
    "Monthly_Active_Users__c",
)
_SEATS = _num(
    "seat_utilization",
    "Monthly_Active_Users__c / Licensed_Seats__c",
    0,
    3,
    derive=lambda r, _d: signals.ratio(
        r.get("Monthly_Active_Users__c"), r.get("Licensed_Seats__c")
    ),
)
_TREND = _num(
    "usage_trend_30d",
    "Daily_Active_Users (30 days): mean of the last 15 days / mean of the 15 before - 1",
    -1,
    5,
    derive=signals.usage_trend,
)
_ADOPTION = _num(
    "feature_adoption_rate",
    "Account.Feature_Adoption_Rate__c (percent of licensed features used)",
    0,
    100,
    "Feature_Adoption_Rate__c",
)
_TICKETS = _num(
    "support_tickets_30d",
    "Account.Support_Ticket_Count_30d__c: cases opened in the last 30 days",
    0,
    500,
    "Support_Ticket_Count_30d__c",
)
_NPS = _num("nps_score", "Account.NPS_Score__c (-100 to 100)", -100, 100, "NPS_Score__c")
_TENURE = _num(
    "tenure_months",
    "months since Account.Customer_Since__c",
    0,
    600,
    derive=signals.months_since("Customer_Since__c"),
)
_ACV = _num(
    "annual_contract_value",
    "Account.Annual_Contract_Value__c (currency)",
    0,
    1e9,
    "Annual_Contract_Value__c",
)
_PLAN = _cat("plan_tier", "Account.Plan_Tier__c (Starter, Growth, Enterprise)", "Plan_Tier__c")
_INDUSTRY = _cat("industry", "Industry picklist", "Industry")

CHURN = FeatureSet(
    "churn",
    (
        _MAU,
        _SEATS,
        _TREND,
        _ADOPTION,
        _TICKETS,
        _num(
            "late_payments_90d",
            "Payments: invoices of the last 90 days paid late or unpaid when due",
            0,
            50,
            derive=signals.late_payments,
        ),
        _num(
            "days_to_renewal",
            "Contract_Renewal_Date__c - as-of date, in days",
            -365,
            1825,
            derive=signals.days_until("Contract_Renewal_Date__c"),
        ),
        _num("engagement_score", "Account.Usage_Score__c (0-100)", 0, 100, "Usage_Score__c"),
        _NPS,
        _num(
            "competitor_mentions_30d",
            "Competitor_Mentions_30d__c: competitor names in emails, calls and cases",
            0,
            100,
            "Competitor_Mentions_30d__c",
        ),
        _TENURE,
        _ACV,
        _PLAN,
        _INDUSTRY,
        _cat(
            "engagement_level",
            "Account.Engagement_Level__c (High, Medium, Low)",
            "Engagement_Level__c",
        ),
    ),
)

LEAD = FeatureSet(
    "lead",
    (
        _num("number_of_employees", "Lead.NumberOfEmployees", 0, 5_000_000, "NumberOfEmployees"),
        _num("annual_revenue", "Lead.AnnualRevenue (currency)", 0, 1e12, "AnnualRevenue"),
        _num(
            "estimated_budget", "Lead.Estimated_Budget__c (currency)", 0, 1e9, "Estimated_Budget__c"
        ),
        _num(
            "tech_stack_count",
            "entries of Lead.Tech_Stack__c (multi-select picklist)",
            0,
            100,
            derive=signals.count_items("Tech_Stack__c"),
        ),
        _num(
            "decision_makers_count",
            "entries of Lead.Decision_Makers__c (one per line or a JSON list)",
            0,
            50,
            derive=signals.count_items("Decision_Makers__c"),
        ),
        _num(
            "web_visits_30d",
            "web sessions of the lead's company, last 30 days",
            0,
            10_000,
            "Web_Visits_30d__c",
        ),
        _num(
            "email_opens_30d", "marketing email opens, last 30 days", 0, 1_000, "Email_Opens_30d__c"
        ),
        _num(
            "content_downloads_30d",
            "whitepaper and webinar downloads, last 30 days",
            0,
            500,
            "Content_Downloads_30d__c",
        ),
        _num(
            "days_since_created",
            "as-of date - Lead.CreatedDate",
            0,
            3650,
            derive=signals.days_since("CreatedDate"),
        ),
        _cat("lead_source", "Lead.LeadSource", "LeadSource"),
        _INDUSTRY,
        _cat(
            "title_seniority",
            "band of Lead.Title (C-Level, VP, Director, Manager, Individual)",
            derive=signals.title_seniority,
        ),
        _cat("country", "Lead.Country", "Country"),
    ),
)

UPSELL = FeatureSet(
    "upsell",
    (
        _SEATS,
        _MAU,
        _ADOPTION,
        _TREND,
        _num(
            "api_calls_30d",
            "API requests of the account, last 30 days",
            0,
            1e10,
            "Api_Calls_30d__c",
        ),
        _num("storage_utilization", "used / purchased storage", 0, 5, "Storage_Utilization__c"),
        _NPS,
        _TENURE,
        _ACV,
        _num("products_owned", "active product subscriptions", 0, 50, "Products_Owned__c"),
        _num(
            "employee_growth_12m",
            "relative headcount change, last 12 months",
            -1,
            10,
            "Employee_Growth_12m__c",
        ),
        _TICKETS,
        _PLAN,
        _INDUSTRY,
    ),
)

WIN = FeatureSet(
    "win",
    (
        _num("amount", "Opportunity.Amount (currency)", 0, 1e10, "Amount"),
        _num(
            "days_in_stage",
            "as-of date - entry into the current stage (Stage_History)",
            0,
            3650,
            derive=signals.days_in_stage,
        ),
        _num(
            "stage_regressions",
            "moves back to an earlier stage (Stage_History)",
            0,
            50,
            derive=signals.stage_regressions,
        ),
        _num(
            "close_date_pushes",
            "times Opportunity.CloseDate moved later",
            0,
            50,
            "Close_Date_Pushes__c",
        ),
        _num(
            "days_to_close",
            "Opportunity.CloseDate - as-of date",
            -365,
            1825,
            derive=signals.days_until("CloseDate"),
        ),
        _num(
            "age_days",
            "as-of date - Opportunity.CreatedDate",
            0,
            3650,
            derive=signals.days_since("CreatedDate"),
        ),
        _num(
            "competitor_count", "competitors named on the opportunity", 0, 20, "Competitor_Count__c"
        ),
        _num("discount_pct", "discount offered, percent", 0, 100, "Discount_Percent__c"),
        _num(
            "activities_30d",
            "tasks, emails and meetings logged, last 30 days",
            0,
            1_000,
            "Activities_30d__c",
        ),
        _num(
            "stakeholders_engaged", "contact roles with activity", 0, 100, "Stakeholders_Engaged__c"
        ),
        _cat("stage", "Opportunity.StageName", "StageName"),
        _cat("lead_source", "Opportunity.LeadSource", "LeadSource"),
        _cat("opportunity_type", "Opportunity.Type (New Business, Existing Business)", "Type"),
        _INDUSTRY,
    ),
)

FEATURE_SETS: dict[str, FeatureSet] = {fs.name: fs for fs in (CHURN, LEAD, UPSELL, WIN)}
