"""The ``sfe train`` command and the ``sfe models`` group (list, show, promote, score, drift).

Training modules (scikit-learn export, TensorFlow, matplotlib) are imported only when
``sfe train`` runs, so the serving commands and ``--help`` stay light. Errors of the
``ml`` package end the command with exit code 1 and their message.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from ml.errors import MLError
from ml.registry import Manifest, Registry, parse_ref
from ml.training.data import TrainingData
from sfe.audit_cli import record_admin_action
from sfe.logging import configure_logging
from sfe.settings import Settings, SettingsError, load_settings

KINDS = ("churn", "lead", "upsell", "win")


def _registry(ctx: click.Context) -> Registry:
    """The registry named by the settings, loaded once per invocation as `sfe` does."""
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        try:
            root.obj = load_settings()
        except SettingsError as exc:
            click.echo(f"sfe: {exc}", err=True)
            ctx.exit(2)
        configure_logging(root.obj.log_level)
    return Registry(root.obj.models_path)


@contextmanager
def _ml_errors() -> Iterator[None]:
    try:
        yield
    except MLError as exc:
        raise click.ClickException(str(exc)) from None


def _metric(manifest: Manifest, key: str) -> str:
    value = manifest.metrics.get("validation", {}).get(key)
    return "-" if value is None else f"{value:.3f}"


def _summary(manifest: Manifest) -> str:
    return (
        f"{manifest.ref}: ROC AUC {_metric(manifest, 'roc_auc')}, PR AUC {_metric(manifest, 'pr_auc')}, "
        f"Brier {_metric(manifest, 'brier')}, parity {manifest.parity['max_abs_difference']:.1e}"
    )


def _csv_training_data(
    kind: str, data: Path, target: str | None, mapping: Path | None
) -> tuple[TrainingData, str]:
    """Training data read from an export, and its default registry name ``<kind>-<file>``."""
    from ml.tabular import ColumnMapping, load_training_csv

    loaded = load_training_csv(data, target, ColumnMapping.from_yaml(mapping) if mapping else None)
    for note in loaded.notes:
        click.echo(f"  {note}")
    slug = re.sub(r"[^a-z0-9]+", "-", data.stem.lower()).strip("-")[:40].strip("-") or "csv"
    return loaded.data, f"{kind}-{slug}"


@click.command("train")
@click.option("--model", "kind", type=click.Choice(KINDS), help="Model to train.")
@click.option("--all", "train_all", is_flag=True, help="Train all four models on synthetic data.")
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV export to train on.",
)
@click.option(
    "--target", help="Outcome column of the CSV (yes/no, true/false, 1/0, churned/stayed ...)."
)
@click.option(
    "--mapping",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML: column types.",
)
@click.option("--name", help="Registry name (default: the model, or MODEL-<file> for a CSV).")
@click.option("--rows", type=click.IntRange(min=100), help="Synthetic rows per model.")
@click.option(
    "--seed", type=int, default=7, show_default=True, help="Seed of data, split and learners."
)
@click.option(
    "--promote/--no-promote",
    default=None,
    help="Promote the new version (default: only a first version).",
)
@click.pass_context
def train(
    ctx: click.Context,
    kind: str | None,
    train_all: bool,
    data: Path | None,
    target: str | None,
    mapping: Path | None,
    name: str | None,
    rows: int | None,
    seed: int,
    promote: bool | None,
) -> None:
    """Train, evaluate, export to ONNX and register models.

    `sfe train --all` trains every model on synthetic CRM histories;
    `sfe train --model churn --data export.csv --target Churn` trains on a CSV export.
    """
    if train_all == bool(kind):
        raise click.UsageError("give exactly one of --model or --all")
    if data is not None and train_all:
        raise click.UsageError("--data trains one model: use --model")
    if data is None and (target or mapping):
        raise click.UsageError("--target and --mapping apply to --data")
    if train_all and name:
        raise click.UsageError("--name names one model: use --model")
    if data is not None and rows:
        raise click.UsageError("--rows applies to synthetic data, not to --data")
    registry = _registry(ctx)
    from ml.training.estimators import Hyperparameters
    from ml.training.pipeline import synthetic_training_data
    from ml.training.pipeline import train as train_model

    started = time.perf_counter()
    with _ml_errors():
        for model_kind in KINDS if train_all else (str(kind),):
            step = time.perf_counter()
            if data is not None:
                training, registry_name = _csv_training_data(model_kind, data, target, mapping)
            else:
                training = synthetic_training_data(model_kind, rows, seed)
                registry_name = model_kind
            registry_name = name or registry_name
            result = train_model(
                model_kind,
                training,
                registry,
                name=registry_name,
                hp=Hyperparameters(seed=seed),
                promote=promote,
            )
            manifest = result.manifest
            promoted = registry.promoted(manifest.name)
            state = (
                "promoted"
                if promoted == manifest.version
                else f"not promoted (serving {manifest.name}:{promoted})"
            )
            click.echo(f"{_summary(manifest)}; {state}; {time.perf_counter() - step:.1f}s")
            if data is not None:
                from ml.tabular import describe_mapping

                folder = registry.directory(manifest.name, manifest.version)
                (folder / "mapping.yaml").write_text(describe_mapping(training), encoding="utf-8")
                click.echo(
                    f"  column types: {folder / 'mapping.yaml'} (edit it and pass --mapping to change them)"
                )
                click.echo(
                    f"  score with: sfe models score {manifest.name} --data {data} --out scores.csv"
                )
            click.echo(
                f"  report: {registry.directory(manifest.name, manifest.version) / str(manifest.report)}"
            )
    click.echo(f"done in {time.perf_counter() - started:.1f}s; registry {registry.root}")


@click.group("models")
def models() -> None:
    """Inspect, promote and use the registered models."""


@models.command("list")
@click.pass_context
def models_list(ctx: click.Context) -> None:
    """Every version of every model, with validation metrics; * marks the promoted one."""
    registry = _registry(ctx)
    names = registry.names()
    if not names:
        click.echo(f"no models in {registry.root} (run: sfe train --all)")
        return
    click.echo(
        f"{'model':<28} {'ver':>4}   {'created':<25} {'rows':>7} {'ROC AUC':>8} {'PR AUC':>7} {'Brier':>6}  parent"
    )
    with _ml_errors():
        for name in names:
            promoted = registry.promoted(name)
            for version in registry.versions(name):
                m = registry.manifest(name, version)
                mark = "*" if version == promoted else " "
                click.echo(
                    f"{name:<28} {version:>4} {mark} {m.created_at:<25} {m.training_data['rows']:>7} "
                    f"{_metric(m, 'roc_auc'):>8} {_metric(m, 'pr_auc'):>7} {_metric(m, 'brier'):>6}  "
                    f"{m.parent_version or '-'}"
                )


@models.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest.")
@click.pass_context
def models_show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Describe REF (name for the promoted or else the latest version, or name:version)."""
    registry = _registry(ctx)
    with _ml_errors():
        name, version = parse_ref(ref)
        versions = registry.versions(name)
        if version is None and registry.promoted(name) is None and versions:
            version = versions[-1]
        manifest = registry.resolve(name if version is None else f"{name}:{version}")
    if as_json:
        click.echo(manifest.to_json())
        return
    folder = registry.directory(manifest.name, manifest.version)
    data = manifest.training_data
    click.echo(_summary(manifest))
    click.echo(f"  kind: {manifest.kind} - {manifest.algorithm}")
    click.echo(
        f"  created: {manifest.created_at}; parent version: {manifest.parent_version or '-'}"
    )
    click.echo(
        f"  promoted: {'yes' if registry.promoted(manifest.name) == manifest.version else 'no'}"
    )
    click.echo(
        f"  training data: {data['source']}; {data['rows']} rows; fingerprint {data['fingerprint'][:16]}"
    )
    click.echo(f"  target: {manifest.target['column']} (positive {manifest.target['positive']!r})")
    click.echo(f"  onnx: {folder / manifest.onnx['file']} sha256 {manifest.onnx['sha256']}")
    click.echo(f"  report: {folder / str(manifest.report)}")
    validation = manifest.metrics["validation"]
    click.echo(
        "  validation: "
        + ", ".join(
            f"{k} {validation[k]:.4f}"
            for k in ("roc_auc", "pr_auc", "brier", "log_loss", "expected_calibration_error")
            if validation.get(k) is not None
        )
    )
    click.echo("  features:")
    for feature in manifest.features:
        importance = manifest.feature_importance.get(feature["name"], 0.0)
        click.echo(
            f"    {feature['name']:<28} {feature['type']:<12} importance {importance:+.4f}  {feature['source']}"
        )


