"""Training data as every trainer takes it: cleaned features, 0/1 labels, provenance.

Kept apart from the training pipeline so that reading a CSV export does not import
the exporters or TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.features.spec import FeatureSet


@dataclass(frozen=True)
class TrainingData:
    """A cleaned feature frame, its 0/1 labels, and where they came from."""

    features: FeatureSet
    frame: pd.DataFrame
    y: np.ndarray
    target: str
    positive: str
    source: str
