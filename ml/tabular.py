"""Training data from a CSV export with unknown column names (e.g. a Salesforce report).

Every column is read as text. Unless a mapping says otherwise, a column is *numeric*
when at least 95 % of its non-blank values parse as numbers, else *categorical*; these
columns are left out, with the reason reported: the target, constant columns,
identifiers (a name such as ``id``/``customerID``/``RowNumber`` with unique values) and
free text (a categorical column with more than 100 distinct values). A mapping file
(YAML) can name the target, the positive label, and columns to treat as ``numeric``,
``categorical`` or to ``ignore``::

    target: Churn
    positive: "Yes"
    numeric: [tenure, TotalCharges]
    categorical: [SeniorCitizen]
    ignore: [customerID]

Binary targets may be given as yes/no, true/false, 1/0, churned/stayed and the like; a
target with more values needs ``positive`` unless exactly one value reads as positive.
Feature names are the column names made into identifiers; the original column name is
kept as an alias, so the same export can be scored by name later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ml.errors import DataError
from ml.features.spec import Feature, FeatureSet, FeatureType, clean_number
from ml.training.data import TrainingData

NUMERIC_SHARE = 0.95
MAX_CATEGORIES = 100
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "-"})
POSITIVE_TOKENS = frozenset(
    {
        "1",
        "1.0",
        "yes",
        "y",
        "true",
        "t",
        "churn",
        "churned",
        "exited",
        "left",
        "lost",
        "cancelled",
        "canceled",
        "won",
        "converted",
        "positive",
        "bad",
        "default",
        "attrited customer",
    }
)
NEGATIVE_TOKENS = frozenset(
    {
        "0",
        "0.0",
        "no",
        "n",
        "false",
        "f",
        "stayed",
        "retained",
        "active",
        "existing customer",
        "current",
        "negative",
        "good",
        "not churned",
        "renewed",
    }
)
_ID_NAME = re.compile(
    r"(^|[^A-Za-z])(id|ID|Id|uuid|UUID|key|Key)$|[a-z](ID|Id|Key|UUID)$"
    r"|^([Rr]ow_?[Nn](umber|um)|[Ii]ndex|Unnamed: ?0)$"
)


@dataclass(frozen=True)
class ColumnMapping:
    """What a mapping file says; every part is optional."""

    target: str | None = None
    positive: str | None = None
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()

    @classmethod
    def from_yaml(cls, path: Path) -> ColumnMapping:
        """Read a mapping file; unknown keys are an error, so typos do not pass silently."""
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, Mapping):
            raise DataError(f"{path}: a mapping file is a YAML mapping")
        unknown = set(data) - {"target", "positive", "numeric", "categorical", "ignore"}
        if unknown:
            raise DataError(f"{path}: unknown keys {sorted(unknown)}")
        return cls(
            target=data.get("target"),
            positive=None if data.get("positive") is None else str(data["positive"]),
            numeric=tuple(str(c) for c in data.get("numeric") or ()),
            categorical=tuple(str(c) for c in data.get("categorical") or ()),
            ignore=tuple(str(c) for c in data.get("ignore") or ()),
        )


@dataclass
class CsvTrainingData:
    """Training data read from a CSV, and what was decided about each column."""

    data: TrainingData
    notes: list[str] = field(default_factory=list)


def _delimiter(header: str) -> str:
    """The most frequent of comma, semicolon and tab in the header line."""
    return max((",", ";", "\t"), key=header.count)


def read_csv(path: Path) -> pd.DataFrame:
    """A CSV with every value as text (blank for empty cells).

    UTF-8 with or without a byte-order mark (as spreadsheet and Salesforce report
    exports write it), else Latin-1; comma, semicolon or tab separated.
    """
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            with path.open(encoding=encoding) as handle:
                separator = _delimiter(handle.readline())
            table = pd.read_csv(
                path, dtype=str, keep_default_na=False, sep=separator, encoding=encoding
            )
            break
        except UnicodeDecodeError:
            continue
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read CSV ({exc})") from None
    else:
        raise DataError(f"{path}: not UTF-8 or Latin-1 text")
    if table.empty:
        raise DataError(f"{path}: no rows")
    return table


def is_identifier(column: str) -> bool:
    """Whether a column's name reads as a record identifier (``Id``, ``customerID``, ``RowNumber``)."""
    return bool(_ID_NAME.search(column.strip()))


