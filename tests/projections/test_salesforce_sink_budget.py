"""The sink's API budget policy without a network: reading usage, pacing, holding."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests

from projections.salesforce.writer import ApiBudget, BudgetSettings, SinkInterrupted


def response(usage: str) -> requests.Response:
    answer = requests.Response()
    answer.headers["Sforce-Limit-Info"] = usage
    return answer


class Probe:
    """Stands in for the Salesforce client: `limits` reports usage through the hook."""

    def __init__(self, budget: ApiBudget, usages: list[str]) -> None:
        self.budget, self.usages, self.calls = budget, usages, 0

    def restful(self, path: str, **kwargs: Any) -> None:
        assert path == "limits"
        self.calls += 1
        self.budget.observe(response(self.usages.pop(0)))


def test_usage_is_read_from_sforce_limit_info() -> None:
    budget = ApiBudget(BudgetSettings(reserve=100), threading.Event())
    assert budget.headroom is None
    budget.observe(response("api-usage=250/1000"))
    assert (budget.used, budget.limit, budget.headroom) == (250, 1000, 650)
    budget.observe(response("garbage"))
    assert budget.used == 250
    budget.exhausted()
    assert budget.headroom == -100


def test_pace_slows_down_linearly_inside_the_window() -> None:
    budget = ApiBudget(
        BudgetSettings(reserve=100, slowdown_window=100, max_delay_s=0.4), threading.Event()
    )
    budget.observe(response("api-usage=850/1000"))  # headroom 50: half the window left
    started = time.monotonic()
    budget.pace(Probe(budget, []))  # type: ignore[arg-type]
    assert 0.15 <= time.monotonic() - started < 0.4


def test_pace_holds_at_the_reserve_and_resumes_when_budget_returns() -> None:
    settings = BudgetSettings(reserve=100, slowdown_window=0, probe_interval_s=0.01)
    budget = ApiBudget(settings, threading.Event())
    budget.observe(response("api-usage=900/1000"))
    probe = Probe(budget, ["api-usage=901/1000", "api-usage=902/1000", "api-usage=3/1000"])
    budget.pace(probe)  # type: ignore[arg-type]
    assert probe.calls == 3
    assert budget.headroom == 897


def test_a_stop_while_held_interrupts() -> None:
    stop = threading.Event()
    budget = ApiBudget(BudgetSettings(reserve=100, probe_interval_s=5), stop)
    budget.observe(response("api-usage=1000/1000"))
    threading.Timer(0.1, stop.set).start()
    with pytest.raises(SinkInterrupted):
        budget.pace(Probe(budget, []))  # type: ignore[arg-type]
