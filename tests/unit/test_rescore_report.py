"""The rescore comparison and report, the lead rounds, the recorded enrichment, CLI misuse."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from agents.lead_qualification import LeadFact
from ml.registry import Registry
from projections.rescore import (
    LEAD_BANDS,
    Outcome,
    RecordedEnrichment,
    RescoreError,
    _one_per_lead,
    compare,
    delete_namespace,
    render_text,
    report_json,
    resolve_model,
)
from schema_registry.events import ChangeType
from sfe.cli import main
from streams.worker.batch import Consumed
from tests.workers.support import change

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def outcome(cause: str, record: str, score: float, band: str, days: int = 0) -> Outcome:
    return Outcome(cause, record, score, band, "lead:1", T0 + timedelta(days=days))


LIVE = {
    "c1": outcome("c1", "L1", 85.0, "SENIOR_AE"),
    "c2": outcome("c2", "L2", 60.0, "NURTURE"),
    "c3": outcome("c3", "L3", 40.0, "MQL"),
    "c4": outcome("c4", "L4", 55.0, "NURTURE"),
    "c5": outcome("c5", "L5", 10.0, "MQL", days=-10),  # not rescored, older than since
    "c6": outcome("c6", "L6", 12.0, "MQL", days=1),  # not rescored, in range
}
RESCORED = {
    "c1": outcome("c1", "L1", 70.0, "NURTURE"),
    "c2": outcome("c2", "L2", 60.0, "NURTURE"),
    "c3": outcome("c3", "L3", 52.5, "NURTURE"),
    "c4": outcome("c4", "L4", 54.0, "NURTURE"),
    "c9": outcome("c9", "L9", 90.0, "SENIOR_AE"),  # no live decision
}


def test_compare_counts_bands_transitions_and_the_mean_change() -> None:
    report = compare("lead:2", LEAD_BANDS, LIVE, RESCORED, top=10, since=T0 - timedelta(days=1))
    assert report.matched == 4
    assert report.before == {"SENIOR_AE": 1, "NURTURE": 2, "MQL": 1}
    assert report.after == {"SENIOR_AE": 0, "NURTURE": 4, "MQL": 0}
    assert report.transitions == {
        ("SENIOR_AE", "NURTURE"): 1,
        ("NURTURE", "NURTURE"): 2,
        ("MQL", "NURTURE"): 1,
    }
    # (-15 + 0 + 12.5 - 1) / 4
    assert report.mean_change == pytest.approx(-0.875)
    assert report.mean_abs_change == pytest.approx(7.125)
    assert report.only_rescored == 1
    assert report.only_live == 1  # c6; c5 is older than since
    assert report.live_models == {"lead:1": 4}


def test_movers_are_the_largest_absolute_changes_and_unchanged_facts_are_left_out() -> None:
    report = compare("lead:2", LEAD_BANDS, LIVE, RESCORED, top=2)
    assert [(m.record_id, m.old_score, m.new_score, m.change) for m in report.movers] == [
        ("L1", 85.0, 70.0, -15.0),
        ("L3", 40.0, 52.5, 12.5),
    ]
    assert (report.movers[0].old_band, report.movers[0].new_band) == ("SENIOR_AE", "NURTURE")
    everything = compare("lead:2", LEAD_BANDS, LIVE, RESCORED, top=10)
    assert [m.record_id for m in everything.movers] == ["L1", "L3", "L4"]  # L2 did not move
    assert everything.only_live == 2  # without since, every unmatched live decision counts


def test_movers_tie_break_by_record_id() -> None:
    live = {c: outcome(c, r, 50.0, "MQL") for c, r in (("a", "L2"), ("b", "L1"))}
    new = {c: outcome(c, o.record_id, 55.0, "NURTURE") for c, o in live.items()}
    assert [m.record_id for m in compare("lead:2", LEAD_BANDS, live, new).movers] == ["L1", "L2"]


def test_the_same_decisions_compare_as_no_change() -> None:
    report = compare("lead:1", LEAD_BANDS, LIVE, LIVE)
    assert report.movers == () and report.mean_change == 0.0 and report.mean_abs_change == 0.0
    assert all(old == new for old, new in report.transitions)
    assert report.only_live == report.only_rescored == 0
    assert "biggest movers: none" in render_text(report)


def test_an_unknown_band_is_listed_after_the_known_ones() -> None:
    live = {"c": outcome("c", "L", 10.0, "LEGACY")}
    new = {"c": outcome("c", "L", 10.0, "MQL")}
    report = compare("lead:2", LEAD_BANDS, live, new)
    assert report.bands == (*LEAD_BANDS, "LEGACY")
    assert report.before["LEGACY"] == 1 and report.after["MQL"] == 1


def test_the_text_report_prints_counts_matrix_and_movers() -> None:
    report = compare("lead:2", LEAD_BANDS, LIVE, RESCORED, top=3)
    text = render_text(report)
    lines = text.splitlines()
    band_row = next(line for line in lines if line.startswith("NURTURE "))
    assert band_row.split() == ["NURTURE", "2", "4", "+2"]  # the band table comes first
    matrix = lines[lines.index("transitions (rows: before, columns: after)") + 2]
    assert matrix.split() == ["SENIOR_AE", "0", "1", "0"]
    assert "mean score change: -0.88" in text
    assert "L1   85.00 ->  70.00 (-15.00)  SENIOR_AE -> NURTURE" in text
    assert "rescored only: 1" in text


def test_the_json_report_holds_the_same_numbers() -> None:
    data = report_json(compare("lead:2", LEAD_BANDS, LIVE, RESCORED, top=1))
    assert data["matched"] == 4 and data["before"]["SENIOR_AE"] == 1
    assert {"from": "MQL", "to": "NURTURE", "count": 1} in data["transitions"]
    assert data["movers"] == [
        {
            "record_id": "L1",
            "cause_id": "c1",
            "old_score": 85.0,
            "new_score": 70.0,
            "change": -15.0,
            "old_band": "SENIOR_AE",
            "new_band": "NURTURE",
        }
    ]


def consumed(*events: object) -> list[Consumed]:
    return [Consumed("sf.cdc.Lead", 0, n, e) for n, e in enumerate(events)]  # type: ignore[arg-type]


def test_lead_facts_are_split_so_no_round_holds_a_lead_twice() -> None:
    a1 = change("Lead", "00QA", ChangeType.CREATE, {"LastName": "A"})
    b1 = change("Lead", "00QB", ChangeType.CREATE, {"LastName": "B"})
    a2 = change("Lead", "00QA", ChangeType.CREATE, {"LastName": "A again"})
    echo = change("Lead", "00QC", ChangeType.CREATE, {"LastName": "C"}, echo=True)
    update = change("Lead", "00QB", ChangeType.UPDATE, {"Title": "CTO"})
    rounds = _one_per_lead(consumed(a1, b1, echo, a2, update))
    assert [[item.event.id for item in part] for part in rounds] == [[a1.id, b1.id], [a2.id]]


def test_recorded_enrichment_answers_with_what_the_live_decision_recorded() -> None:
    provider = RecordedEnrichment()
    known = change("Lead", "00QA", ChangeType.CREATE, {"LastName": "A"})
    unknown = change("Lead", "00QB", ChangeType.CREATE, {"LastName": "B", "Industry": "Retail"})
    provider.record(known.id, {"provider": "http", "tech_stack": "SAP"})
    facts = [LeadFact("00QA", known.fields, known), LeadFact("00QB", unknown.fields, unknown)]
    provider.expect(facts)
    answers = asyncio.run(provider.enrich([f.fields for f in facts]))
    assert answers[0] == {"provider": "http", "tech_stack": "SAP"}
    assert answers[1]["provider"] == "local" and provider.fallbacks == 1
    with pytest.raises(RuntimeError):
        asyncio.run(provider.enrich([known.fields]))  # nothing expected


def test_model_references_that_cannot_be_rescored_say_what_works(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    for ref, words in (
        ("churn:1", "not supported yet"),
        ("upsell:2", "daily account batch"),
        ("onboarding:1", "supported models are lead, win"),
        ("lead", "--model lead:2"),
        ("lead:7", "cannot load lead:7"),
        ("lead:x", "not a model reference"),
    ):
        with pytest.raises(RescoreError, match=words):
            resolve_model(registry, ref)


def test_only_a_rescore_namespace_can_be_dropped() -> None:
    for prefix in ("", "wk.1234.", "decisions.", "rescore.lead-v2.abc"):
        with pytest.raises(RescoreError, match="not a rescore namespace"):
            delete_namespace("127.0.0.1:1", prefix)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--rescore", "--projection", "postgres"], "exclusive"),
        ([], "say what to replay"),
        (["--projection", "postgres", "--model", "lead:2"], "--model is only for --rescore"),
        (["--projection", "postgres", "--json", "--top", "3"], "--top, --json are only for"),
        (["--rescore", "--name", "x"], "--name is the projection's"),
        (["--rescore"], "sfe replay --rescore --model lead:2"),
        (["--rescore", "--model", "churn:1"], "supported models: lead, win"),
        (["--rescore", "--model", "lead:1", "--drop", "rescore.x."], "--drop deletes"),
    ],
)
def test_misuse_prints_what_to_type_instead(args: list[str], says: str, tmp_path: Path) -> None:
    env = {"SFE_MODEL_DIR": str(tmp_path), "SFE_TOPIC_PREFIX": f"u{uuid.uuid4().hex[:6]}."}
    outcome = CliRunner().invoke(main, ["replay", *args], env=env)
    assert outcome.exit_code == 2, outcome.output
    assert says in outcome.stderr
