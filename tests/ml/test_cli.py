from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine

from ml.registry import Registry
from ml.training.pipeline import TrainResult
from sfe import audit
from sfe.cli import main
from sfe.settings import Settings
from tests.ml.helpers import write_churn_export


def _sfe(root: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main, list(args), env={"SFE_MODEL_DIR": str(root)}, catch_exceptions=False
    )


def test_list_show_and_promote(
    trained: dict[str, TrainResult], registry: Registry, stack: Settings
) -> None:
    listed = _sfe(registry.root, "models", "list")
    assert listed.exit_code == 0
    for kind in ("churn", "lead", "upsell", "win"):
        assert f"{trained[kind].manifest.metrics['validation']['roc_auc']:.3f}" in listed.output
    shown = _sfe(registry.root, "models", "show", "win")
    assert (
        shown.exit_code == 0 and "soft-voting" in shown.output and "days_in_stage" in shown.output
    )
    assert _sfe(registry.root, "models", "promote", "win").exit_code == 2
    missing = _sfe(registry.root, "models", "promote", "win:7")
    assert missing.exit_code == 1 and "no model win:7" in missing.output
    assert "promoted win:1" in _sfe(registry.root, "models", "promote", "win:1").output
    engine = create_engine(stack.sqlalchemy_url())
    with engine.connect() as connection:
        (entry,) = audit.entries(connection, limit=1, action="model.promote")
    engine.dispose()
    assert entry.subject == "win:1" and entry.details["registry"] == str(registry.root)


def test_train_score_and_drift_on_an_export(tmp_path: Path) -> None:
    exported = write_churn_export(tmp_path / "Customer Export.csv", rows=900)
    trained = _sfe(
        tmp_path / "reg",
        "train",
        "--model",
        "churn",
        "--data",
        str(tmp_path / "Customer Export.csv"),
        "--target",
        "Churn",
    )
    assert trained.exit_code == 0, trained.output
    assert "churn-customer-export:1" in trained.output and "promoted" in trained.output
    mapping = tmp_path / "reg" / "churn-customer-export" / "1" / "mapping.yaml"
    assert "Tenure (months)" in mapping.read_text()
    assert "score with: sfe models score churn-customer-export" in trained.output
    again = _sfe(
        tmp_path / "reg",
        "train",
        "--model",
        "churn",
        "--data",
        str(tmp_path / "Customer Export.csv"),
        "--mapping",
        str(mapping),
    )
    assert again.exit_code == 0, again.output
    assert "churn-customer-export:2" in again.output and "not promoted" in again.output

    fresh = exported.drop(columns=["Churn"]).head(30).astype(str)
    fresh.loc[0, "Contract"] = "Three year"  # never seen in training
    fresh.loc[1, "Tenure (months)"] = ""
    fresh.to_csv(tmp_path / "fresh.csv", index=False)
    scored = _sfe(
        tmp_path / "reg",
        "models",
        "score",
        "churn-customer-export",
        "--data",
        str(tmp_path / "fresh.csv"),
        "--out",
        str(tmp_path / "scores.csv"),
    )
    assert scored.exit_code == 0, scored.output
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert len(scores) == 30
    assert scores["customerID"].tolist() == fresh["customerID"].tolist()
    assert scores["probability"].between(0, 1).all()
    assert set(scores["model_version"]) == {1}
    assert scores["top_factors"].str.contains(r"\(", regex=True).any()

    drifted = _sfe(
        tmp_path / "reg",
        "models",
        "drift",
        "churn-customer-export:1",
        "--data",
        str(tmp_path / "fresh.csv"),
    )
    assert drifted.exit_code == 0 and "contract" in drifted.output


def test_scoring_a_file_without_the_model_inputs_is_refused(
    trained: dict[str, TrainResult], registry: Registry, tmp_path: Path
) -> None:
    write_churn_export(tmp_path / "other.csv", rows=20)
    result = _sfe(
        registry.root,
        "models",
        "score",
        "churn",
        "--data",
        str(tmp_path / "other.csv"),
        "--out",
        str(tmp_path / "s.csv"),
    )
    assert result.exit_code == 1
    assert "lacks inputs of churn:1" in result.output


@pytest.mark.parametrize(
    "args", [(), ("--all", "--model", "win"), ("--model", "win", "--target", "x")]
)
def test_train_usage_errors(tmp_path: Path, args: tuple[str, ...]) -> None:
    assert _sfe(tmp_path, "train", *args).exit_code == 2