def identifier(column: str, taken: set[str]) -> str:
    """A column name as a unique snake_case identifier (the ONNX input name)."""
    name = (
        re.sub(r"[^0-9a-zA-Z]+", "_", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", column))
        .strip("_")
        .lower()
    )
    name = name or "column"
    if name[0].isdigit():
        name = "f_" + name
    unique, n = name, 2
    while unique in taken:
        unique, n = f"{name}_{n}", n + 1
    taken.add(unique)
    return unique


def _present(values: pd.Series) -> pd.Series:
    stripped = values.str.strip()
    return stripped[~stripped.str.lower().isin(MISSING_TOKENS)]


def infer_type(values: pd.Series) -> FeatureType:
    """Numeric when at least 95 % of the non-blank values are numbers."""
    present = _present(values)
    if present.empty:
        return FeatureType.CATEGORICAL
    parsed = np.array([clean_number(v) for v in present])
    return (
        FeatureType.NUMERIC
        if np.isfinite(parsed).mean() >= NUMERIC_SHARE
        else FeatureType.CATEGORICAL
    )


def encode_target(
    values: pd.Series, positive: str | None, column: str
) -> tuple[np.ndarray, np.ndarray, str]:
    """0/1 labels, the mask of rows with a target, and the positive label."""
    text = values.str.strip()
    known = ~text.str.lower().isin(MISSING_TOKENS - {"-"}) & (text != "")
    labels = sorted(set(text[known]))
    if positive is None:
        positive = _positive_label(labels, column)
    if positive not in labels:
        raise DataError(f"positive label {positive!r} does not occur in target {column!r}")
    return (text == positive).to_numpy().astype(np.int64), known.to_numpy(), positive


def _positive_label(labels: list[str], column: str) -> str:
    """The positive class of a target, from its values alone."""
    numbers = [clean_number(label) for label in labels]
    if len(labels) == 2 and all(np.isfinite(numbers)):
        return labels[int(np.argmax(numbers))]
    positives = [label for label in labels if label.lower() in POSITIVE_TOKENS]
    negatives = [label for label in labels if label.lower() in NEGATIVE_TOKENS]
    if len(positives) == 1:
        return positives[0]
    if len(labels) == 2 and len(negatives) == 1:
        return next(label for label in labels if label != negatives[0])
    raise DataError(
        f"cannot tell the positive class of target {column!r} (values: {', '.join(labels[:10])}); "
        "name it with `positive:` in a mapping file"
    )


def _choose_columns(
    table: pd.DataFrame, target: str, mapping: ColumnMapping
) -> tuple[list[tuple[str, FeatureType]], list[str]]:
    declared = {c: FeatureType.NUMERIC for c in mapping.numeric} | {
        c: FeatureType.CATEGORICAL for c in mapping.categorical
    }
    missing = [c for c in [*declared, *mapping.ignore] if c not in table.columns]
    if missing:
        raise DataError(f"the mapping names columns the file does not have: {', '.join(missing)}")
    chosen: list[tuple[str, FeatureType]] = []
    notes: list[str] = []
    for column in table.columns:
        if column == target or column in mapping.ignore:
            continue
        if column in declared:
            chosen.append((column, declared[column]))
            continue
        values = table[column]
        present = _present(values)
        distinct = present.nunique()
        kind = infer_type(values)
        if distinct <= 1:
            notes.append(f"ignored {column!r}: constant")
        elif is_identifier(column) and distinct >= 0.9 * len(present):
            notes.append(f"ignored {column!r}: an identifier")
        elif kind is FeatureType.CATEGORICAL and distinct > MAX_CATEGORIES:
            notes.append(f"ignored {column!r}: free text ({distinct} distinct values)")
        else:
            chosen.append((column, kind))
    return chosen, notes


def _find_column(table: pd.DataFrame, name: str, path: Path) -> str:
    """The column called ``name``, or the one column that matches it ignoring case and spaces."""
    if name in table.columns:
        return name
    matches = [c for c in table.columns if str(c).strip().lower() == name.strip().lower()]
    if len(matches) == 1:
        return str(matches[0])
    raise DataError(f"{path}: no column {name!r} (columns: {', '.join(map(str, table.columns))})")


def load_training_csv(
    path: Path, target: str | None, mapping: ColumnMapping | None = None
) -> CsvTrainingData:
    """Read a CSV export into training data for any model kind."""
    mapping = mapping or ColumnMapping()
    table = read_csv(path)
    target = target or mapping.target
    if not target:
        raise DataError("no target column: pass --target or set `target:` in the mapping")
    target = _find_column(table, target, path)
    y, known, positive = encode_target(table[target], mapping.positive, target)
    chosen, notes = _choose_columns(table, target, mapping)
    if not chosen:
        raise DataError(f"{path}: no usable feature columns")
    if not known.all():
        notes.append(f"dropped {int((~known).sum())} rows without a value in {target!r}")
    taken: set[str] = set()
    features = FeatureSet(
        path.stem,
        tuple(
            Feature(identifier(column, taken), kind, f"{path.name} column {column!r}", (column,))
            for column, kind in chosen
        ),
    )
    frame = features.frame(table.loc[known].reset_index(drop=True))
    notes.append(
        "features: " + ", ".join(f"{f.aliases[0]} ({f.type.value})" for f in features.features)
    )
    data = TrainingData(features, frame, y[known], target, positive, f"{path.name}")
    return CsvTrainingData(data, notes)


def describe_mapping(data: TrainingData) -> str:
    """The mapping file that reproduces the inferred column types of a trained feature set."""
    import yaml

    features = data.features
    document = {
        "target": data.target,
        "positive": data.positive,
        "numeric": [f.aliases[0] for f in features.features if f.type is FeatureType.NUMERIC],
        "categorical": [
            f.aliases[0] for f in features.features if f.type is FeatureType.CATEGORICAL
        ],
    }
    return str(yaml.safe_dump(document, sort_keys=False))
