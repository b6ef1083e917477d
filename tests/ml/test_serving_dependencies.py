"""Serving must not need the training stack (TensorFlow, skl2onnx, scikit-learn, matplotlib)."""

from __future__ import annotations

import subprocess
import sys

SERVING_MODULES = [
    "ml.services",
    "ml.inference",
    "ml.explain",
    "ml.drift",
    "ml.scoring",
    "ml.cli",
]
TRAINING_ONLY = [
    "tensorflow",
    "keras",
    "tf2onnx",
    "skl2onnx",
    "onnx",
    "sklearn",
    "matplotlib",
    "yaml",
]


def test_serving_modules_import_no_training_library() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in SERVING_MODULES)
        + f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({TRAINING_ONLY!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
