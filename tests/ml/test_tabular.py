from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml.errors import DataError
from ml.features import FeatureType
from ml.tabular import ColumnMapping, encode_target, identifier, infer_type, load_training_csv
from tests.ml.helpers import write_churn_export


@pytest.mark.parametrize(
    ("values", "positive"),
    [
        (["Yes", "No", "no"], "Yes"),
        (["True", "False"], "True"),
        (["1", "0"], "1"),
        (["1.0", "0.0"], "1.0"),
        (["2", "1"], "2"),
        (["Churned", "Stayed", "Joined"], "Churned"),
        (["Attrited Customer", "Existing Customer"], "Attrited Customer"),
        (["Gone", "Stayed"], "Gone"),
    ],
)
def test_binary_targets_in_many_spellings(values: list[str], positive: str) -> None:
    y, known, label = encode_target(pd.Series([*values, ""]), None, "target")
    assert label == positive
    assert known.tolist() == [True] * len(values) + [False]
    assert y[: len(values)].tolist() == [int(v == positive) for v in values]


def test_an_ambiguous_target_needs_a_positive_label() -> None:
    with pytest.raises(DataError, match="positive"):
        encode_target(pd.Series(["red", "blue"]), None, "colour")
    y, _, label = encode_target(pd.Series(["red", "blue"]), "red", "colour")
    assert (label, y.tolist()) == ("red", [1, 0])


def test_column_types_and_names_are_inferred() -> None:
    assert infer_type(pd.Series(["1", "2.5", " ", "1,000"])) is FeatureType.NUMERIC
    assert infer_type(pd.Series(["1", "two", "3"])) is FeatureType.CATEGORICAL
    taken: set[str] = set()
    assert identifier("Monthly Charges", taken) == "monthly_charges"
    assert identifier("TotalCharges", taken) == "total_charges"
    assert identifier("total charges", taken) == "total_charges_2"
    assert identifier("30d usage", taken) == "f_30d_usage"


def test_an_export_becomes_training_data(tmp_path: Path) -> None:
    write_churn_export(tmp_path / "export.csv")
    loaded = load_training_csv(tmp_path / "export.csv", "Churn")
    features = loaded.data.features
    assert features.signature() == [
        ("tenure_months", "numeric"),
        ("total_charges", "numeric"),
        ("contract", "categorical"),
    ]
    assert features.features[0].aliases == ("Tenure (months)",)
    notes = " ".join(loaded.notes)
    for reason in (
        "'customerID': an identifier",
        "'RowNumber': an identifier",
        "'Surname': free text",
        "'Region': constant",
    ):
        assert reason in notes
    assert loaded.data.positive == "Yes"
    assert (
        loaded.data.frame["total_charges"].isna().sum()
        == (loaded.data.frame["tenure_months"] == 0).sum()
    )


def test_a_mapping_overrides_inference(tmp_path: Path) -> None:
    write_churn_export(tmp_path / "export.csv")
    (tmp_path / "mapping.yaml").write_text(
        "target: Churn\npositive: 'No'\ncategorical: [Tenure (months)]\nignore: [TotalCharges]\n"
    )
    loaded = load_training_csv(
        tmp_path / "export.csv", None, ColumnMapping.from_yaml(tmp_path / "mapping.yaml")
    )
    assert loaded.data.features.signature() == [
        ("tenure_months", "categorical"),
        ("contract", "categorical"),
    ]
    assert loaded.data.positive == "No"
    (tmp_path / "typo.yaml").write_text("numerics: [a]\n")
    with pytest.raises(DataError, match="unknown keys"):
        ColumnMapping.from_yaml(tmp_path / "typo.yaml")


def test_missing_target_column_is_reported(tmp_path: Path) -> None:
    write_churn_export(tmp_path / "export.csv")
    assert load_training_csv(tmp_path / "export.csv", "churn ").data.target == "Churn"
    with pytest.raises(DataError, match="no column 'Exited'"):
        load_training_csv(tmp_path / "export.csv", "Exited")


def test_exports_with_a_byte_order_mark_and_semicolons_are_read(tmp_path: Path) -> None:
    from ml.tabular import read_csv

    (tmp_path / "report.csv").write_bytes(
        "\ufeffAccount ID;Seats;Churned\n001;5;true\n002;;false\n".encode()
    )
    table = read_csv(tmp_path / "report.csv")
    assert list(table.columns) == ["Account ID", "Seats", "Churned"]
    assert table["Seats"].tolist() == ["5", ""]


def test_a_bank_style_export_with_numeric_ids_and_a_0_1_target_trains(tmp_path: Path) -> None:
    from ml.registry import Registry
    from ml.training.estimators import Hyperparameters
    from ml.training.pipeline import train

    rng = np.random.default_rng(4)
    rows = 700
    age = rng.integers(18, 80, rows)
    active = rng.integers(0, 2, rows)
    exited = (0.04 * (age - 40) - 1.2 * active + rng.normal(0, 0.8, rows) > 0).astype(int)
    pd.DataFrame(
        {
            "RowNumber": range(1, rows + 1),
            "CustomerId": rng.permutation(15_600_000 + np.arange(rows)),
            "Surname": [f"S{i}" for i in rng.integers(0, 400, rows)],
            "Geography": rng.choice(["France", "Spain", "Germany"], rows),
            "Age": age,
            "Balance": [f"{b:.2f}" for b in rng.uniform(0, 2e5, rows)],
            "IsActiveMember": active,
            "Exited": exited,
        }
    ).to_csv(tmp_path / "Churn_Modelling.csv", index=False)
    loaded = load_training_csv(tmp_path / "Churn_Modelling.csv", "Exited")
    assert [f.name for f in loaded.data.features.features] == [
        "geography",
        "age",
        "balance",
        "is_active_member",
    ]
    assert loaded.data.positive == "1"
    result = train(
        "churn", loaded.data, Registry(tmp_path / "reg"), name="bank", hp=Hyperparameters(trees=30)
    )
    assert result.manifest.metrics["validation"]["roc_auc"] > 0.7
