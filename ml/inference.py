"""In-process serving: a verified ONNX session per model version, batch and single-row APIs.

:func:`load_model` checks, in order, that the model file exists, that its SHA-256 matches
the manifest, that onnxruntime can load it, that its inputs are exactly the manifest's
features, and (when the caller serves it with a feature definition) that those are the
definition's features; any failure raises :class:`ModelLoadError` naming the file.
Sessions are created once per process and shared. Only onnxruntime, numpy, pandas and
the feature code are needed here.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
import pandas as pd

from ml.drift import DriftWindow
from ml.errors import FeatureMismatchError, ModelLoadError
from ml.features.spec import FeatureSet, Record
from ml.registry import MODEL_FILE, Manifest, Registry, sha256_file

_ONNX_TYPES = {"numeric": "tensor(float)", "categorical": "tensor(string)"}
_SESSIONS: dict[tuple[Path, str], ort.InferenceSession] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Prediction:
    """One scored row: the probability and the model version that produced it."""

    model_name: str
    model_version: int
    probability: float


class Scorer(Protocol):
    """What a decision needs from a model; tests pass a fixed one, serving a :class:`LoadedModel`."""

    @property
    def name(self) -> str:
        """Registry name of the model."""
        ...

    @property
    def version(self) -> int:
        """Registry version of the model."""
        ...

    def predict(
        self, data: pd.DataFrame | Sequence[Record], as_of: date | None = None
    ) -> list[Prediction]:
        """One prediction per row, in order."""
        ...

    def predict_one(self, record: Record, as_of: date | None = None) -> Prediction:
        """The prediction of one record."""
        ...


def _session(path: Path, digest: str) -> ort.InferenceSession:
    """The process-wide session of one model file (created on first use)."""
    key = (path.resolve(), digest)
    with _LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            try:
                session = ort.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:
                raise ModelLoadError(f"{path}: onnxruntime cannot load the model ({exc})") from None
            _SESSIONS[key] = session
        return session


def _describe_difference(have: list[tuple[str, str]], want: list[tuple[str, str]]) -> str:
    have_d, want_d = dict(have), dict(want)
    missing = [n for n in want_d if n not in have_d]
    unexpected = [n for n in have_d if n not in want_d]
    retyped = [
        f"{n} ({have_d[n]} != {want_d[n]})"
        for n in want_d
        if n in have_d and have_d[n] != want_d[n]
    ]
    parts = [
        f"missing {', '.join(missing)}" if missing else "",
        f"unexpected {', '.join(unexpected)}" if unexpected else "",
        f"type changed {', '.join(retyped)}" if retyped else "",
    ]
    if not any(parts) and [n for n, _ in have] != [n for n, _ in want]:
        parts.append("same features in another order")
    return "; ".join(p for p in parts if p)


class LoadedModel:
    """A verified model version ready to score."""

    def __init__(
        self, manifest: Manifest, features: FeatureSet, session: ort.InferenceSession, path: Path
    ) -> None:
        """Wrap a session whose inputs were checked against ``features``."""
        self.manifest = manifest
        self.features = features
        self.session = session
        self.path = path
        self._output = str(manifest.onnx["output"])
        self._column = int(manifest.onnx["column"])
        self.drift = DriftWindow(features, manifest.drift_reference)
        """The model's recent inputs, for their PSI against training (fed by scoring)."""

    @property
    def name(self) -> str:
        """Registry name of the model."""
        return self.manifest.name

    @property
    def version(self) -> int:
        """Registry version of the model."""
        return self.manifest.version

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Positive-class probabilities for ONNX inputs built by the feature set."""
        (output,) = self.session.run([self._output], feeds)
        return np.asarray(output)[:, self._column].astype(np.float64)

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Probabilities of a cleaned feature frame, in one ONNX call."""
        return self.run(self.features.feeds(frame))

    def predict(
        self, data: pd.DataFrame | Sequence[Record], as_of: date | None = None
    ) -> list[Prediction]:
        """Batch API: one prediction per row or record, in order."""
        probabilities = self.predict_frame(self.features.frame(data, as_of))
        return [Prediction(self.name, self.version, float(p)) for p in probabilities]

    def predict_one(self, record: Record, as_of: date | None = None) -> Prediction:
        """Single-row API: the low-latency path, no frame is built."""
        probability = float(self.run(self.features.row_feeds(record, as_of))[0])
        return Prediction(self.name, self.version, probability)


def load_model(registry: Registry, ref: str, expected: FeatureSet | None = None) -> LoadedModel:
    """Load and verify ``ref`` (``name`` for the promoted version, or ``name:version``)."""
    manifest = registry.resolve(ref)
    path = registry.directory(manifest.name, manifest.version) / str(
        manifest.onnx.get("file", MODEL_FILE)
    )
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file missing for {manifest.ref}")
    digest = sha256_file(path)
    if digest != manifest.onnx["sha256"]:
        raise ModelLoadError(
            f"{path}: corrupt or mismatched model file for {manifest.ref} "
            f"(sha256 {digest[:12]}..., manifest says {str(manifest.onnx['sha256'])[:12]}...)"
        )
    features = FeatureSet.from_description(manifest.name, manifest.features)
    session = _session(path, digest)
    inputs = [(i.name, str(i.type)) for i in session.get_inputs()]
    declared = [(name, _ONNX_TYPES[kind]) for name, kind in features.signature()]
    if inputs != declared:
        raise ModelLoadError(
            f"{path}: the model's inputs do not match its manifest ({_describe_difference(inputs, declared)})"
        )
    if expected is not None:
        if features.signature() != expected.signature():
            difference = _describe_difference(features.signature(), expected.signature())
            raise FeatureMismatchError(
                f"{path}: model {manifest.ref} does not take the inputs of feature definition "
                f"{expected.name!r} ({difference}); refusing to serve it"
            )
        features = expected
    return LoadedModel(manifest, features, session, path)


def describe_inputs(model: LoadedModel) -> list[dict[str, Any]]:
    """Input names, types and shapes of a loaded model (for ``sfe models show``)."""
    return [{"name": i.name, "type": i.type, "shape": i.shape} for i in model.session.get_inputs()]
