"""The evaluation report of a model version: Markdown with PNG plots, beside the manifest.

Plots: ROC curve, precision-recall curve, calibration (reliability) diagram, and
permutation feature importance. Drawn with matplotlib's Agg backend (no display).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from ml.registry import Manifest

REPORT_FILE = "report.md"


def _save(figure: Any, path: Path) -> str:
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return f"plots/{path.name}"


def _plots(folder: Path, manifest: Manifest, y: np.ndarray, p: np.ndarray) -> dict[str, str]:
    plots = folder / "plots"
    plots.mkdir(exist_ok=True)
    validation = manifest.metrics["validation"]
    images: dict[str, str] = {}

    figure, axis = plt.subplots(figsize=(4.5, 4))
    fpr, tpr, _ = roc_curve(y, p)
    axis.plot(fpr, tpr, label=f"AUC {validation['roc_auc']:.3f}")
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey")
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    axis.legend(loc="lower right")
    images["roc"] = _save(figure, plots / "roc.png")

    figure, axis = plt.subplots(figsize=(4.5, 4))
    precision, recall, _ = precision_recall_curve(y, p)
    axis.plot(recall, precision, label=f"AP {validation['pr_auc']:.3f}")
    axis.axhline(validation["positive_rate"], linestyle="--", color="grey")
    axis.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    axis.legend(loc="upper right")
    images["pr"] = _save(figure, plots / "precision_recall.png")

    figure, axis = plt.subplots(figsize=(4.5, 4))
    table = validation["calibration"]
    axis.plot([r["predicted"] for r in table], [r["observed"] for r in table], marker="o")
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey")
    axis.set(xlabel="mean predicted probability", ylabel="observed rate", title="Calibration")
    images["calibration"] = _save(figure, plots / "calibration.png")

    figure, axis = plt.subplots(figsize=(6, 0.3 * len(manifest.feature_importance) + 1.2))
    names = list(manifest.feature_importance)[::-1]
    axis.barh(names, [manifest.feature_importance[n] for n in names])
    axis.set(xlabel="drop in ROC AUC when shuffled", title="Permutation importance")
    images["importance"] = _save(figure, plots / "feature_importance.png")
    return images


def _row(name: str, values: dict[str, Any]) -> str:
    cells = [
        values.get(k)
        for k in ("roc_auc", "pr_auc", "brier", "log_loss", "expected_calibration_error")
    ]
    text = ["-" if c is None else f"{c:.4f}" for c in cells]
    return (
        f"| {name} | {values['rows']} | {values['positive_rate']:.3f} | " + " | ".join(text) + " |"
    )


def write_report(
    folder: Path, manifest: Manifest, y_valid: np.ndarray, p_valid: np.ndarray
) -> Path:
    """Write ``report.md`` and its plots into a version's folder; return the report's path."""
    images = _plots(folder, manifest, y_valid, p_valid) if 0 < y_valid.sum() < len(y_valid) else {}
    data = manifest.training_data
    lines = [
        f"# {manifest.name} v{manifest.version}",
        "",
        f"- algorithm: {manifest.algorithm}",
        f"- created: {manifest.created_at}; parent version: {manifest.parent_version or 'none'}",
        f"- training data: {data['source']}, {data['rows']} rows, fingerprint `{data['fingerprint'][:16]}`",
        f"- target: `{manifest.target['column']}`, positive class {manifest.target['positive']!r}",
        f"- ONNX: `{manifest.onnx['file']}` sha256 `{manifest.onnx['sha256'][:16]}...`, parity with the "
        f"native model {manifest.parity['max_abs_difference']:.2e} (tolerance {manifest.parity['tolerance']:.0e})",
        "",
        "## Metrics",
        "",
        "| split | rows | positive rate | ROC AUC | PR AUC | Brier | log loss | ECE |",
        "|---|---|---|---|---|---|---|---|",
        _row("train", manifest.metrics["train"]),
        _row("validation", manifest.metrics["validation"]),
        "",
        "## Calibration (validation)",
        "",
        "| bin | rows | mean predicted | observed |",
        "|---|---|---|---|",
        *(
            f"| {r['low']:.1f}-{r['high']:.1f} | {r['rows']} | {r['predicted']:.3f} | {r['observed']:.3f} |"
            for r in manifest.metrics["validation"]["calibration"]
        ),
        "",
        "## Plots",
        "",
        *(f"![{title}]({path})" for title, path in images.items()),
        "",
        "## Feature importance (permutation, validation)",
        "",
        "| feature | type | drop in ROC AUC |",
        "|---|---|---|",
        *(
            f"| {f['name']} | {f['type']} | {manifest.feature_importance.get(f['name'], 0.0):.4f} |"
            for f in sorted(
                manifest.features, key=lambda f: -manifest.feature_importance.get(f["name"], 0.0)
            )
        ),
        "",
    ]
    path = folder / REPORT_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