@models.command("promote")
@click.argument("ref")
@click.pass_context
def models_promote(ctx: click.Context, ref: str) -> None:
    """Make REF (name:version) the version that serving loads."""
    registry = _registry(ctx)
    with _ml_errors():
        name, version = parse_ref(ref)
        if version is None:
            raise click.UsageError("give the version to promote: NAME:VERSION")
        previous = registry.promoted(name)
        manifest = registry.promote(name, version)
    click.echo(
        f"promoted {manifest.ref} (was {name}:{previous})"
        if previous
        else f"promoted {manifest.ref}"
    )
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    record_admin_action(
        ctx,
        settings,
        "model.promote",
        manifest.ref,
        {"previous": f"{name}:{previous}" if previous else None, "registry": str(registry.root)},
    )


@models.command("score")
@click.argument("ref")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--top", type=click.IntRange(min=0), default=3, show_default=True, help="Factors per row."
)
@click.pass_context
def models_score(ctx: click.Context, ref: str, data: Path, out: Path, top: int) -> None:
    """Score every row of a CSV with REF: probability and top factors per row, in order."""
    from ml.inference import load_model
    from ml.scoring import score_table
    from ml.tabular import read_csv

    registry = _registry(ctx)
    with _ml_errors():
        model = load_model(registry, ref)
        scores = score_table(model, read_csv(data), registry, top)
    scores.to_csv(out, index=False)
    click.echo(f"scored {len(scores)} rows with {model.manifest.ref} -> {out}")


@models.command("drift")
@click.argument("ref")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.pass_context
def models_drift(ctx: click.Context, ref: str, data: Path) -> None:
    """Population stability index of each feature of a CSV against REF's training data."""
    from ml import drift
    from ml.inference import load_model
    from ml.tabular import read_csv

    registry = _registry(ctx)
    with _ml_errors():
        model = load_model(registry, ref)
        values = drift.psi(
            model.features, model.manifest.drift_reference, model.features.frame(read_csv(data))
        )
    click.echo(
        json.dumps(
            {k: round(v, 4) for k, v in sorted(values.items(), key=lambda i: -i[1])}, indent=2
        )
    )
