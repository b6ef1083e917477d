from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from ml.features import FEATURE_SETS
from ml.inference import load_model
from ml.registry import Registry
from ml.training.estimators import MODEL_KINDS, NativeModel
from ml.training.export import PARITY_TOLERANCE, ParityError, check_parity
from ml.training.pipeline import TrainResult, fingerprint, synthetic_training_data


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_onnx_matches_the_native_model_on_the_validation_set(
    kind: str, trained: dict[str, TrainResult], registry: Registry
) -> None:
    result = trained[kind]
    model = load_model(registry, f"{kind}:1", FEATURE_SETS[kind])
    onnx_p = model.predict_frame(result.validation)
    native_p = result.native.predict_proba(result.validation)
    tolerance = PARITY_TOLERANCE["keras" if kind == "upsell" else "sklearn"]
    assert len(onnx_p) == len(result.validation) > 100
    assert np.max(np.abs(onnx_p - native_p)) <= tolerance
    assert result.manifest.parity["max_abs_difference"] <= tolerance


@dataclasses.dataclass
class _Shifted:
    inner: NativeModel
    shift: float

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.inner.predict_proba(frame) + self.shift


def test_parity_check_fails_when_the_export_differs(trained: dict[str, TrainResult]) -> None:
    result = trained["churn"]
    with pytest.raises(ParityError, match="differs"):
        check_parity(
            _Shifted(result.native, 1e-3), result.exported, FEATURE_SETS["churn"], result.validation
        )


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_models_learn_the_planted_signal_and_report_metrics(
    kind: str, trained: dict[str, TrainResult]
) -> None:
    validation = trained[kind].manifest.metrics["validation"]
    assert validation["roc_auc"] > 0.6
    assert validation["pr_auc"] > validation["positive_rate"]
    assert 0 < validation["brier"] < 0.25
    assert sum(row["rows"] for row in validation["calibration"]) == validation["rows"]
    assert 0 <= validation["expected_calibration_error"] < 0.2


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_manifest_describes_the_version(
    kind: str, trained: dict[str, TrainResult], registry: Registry
) -> None:
    manifest = registry.manifest(kind, 1)
    assert manifest == trained[kind].manifest
    assert [(f["name"], f["type"]) for f in manifest.features] == FEATURE_SETS[kind].signature()
    assert manifest.parent_version is None
    assert len(manifest.onnx["sha256"]) == 64
    assert len(manifest.training_data["fingerprint"]) == 64
    assert set(manifest.baseline) == set(FEATURE_SETS[kind].names)
    assert set(manifest.feature_importance) == set(FEATURE_SETS[kind].names)
    assert registry.promoted(kind) == 1


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_evaluation_report_with_plots_sits_beside_the_manifest(
    kind: str, trained: dict[str, TrainResult], registry: Registry
) -> None:
    folder = registry.directory(kind, 1)
    report = (folder / "report.md").read_text()
    assert "ROC AUC" in report and "Calibration" in report
    for plot in ("roc", "precision_recall", "calibration", "feature_importance"):
        image = folder / "plots" / f"{plot}.png"
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"plots/{plot}.png" in report


def test_fingerprint_changes_with_any_value_or_label() -> None:
    data = synthetic_training_data("win", 200, seed=1)
    base = fingerprint(data.frame, data.y)
    assert base == fingerprint(data.frame.copy(), data.y.copy())
    changed = data.frame.copy()
    changed.iloc[0, 0] += 1
    assert fingerprint(changed, data.y) != base
    assert fingerprint(data.frame, 1 - data.y) != base
