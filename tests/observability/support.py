"""Paths of the monitoring configuration, promtool and amtool runs, and loaders for rules and dashboards."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
ALERTS = DOCKER / "prometheus" / "alerts.yml"
ALERT_TESTS = DOCKER / "prometheus" / "alerts.test.yml"
PROMETHEUS_CONFIG = DOCKER / "prometheus" / "prometheus.yml"
DASHBOARDS = DOCKER / "grafana" / "dashboards"
RUNBOOK = REPO / "docs" / "runbook.md"
ALERTMANAGER_CONFIG = DOCKER / "alertmanager" / "alertmanager.yml"
FETCH_TOOL = REPO / "scripts" / "fetch-debian-tool"
PROMTOOL = REPO / ".stack" / "tools" / "promtool"
AMTOOL = REPO / ".stack" / "tools" / "amtool"


def run_promtool(
    promtool: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule
    ]


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included, rows themselves excluded."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def rule_expressions() -> list[tuple[str, str]]:
    """(where, expr) of every alert rule."""
    return [(f"alerts.yml {rule['alert']}", rule["expr"]) for rule in alert_rules()]


def dashboard_expressions() -> list[tuple[str, str]]:
    """(where, expr) of every dashboard target."""
    found = []
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                found.append((f"{name} {panel['title']!r} {target['refId']}", target["expr"]))
    return found


def variable_queries() -> list[tuple[str, str]]:
    """(where, query) of every dashboard variable backed by Prometheus."""
    found = []
    for name, dashboard in dashboards().items():
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                query = variable["query"]
                found.append(
                    (
                        f"{name} ${variable['name']}",
                        query["query"] if isinstance(query, dict) else query,
                    )
                )
    return found
