"""Single-core cost of batch scoring: ``agents.scoring.score_records`` per model kind.

For each of the four models, scores ``--records`` realistic records (the simulator's
workload generator: leads with ``Einstein_Lead_Score__c`` and ``CreatedDate``, accounts
for churn and upsell, opportunities for win) in one call, ``--repeat`` times after a
warm-up, and prints the best and median wall-clock seconds per call, the best CPU
seconds (steadier on a shared machine) and records per second (from the best call).
ONNX sessions run on one thread, so this is the single-core cost of the whole path:
feature cleaning, the model with its occlusion copies, and the Score objects.

Models: the promoted ones of the registry at ``--registry`` (default
``Settings().models_path``); kinds it lacks are trained small into a temporary
registry (``--train-size full`` trains them at the default, production size instead).

Usage: ``.venv/bin/python bench/bench_scoring.py [--records 2000] [--repeat 15]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from agents.scoring import score_records
from ml.features.definitions import FEATURE_SETS
from ml.inference import LoadedModel, load_model
from ml.registry import Registry
from ml.training.estimators import MODEL_KINDS, Hyperparameters
from sfe.settings import Settings
from simulator import load

SMALL = Hyperparameters(trees=40, forest_trees=30, epochs=8, seed=11)
"""The test suite's model sizes (tests/ml/helpers.py)."""


def workload(kind: str, count: int, seed: int = 11) -> list[dict[str, Any]]:
    """``count`` records for ``kind`` from the simulator's workload generator."""
    rng = random.Random(seed)
    if kind == "lead":
        now = datetime.now(UTC)
        return [
            {
                **fields,
                "Einstein_Lead_Score__c": float(rng.randint(5, 99)),
                "CreatedDate": (now - timedelta(minutes=rng.randint(0, 600_000))).isoformat(),
            }
            for fields in load.leads(rng, count)
        ]
    if kind in ("churn", "upsell"):
        return load.accounts(rng, count)
    return load.opportunities(rng, count, [])


def models(registry_path: Path, kinds: list[str], full_size: bool) -> dict[str, LoadedModel]:
    """The promoted model of each kind, trained into a temporary registry where missing."""
    registry = Registry(registry_path)
    loaded: dict[str, LoadedModel] = {}
    scratch: Registry | None = None
    for kind in kinds:
        try:
            loaded[kind] = load_model(registry, kind, FEATURE_SETS[kind])
            print(f"{kind}: promoted model of {registry_path}")
            continue
        except Exception as exc:  # no registry, no promoted version, or a stale model
            reason = str(exc).splitlines()[0][:80]
        from ml.training.pipeline import synthetic_training_data, train

        if scratch is None:
            scratch = Registry(Path(tempfile.mkdtemp(prefix="bench-scoring-")))
        started = time.perf_counter()
        hp = Hyperparameters() if full_size else SMALL
        train(
            kind, synthetic_training_data(kind, 20_000 if full_size else 2_500, 3), scratch, hp=hp
        )
        loaded[kind] = load_model(scratch, kind, FEATURE_SETS[kind])
        size = "full-size" if full_size else "small"
        print(
            f"{kind}: trained a {size} model in {time.perf_counter() - started:.0f} s "
            f"({reason or 'no model'})"
        )
    return loaded


def measure(
    model: LoadedModel, records: list[dict[str, Any]], repeat: int
) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ``repeat`` calls of ``score_records`` (after a warm-up call)."""
    today = date.today()
    score_records(model, records, today)
    wall, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        scores = score_records(model, records, today)
        cpu.append(time.process_time() - started_cpu)
        wall.append(time.perf_counter() - started)
        assert len(scores) == len(records)
    return wall, cpu


def main() -> None:
    """Parse the arguments, load or train the models, and print one line per kind."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2000, help="records per call")
    parser.add_argument("--repeat", type=int, default=15, help="timed calls per model")
    parser.add_argument("--kinds", default=",".join(MODEL_KINDS), help="comma-separated kinds")
    parser.add_argument("--registry", type=Path, help="model registry (default: settings)")
    parser.add_argument(
        "--train-size",
        choices=("small", "full"),
        default="small",
        help="size of models trained when the registry has none",
    )
    args = parser.parse_args()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    loaded = models(args.registry or Settings().models_path, kinds, args.train_size == "full")
    print(
        f"{'model':<8} {'records':>8} {'best s':>9} {'median s':>9} {'best cpu s':>11} "
        f"{'records/s':>11}"
    )
    for kind in kinds:
        wall, cpu = measure(loaded[kind], workload(kind, args.records), args.repeat)
        best = min(wall)
        print(
            f"{kind:<8} {args.records:>8} {best:>9.4f} {statistics.median(wall):>9.4f} "
            f"{min(cpu):>11.4f} {args.records / best:>11,.0f}"
        )


if __name__ == "__main__":
    main()
