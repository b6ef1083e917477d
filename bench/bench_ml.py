"""Inference latency and throughput of the four models: ONNX (served) against native.

Trains each model as `sfe train --all` does (same rows and hyperparameters) into a
temporary registry, loads it through the serving path, and measures on held-out
synthetic records:

* single row, p50 and p99 over many calls: ONNX from a raw Salesforce-shaped record
  (feature derivation and encoding included), ONNX from prepared inputs, and the native
  model (scikit-learn pipeline or Keras network) on a one-row feature frame;
* a batch of 1,000 rows: median time and rows per second, ONNX (encoding of the
  cleaned frame included) against native.

Usage: ``.venv/bin/python bench/bench_ml.py [--repeat 2000]``. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ml.features import FEATURE_SETS
from ml.inference import load_model
from ml.registry import Registry
from ml.synthetic import AS_OF, synthetic_dataset
from ml.training.estimators import MODEL_KINDS
from ml.training.pipeline import synthetic_training_data, train

BATCH = 1_000


def _latencies(call: Callable[[int], object], repeat: int) -> np.ndarray:
    """Seconds per call, after a warm-up; the argument cycles through prepared rows."""
    for i in range(min(repeat // 10, 100)):
        call(i)
    times = np.empty(repeat)
    for i in range(repeat):
        start = time.perf_counter()
        call(i)
        times[i] = time.perf_counter() - start
    return times


def _us(times: np.ndarray, q: float) -> str:
    return f"{np.percentile(times, q) * 1e6:,.0f}"


def bench(kind: str, registry: Registry, repeat: int) -> list[str]:
    """Table rows for one model."""
    result = train(kind, synthetic_training_data(kind), registry)
    features = FEATURE_SETS[kind]
    model = load_model(registry, kind, features)
    records = synthetic_dataset(kind, BATCH, seed=12345).records
    rows = records.to_dict(orient="records")
    frame = features.frame(records, AS_OF)
    feeds = [features.row_feeds(r, AS_OF) for r in rows[:200]]
    single_frames = [frame.iloc[[i]] for i in range(200)]

    onnx_record = _latencies(lambda i: model.predict_one(rows[i % len(rows)], AS_OF), repeat)
    onnx_feeds = _latencies(lambda i: model.run(feeds[i % 200]), repeat)
    native_one = _latencies(
        lambda i: result.native.predict_proba(single_frames[i % 200]), max(repeat // 4, 200)
    )
    onnx_batch = _latencies(lambda _: model.predict_frame(frame), 50)
    native_batch = _latencies(lambda _: result.native.predict_proba(frame), 20)
    np.testing.assert_allclose(
        model.predict_frame(frame), result.native.predict_proba(frame), atol=1e-4
    )

    def rate(times: np.ndarray) -> str:
        return f"{BATCH / np.median(times):,.0f}"

    return [
        f"| {kind} | ONNX, from a record | {_us(onnx_record, 50)} | {_us(onnx_record, 99)} | | |",
        f"| {kind} | ONNX, prepared inputs | {_us(onnx_feeds, 50)} | {_us(onnx_feeds, 99)} "
        f"| {np.median(onnx_batch) * 1e3:.2f} | {rate(onnx_batch)} |",
        f"| {kind} | native ({type(result.native).__name__}) | {_us(native_one, 50)} | {_us(native_one, 99)} "
        f"| {np.median(native_batch) * 1e3:.2f} | {rate(native_batch)} |",
    ]


def main() -> None:
    """Run the benchmark for every model and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2000, help="single-row calls per measurement")
    parser.add_argument(
        "--model", choices=MODEL_KINDS, action="append", help="limit to these models"
    )
    args = parser.parse_args()
    lines = [
        "| model | path | single row p50 (µs) | single row p99 (µs) | batch of 1,000 (ms) | rows/s |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as root:
        registry = Registry(Path(root))
        for kind in args.model or MODEL_KINDS:
            lines.extend(bench(kind, registry, args.repeat))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
