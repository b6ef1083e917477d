"""Training end to end: split, fit, export, parity, evaluate, report, register.

:func:`train` takes a :class:`TrainingData` (a cleaned feature frame and 0/1 labels,
from the synthetic generator or a CSV export), holds out a stratified validation split,
fits the native model of the requested kind, exports it to ONNX, refuses to register
an export that disagrees with the native model, evaluates the ONNX model (what serving
will run), and registers it with its manifest and evaluation report.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from ml import drift
from ml.errors import DataError
from ml.features.definitions import FEATURE_SETS
from ml.features.spec import FeatureSet, FeatureType
from ml.registry import MODEL_FILE, Manifest, Registry
from ml.score_scale import reference_scale
from ml.synthetic import synthetic_dataset
from ml.training.data import TrainingData
from ml.training.estimators import ALGORITHMS, Hyperparameters, NativeModel, fit
from ml.training.evaluate import metrics, permutation_importance
from ml.training.export import Exported, check_parity, export, onnx_probabilities, session
from ml.training.report import REPORT_FILE, write_report

log = logging.getLogger(__name__)

DEFAULT_ROWS = {"churn": 20_000, "lead": 30_000, "upsell": 20_000, "win": 20_000}
MIN_CLASS_ROWS = 10


@dataclass(frozen=True)
class TrainResult:
    """A registered version with the native model and the validation split it was checked on."""

    manifest: Manifest
    native: NativeModel
    exported: Exported
    validation: pd.DataFrame
    validation_y: np.ndarray


def synthetic_training_data(kind: str, rows: int | None = None, seed: int = 7) -> TrainingData:
    """Synthetic records for ``kind``, turned into features by the serving feature code."""
    features = FEATURE_SETS[kind]
    dataset = synthetic_dataset(kind, rows or DEFAULT_ROWS[kind], seed)
    frame = features.frame(dataset.records, dataset.as_of)
    y = dataset.records[dataset.target].to_numpy(dtype=bool).astype(np.int64)
    source = f"synthetic {kind} histories (seed {seed}, as of {dataset.as_of.isoformat()})"
    return TrainingData(features, frame, y, dataset.target, "True", source)


def fingerprint(frame: pd.DataFrame, y: np.ndarray) -> str:
    """SHA-256 of the training table: column names and types, every value, every label."""
    digest = hashlib.sha256()
    digest.update(repr([(c, str(t)) for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(np.asarray(y, dtype=np.int64).tobytes())
    return digest.hexdigest()


def baseline(features: FeatureSet, frame: pd.DataFrame) -> dict[str, Any]:
    """Training medians (numeric) and most frequent values (categorical): the occlusion baseline."""
    values: dict[str, Any] = {}
    for feature in features.features:
        column = frame[feature.name]
        if feature.type is FeatureType.NUMERIC:
            median = float(np.nanmedian(column)) if column.notna().any() else 0.0
            values[feature.name] = float(np.float32(median))
        else:
            values[feature.name] = str(column.mode().iloc[0]) if len(column) else ""
    return values


def _check(data: TrainingData) -> None:
    positives = int(data.y.sum())
    negatives = len(data.y) - positives
    if min(positives, negatives) < MIN_CLASS_ROWS:
        raise DataError(
            f"{data.source}: need at least {MIN_CLASS_ROWS} rows of each class in {data.target!r}, "
            f"found {positives} positive and {negatives} negative"
        )


def train(
    kind: str,
    data: TrainingData,
    registry: Registry,
    *,
    name: str | None = None,
    hp: Hyperparameters | None = None,
    promote: bool | None = None,
    validation_share: float = 0.2,
) -> TrainResult:
    """Train, export, check and register one model; promote it if asked or if it is the first."""
    _check(data)
    hp = hp or Hyperparameters()
    name = name or kind
    train_x, valid_x, train_y, valid_y = train_test_split(
        data.frame, data.y, test_size=validation_share, random_state=hp.seed, stratify=data.y
    )
    log.info("training %s on %d rows (%d held out)", name, len(train_x), len(valid_x))
    native = fit(kind, data.features, train_x, train_y, hp)
    exported = export(native, data.features, name)
    difference = check_parity(native, exported, data.features, valid_x)
    onnx_session = session(exported)

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return onnx_probabilities(
            onnx_session, exported.output, exported.column, data.features.feeds(frame)
        )

    p_valid = predict(valid_x)
    evaluation = {
        "train": metrics(train_y, predict(train_x)),
        "validation": metrics(valid_y, p_valid),
    }
    importance = permutation_importance(predict, valid_x, valid_y, seed=hp.seed)
    onnx_bytes = exported.serialize()
    # Everything that can fail is done: claim the version number now.
    parent = max(registry.versions(name), default=None)
    version, folder = registry.claim_version(name)
    manifest = Manifest(
        name=name,
        version=version,
        kind=kind,
        algorithm=ALGORITHMS[kind],
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        features=data.features.describe(),
        target={"column": data.target, "positive": data.positive},
        training_data={
            "source": data.source,
            "rows": len(data.y),
            "positive_rate": float(data.y.mean()),
            "fingerprint": fingerprint(data.frame, data.y),
            "validation_share": validation_share,
            "seed": hp.seed,
        },
        metrics=evaluation,
        parity={
            "max_abs_difference": difference,
            "tolerance": exported.tolerance,
            "rows": len(valid_x),
        },
        onnx={
            "file": MODEL_FILE,
            "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
            "output": exported.output,
            "column": exported.column,
            "opset": {o.domain or "ai.onnx": o.version for o in exported.model.opset_import},
        },
        parent_version=parent,
        baseline=baseline(data.features, train_x),
        drift_reference=drift.reference(data.features, train_x),
        feature_importance=importance,
        report=REPORT_FILE,
        score_scale=reference_scale(p_valid),
    )
    write_report(folder, manifest, np.asarray(valid_y), p_valid)
    registry.commit(manifest, onnx_bytes)
    if promote or (promote is None and registry.promoted(name) is None):
        registry.promote(name, version)
    return TrainResult(manifest, native, exported, valid_x, np.asarray(valid_y))
