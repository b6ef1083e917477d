"""Feature definitions shared by training and serving (one per model)."""

from ml.features.definitions import CHURN, FEATURE_SETS, LEAD, UPSELL, WIN
from ml.features.spec import MISSING, Feature, FeatureSet, FeatureType, Record

__all__ = [
    "CHURN",
    "FEATURE_SETS",
    "LEAD",
    "MISSING",
    "UPSELL",
    "WIN",
    "Feature",
    "FeatureSet",
    "FeatureType",
    "Record",
]
