"""The short soak: the whole pipeline under every fault kind, then exactly-once checks.

One soak (:func:`sfe.reliability.run_soak`) runs the demo's pipeline on its own Kafka
broker and PostgreSQL cluster (it restarts both) with the session's small models,
drives a low-rate workload for 150 s and injects every kind of
:data:`sfe.reliability.FAULT_KINDS` along the way. The tests then read its verdict:
nothing lost, nothing applied twice, every fault injected and seen to bite, and no
process or folder of the soak left behind.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sfe.reliability import FAULT_KINDS, SoakOptions, SoakResult, SoakVerdict, run_soak
from sfe.reliability.checks import Check
from sfe.settings import Settings

pytestmark = pytest.mark.integration

#: Seconds of workload: long enough for every fault kind at SOAK_INTERVAL (see the schedule)
#: on a loaded 2-core machine, where a round of faults takes about 100 s.
SOAK_SECONDS = 150.0
SOAK_INTERVAL = 3.0


@dataclass
class Soaked:
    """A finished soak and what it printed."""

    result: SoakResult
    lines: list[str]

    @property
    def verdict(self) -> SoakVerdict | None:
        return self.result.verdict

    @property
    def exit_code(self) -> int:
        return self.result.exit_code


@pytest.fixture(scope="module")
def soak(settings: Settings, registry_root: Path, trained: dict[str, Any]) -> Iterator[Soaked]:
    base = settings.model_copy(update={"model_dir": registry_root})
    lines: list[str] = []
    result = run_soak(
        base,
        SoakOptions(seconds=SOAK_SECONDS, rate=2.0, interval=SOAK_INTERVAL, drain_timeout=150),
        echo=lines.append,
    )
    try:
        yield Soaked(result, lines)
    finally:
        if result.exit_code == 0:  # a failed soak keeps its logs for a look
            shutil.rmtree(result.folder, ignore_errors=True)


def output(soak: Soaked) -> str:
    return "\n".join(soak.lines)


def by_name(result: Soaked) -> dict[str, Check]:
    assert result.verdict is not None, output(result)
    return {check.name: check for check in result.verdict.checks}


def test_nothing_is_duplicated_and_nothing_lost(soak: Soaked) -> None:
    verdict = soak.verdict
    assert verdict is not None, output(soak)
    assert verdict.duplicated == 0, output(soak)
    assert verdict.unexpected == 0, output(soak)
    assert verdict.redundant_writes == 0, output(soak)
    assert verdict.errors == [], output(soak)
    assert {c.name: c.lost for c in verdict.checks if c.lost} == {}, output(soak)
    assert verdict.drained, output(soak)


def test_the_soak_passes_as_a_whole(soak: Soaked) -> None:
    verdict = soak.verdict
    assert verdict is not None, output(soak)
    assert verdict.lost == 0, output(soak)
    assert verdict.ok and soak.exit_code == 0, output(soak)
    assert "=> PASS" in output(soak)


def test_every_fault_kind_was_injected_and_bit(soak: Soaked) -> None:
    verdict = soak.verdict
    assert verdict is not None, output(soak)
    assert set(verdict.faults) == set(FAULT_KINDS), output(soak)
    assert verdict.faults["worker_kill"] >= 3
    # Every SIGKILL and every exit was followed by a new process of the same service.
    assert verdict.restarts.get("worker", 0) >= verdict.faults["worker_kill"]
    assert (
        sum(verdict.restarts.values())
        >= verdict.faults["worker_kill"]
        + verdict.faults["service_kill"]
        + verdict.faults["replay_expired"]
    )
    # The Salesforce faults failed the pipeline's calls (the org counted them down).
    assert verdict.failed_calls >= 1, output(soak)
    # The expired replay id was met: the ingestor reconciled the window by query.
    assert verdict.recoveries.get("replay_expired", 0) >= verdict.faults["replay_expired"], output(
        soak
    )
    assert verdict.snapshots > 0, output(soak)


def test_the_checks_counted_real_traffic(soak: Soaked) -> None:
    checks = by_name(soak)
    verdict = soak.verdict
    assert verdict is not None
    assert verdict.leads >= 100
    assert checks["org changes -> sf.cdc.*"].expected == verdict.changes >= 300
    assert checks["decisions.leads: one per lead"].found == verdict.leads
    assert checks["Salesforce fields hold final value"].expected >= 500
    assert checks["Salesforce fields hold final value"].found == (
        checks["Salesforce fields hold final value"].expected
    )
    assert checks["sync_log rows"].found == checks["sync_log rows"].expected >= 100
    assert checks["ml_predictions rows"].found >= verdict.leads
    assert checks["records created by commands"].expected >= 1
    assert checks["pipeline writes that changed nothing"].expected >= 100


def test_nothing_of_the_soak_is_left_running(soak: Soaked) -> None:
    verdict = soak.verdict
    assert verdict is not None
    for name, pid in {**verdict.pids, **verdict.stack_pids}.items():
        cmdline = Path(f"/proc/{pid}/cmdline")
        alive = cmdline.exists() and (
            b"sfe.cli" in cmdline.read_bytes()
            or b"kafka.Kafka" in cmdline.read_bytes()
            or b"postgres" in cmdline.read_bytes()
        )
        assert not alive, f"{name} (PID {pid}) still runs"
    assert not Path(verdict.stack_root).exists()
