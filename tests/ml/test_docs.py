"""The Python examples of docs/ml.md run against the session's registry."""

from __future__ import annotations

import re
from pathlib import Path

from ml.registry import Registry
from ml.training.pipeline import TrainResult

DOC = Path(__file__).resolve().parents[2] / "docs" / "ml.md"


def test_python_examples_in_the_ml_guide_run(
    trained: dict[str, TrainResult], registry: Registry
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), {"models_dir": registry.root})
