"""Batch scoring of a table (a CSV export): one probability and the top factors per row.

Rows keep their order; the output has the row number, the record id when the table has
an ``Id``-like column, the model name and version, the probability, and the top factors
as text (``feature (+0.123); ...``). A table that lacks some of the model's features is
refused with their names, since scoring it would silently impute them.
"""

from __future__ import annotations

import pandas as pd

from ml.errors import DataError
from ml.explain import explain_frame
from ml.inference import LoadedModel
from ml.registry import Registry
from ml.tabular import is_identifier


def _matching_models(registry: Registry, columns: list[str]) -> list[str]:
    """Registered models whose every feature the table provides (for the error hint)."""
    from ml.features.spec import FeatureSet

    matches = []
    for name in registry.names():
        manifest = registry.manifest(name, registry.versions(name)[-1])
        features = FeatureSet.from_description(name, manifest.features)
        if not features.absent_from(columns):
            matches.append(name)
    return matches


def score_table(
    model: LoadedModel, table: pd.DataFrame, registry: Registry | None = None, top: int = 3
) -> pd.DataFrame:
    """Score every row of ``table`` with ``model``; see the module docstring for the columns."""
    absent = model.features.absent_from(table.columns)
    if absent:
        hint = ""
        if registry is not None:
            matches = _matching_models(registry, list(table.columns))
            hint = f"; models that fit this file: {', '.join(matches)}" if matches else ""
        raise DataError(f"the data lacks inputs of {model.manifest.ref}: {', '.join(absent)}{hint}")
    frame = model.features.frame(table)
    explanations = explain_frame(model, frame, top)
    output = pd.DataFrame({"row": range(1, len(table) + 1)})
    id_column = next((c for c in table.columns if is_identifier(str(c))), None)
    if id_column is not None:
        output[str(id_column)] = table[id_column].to_numpy()
    output["model_name"] = model.name
    output["model_version"] = model.version
    output["probability"] = [round(e.probability, 6) for e in explanations]
    output["top_factors"] = [
        "; ".join(f"{f.feature} ({f.contribution:+.3f})" for f in e.factors) for e in explanations
    ]
    return output
