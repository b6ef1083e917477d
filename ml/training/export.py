"""Export of native models to ONNX, and the parity check between the two.

Every exported model has the same shape: one input per feature (``float32 [N, 1]`` or
``string [N, 1]``, named after the feature) and one probability output. scikit-learn
pipelines are converted whole by skl2onnx, classifier ``zipmap`` off. The Keras network
is converted by tf2onnx and appended to the skl2onnx conversion of its preprocessor, so
serving feeds raw features to one graph and needs neither scikit-learn nor TensorFlow.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from onnx import compose
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType

from ml.errors import MLError
from ml.features.spec import FeatureSet, FeatureType
from ml.training.estimators import KerasModel, NativeModel, SklearnModel

PARITY_TOLERANCE = {"sklearn": 1e-5, "keras": 1e-4}
_NETWORK_PREFIX = "network_"


class ParityError(MLError):
    """The ONNX export disagrees with the native model beyond the tolerance."""


@dataclass(frozen=True)
class Exported:
    """An ONNX model, its probability output, and which column of it is the positive class."""

    model: onnx.ModelProto
    output: str
    column: int
    tolerance: float

    def serialize(self) -> bytes:
        """The ONNX file's bytes."""
        return bytes(self.model.SerializeToString())


def _initial_types(features: FeatureSet) -> list[tuple[str, Any]]:
    return [
        (
            f.name,
            FloatTensorType([None, 1])
            if f.type is FeatureType.NUMERIC
            else StringTensorType([None, 1]),
        )
        for f in features.features
    ]


def export(native: NativeModel, features: FeatureSet, name: str) -> Exported:
    """Convert a native model to ONNX with one input per feature."""
    if isinstance(native, SklearnModel):
        classifier = native.pipeline.steps[-1][1]
        model = convert_sklearn(
            native.pipeline,
            name=name,
            initial_types=_initial_types(features),
            options={id(classifier): {"zipmap": False}},
        )
        exported = Exported(model, "probabilities", 1, PARITY_TOLERANCE["sklearn"])
    elif isinstance(native, KerasModel):
        exported = Exported(
            _export_network(native, features),
            _NETWORK_PREFIX + "probability",
            0,
            PARITY_TOLERANCE["keras"],
        )
    else:
        raise TypeError(f"cannot export {type(native).__name__}")
    exported.model.doc_string = f"{name}: inputs {', '.join(features.names)}"
    return exported


def _export_network(native: KerasModel, features: FeatureSet) -> onnx.ModelProto:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)

    prep = convert_sklearn(native.preprocess, initial_types=_initial_types(features))
    opsets = {o.domain: o.version for o in prep.opset_import}
    width = int(native.network.inputs[0].shape[1])
    signature = (tf.TensorSpec((None, width), tf.float32, name="features"),)
    network, _ = tf2onnx.convert.from_keras(
        native.network, input_signature=signature, opset=opsets[""]
    )
    if any(node.domain not in ("", "ai.onnx") for node in network.graph.node):
        raise MLError("the network's ONNX graph uses operators outside the default domain")
    del network.opset_import[:]
    network.opset_import.extend(prep.opset_import)
    network.ir_version = prep.ir_version
    network = compose.add_prefix(network, _NETWORK_PREFIX)
    merged = compose.merge_models(
        prep, network, io_map=[(prep.graph.output[0].name, _NETWORK_PREFIX + "features")]
    )
    onnx.checker.check_model(merged)
    return merged


def session(exported: Exported) -> ort.InferenceSession:
    """An onnxruntime session of an export (quiet: optimiser notices are not errors)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(exported.serialize(), options, providers=["CPUExecutionProvider"])


def onnx_probabilities(
    session: ort.InferenceSession, exported_output: str, column: int, feeds: dict[str, np.ndarray]
) -> np.ndarray:
    """Positive-class probabilities from one ONNX run."""
    (output,) = session.run([exported_output], feeds)
    return np.asarray(output)[:, column].astype(np.float64)


def check_parity(
    native: NativeModel, exported: Exported, features: FeatureSet, frame: pd.DataFrame
) -> float:
    """Largest absolute difference between ONNX and native probabilities on ``frame``.

    Raises :class:`ParityError` when it exceeds the export's tolerance.
    """
    onnx_p = onnx_probabilities(
        session(exported), exported.output, exported.column, features.feeds(frame)
    )
    native_p = native.predict_proba(frame)
    difference = float(np.max(np.abs(onnx_p - native_p))) if len(frame) else 0.0
    if not difference <= exported.tolerance:
        raise ParityError(
            f"ONNX export differs from the native model by {difference:.2e} "
            f"(tolerance {exported.tolerance:.0e}) on {len(frame)} validation rows"
        )
    return difference
