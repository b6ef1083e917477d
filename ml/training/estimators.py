"""The native models: one scikit-learn pipeline or Keras network per model kind.

Every native model takes the cleaned feature frame of :meth:`FeatureSet.frame` and
returns the probability of the positive class, so evaluation, export parity and the
benchmark treat them alike. Preprocessing (median imputation, scaling where the learner
needs it, one-hot encoding that ignores unknown categories) lives inside the model so
that it is exported to ONNX with it.

* churn: gradient boosting; lead: random forest; win: soft-voting ensemble of logistic
  regression, random forest and gradient boosting; upsell: a Keras feed-forward network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier, VotingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ml.features.spec import FeatureSet

MODEL_KINDS = ("churn", "lead", "upsell", "win")
ALGORITHMS = {
    "churn": "gradient boosting (scikit-learn GradientBoostingClassifier)",
    "lead": "random forest (scikit-learn RandomForestClassifier)",
    "upsell": "neural network (Keras, two hidden layers)",
    "win": "soft-voting ensemble (logistic regression, random forest, gradient boosting)",
}


@dataclass(frozen=True)
class Hyperparameters:
    """Sizes that trade accuracy for training time (tests use smaller ones)."""

    trees: int = 200
    forest_trees: int = 100
    epochs: int = 30
    seed: int = 7


class NativeModel(Protocol):
    """A trained model before export: positive-class probabilities of a feature frame."""

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of the positive class for each row."""
        ...


def preprocessor(features: FeatureSet, *, scale: bool) -> ColumnTransformer:
    """Impute and (optionally) scale numeric columns; one-hot encode categorical ones."""
    numeric: Any = SimpleImputer(strategy="median", keep_empty_features=True)
    if scale:
        numeric = Pipeline([("impute", numeric), ("scale", StandardScaler())])
    parts: list[tuple[str, Any, list[str]]] = []
    if features.numeric:
        parts.append(("numeric", numeric, features.numeric))
    if features.categorical:
        parts.append(
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                features.categorical,
            )
        )
    return ColumnTransformer(parts, sparse_threshold=0.0)


@dataclass
class SklearnModel:
    """A scikit-learn pipeline: preprocessing followed by a classifier."""

    pipeline: Pipeline

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of the positive class (column 1 of scikit-learn's output)."""
        return np.asarray(self.pipeline.predict_proba(frame)[:, 1])


@dataclass
class KerasModel:
    """A fitted scikit-learn preprocessor feeding a Keras network with one sigmoid output."""

    preprocess: ColumnTransformer
    network: Any

    def design(self, frame: pd.DataFrame) -> np.ndarray:
        """The network's input matrix for a frame."""
        return np.asarray(self.preprocess.transform(frame), dtype=np.float32)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of the positive class (the single sigmoid output)."""
        x = self.design(frame)
        return np.asarray(self.network(x, training=False)).reshape(-1).astype(np.float64)


def fit(
    kind: str, features: FeatureSet, frame: pd.DataFrame, y: np.ndarray, hp: Hyperparameters
) -> NativeModel:
    """Train the native model of ``kind`` on a feature frame and 0/1 labels."""
    if kind == "upsell":
        return _fit_network(features, frame, y, hp)
    classifier: Any
    if kind == "churn":
        classifier = GradientBoostingClassifier(
            n_estimators=hp.trees,
            max_depth=3,
            learning_rate=0.08,
            subsample=0.8,
            random_state=hp.seed,
        )
    elif kind == "lead":
        # Shallow trees: as accurate here as deep ones, and ten times faster in ONNX
        # (a 1,000-row batch in ~7 ms instead of ~60 ms at depth 12).
        classifier = RandomForestClassifier(
            n_estimators=hp.forest_trees,
            max_depth=8,
            min_samples_leaf=20,
            n_jobs=2,
            random_state=hp.seed,
        )
    elif kind == "win":
        classifier = VotingClassifier(
            [
                # Only the linear learner sees scaled inputs: trees split on the imputed
                # float32 values themselves, which ONNX reproduces bit for bit.
                (
                    "logistic",
                    Pipeline(
                        [("scale", StandardScaler()), ("fit", LogisticRegression(max_iter=1000))]
                    ),
                ),
                (
                    "forest",
                    RandomForestClassifier(
                        n_estimators=max(hp.forest_trees // 2, 10),
                        max_depth=8,
                        min_samples_leaf=20,
                        n_jobs=2,
                        random_state=hp.seed,
                    ),
                ),
                (
                    "boosting",
                    GradientBoostingClassifier(
                        n_estimators=max(hp.trees // 2, 10), max_depth=3, random_state=hp.seed
                    ),
                ),
            ],
            voting="soft",
            flatten_transform=False,
        )
    else:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
    pipeline = Pipeline(
        [("preprocess", preprocessor(features, scale=False)), ("classify", classifier)]
    )
    pipeline.fit(frame, y)
    return SklearnModel(pipeline)


def _fit_network(
    features: FeatureSet, frame: pd.DataFrame, y: np.ndarray, hp: Hyperparameters
) -> KerasModel:
    # TensorFlow's C++ notices (oneDNN, tf.data attributes) are not actionable here;
    # failures still surface as Python exceptions.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(hp.seed)
    tf.config.experimental.enable_op_determinism()
    prep = preprocessor(features, scale=True).fit(frame)
    x = np.asarray(prep.transform(frame), dtype=np.float32)
    inputs = keras.Input(shape=(x.shape[1],), name="features")
    hidden = keras.layers.Dense(32, activation="relu")(inputs)
    hidden = keras.layers.Dropout(0.1, seed=hp.seed)(hidden)
    hidden = keras.layers.Dense(16, activation="relu")(hidden)
    output = keras.layers.Dense(1, activation="sigmoid", name="probability")(hidden)
    network = keras.Model(inputs, output, name="upsell")
    network.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    network.fit(
        x,
        y.astype(np.float32),
        epochs=hp.epochs,
        batch_size=256,
        validation_split=0.1,
        callbacks=[keras.callbacks.EarlyStopping(patience=4, restore_best_weights=True)],
        shuffle=True,
        verbose=0,
    )
    return KerasModel(prep, network)
