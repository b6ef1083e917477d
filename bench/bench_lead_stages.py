"""CPU time of each stage of lead qualification for one batch, in-process (no Kafka).

Builds ``--leads`` CDC creates of generated leads (as ``bench_leads.py`` does), encodes
them once, then for ``--rounds`` rounds measures with ``time.process_time``: decoding
the batch, the worker's handler (enrichment, scoring with explanations, decisions),
and encoding every event the handler emits; then the handler's parts on their own:
enrichment, ``score_records`` and ``decide``. Uses the promoted ``lead`` model of the
registry (``sfe train --all``).

Usage: ``.venv/bin/python bench/bench_lead_stages.py [--leads 2000] [--rounds 3]``.
Prints a Markdown table, one row per round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_leads

from agents import lead_qualification as flow
from agents.enrichment import LocalEnrichment
from agents.scoring import score_records
from ml.inference import load_model
from ml.registry import Registry
from schema_registry.codec import Codec
from sfe.settings import load_settings
from streams.worker.batch import Consumed
from streams.worker.leads import LeadQualificationHandler


def main() -> None:
    """Measure every round and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    model = load_model(Registry(load_settings().models_path), "lead")
    config = flow.LeadConfig()
    enrichment = LocalEnrichment()
    handler = LeadQualificationHandler(model, enrichment, config)
    codec = Codec()
    encoded = [codec.encode("sf.cdc.Lead", c) for c in bench_leads.lead_changes(args.leads)]

    def clock() -> float:
        return time.process_time()

    print(f"model {model.manifest.ref}; load average {os.getloadavg()[0]:.1f}\n")
    print("| round | decode | handler | encode | enrichment | score_records | decide | events |")
    print("|---|---|---|---|---|---|---|---|")
    for round_number in range(args.rounds + 1):  # the first round warms up
        t0 = clock()
        batch = [
            Consumed("sf.cdc.Lead", 0, i, codec.decode("sf.cdc.Lead", e.value, e.headers))
            for i, e in enumerate(encoded)
        ]
        t1 = clock()
        emissions = asyncio.run(handler(batch))
        t2 = clock()
        for emission in emissions:
            codec.encode(emission.topic, emission.event)
        t3 = clock()
        facts = handler.facts(batch)
        answers = asyncio.run(enrichment.enrich([fact.fields for fact in facts]))
        t4 = clock()
        records = [flow.scoring_record(f, a) for f, a in zip(facts, answers, strict=True)]
        scores = score_records(model, records, facts[0].cause.time.date())
        t5 = clock()
        for fact, score, answer in zip(facts, scores, answers, strict=True):
            flow.decide(fact, score, answer, config)
        t6 = clock()
        if round_number:
            print(
                f"| {round_number} | {t1 - t0:.3f} | {t2 - t1:.3f} | {t3 - t2:.3f} "
                f"| {t4 - t3:.3f} | {t5 - t4:.3f} | {t6 - t5:.3f} | {len(emissions):,} |"
            )
    print(f"\nCPU seconds per batch of {args.leads:,} leads.")


if __name__ == "__main__":
    main()
