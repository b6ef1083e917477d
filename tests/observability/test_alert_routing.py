"""docker/alertmanager/alertmanager.yml: valid, and every alert reaches the right people."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.observability.support import (
    ALERTMANAGER_CONFIG,
    DOCKER,
    PROMETHEUS_CONFIG,
    alert_rules,
    load_yaml,
)

# Who hears of an alert, by its severity (the only severities the rules use).
RECEIVERS = {"critical": "pager,slack", "warning": "slack"}


def run_amtool(amtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(amtool), *args], capture_output=True, text=True, timeout=60, check=False
    )


def routed_to(amtool: Path, config: Path, **labels: str) -> str:
    """The receivers ``amtool config routes test`` resolves for an alert with ``labels``."""
    result = run_amtool(
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={config}",
        *(f"{name}={value}" for name, value in labels.items()),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def test_config_passes_amtool_check(amtool: Path) -> None:
    result = run_amtool(amtool, "check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_reaches_the_receivers_of_its_severity(
    amtool: Path, rule: dict[str, object]
) -> None:
    labels = dict(rule["labels"])  # type: ignore[call-overload]
    receivers = routed_to(amtool, ALERTMANAGER_CONFIG, alertname=str(rule["alert"]), **labels)
    assert receivers == RECEIVERS[labels["severity"]]


def test_a_moved_route_is_caught(amtool: Path, tmp_path: Path) -> None:
    """The routing check can fail: critical alerts that stop paging are noticed."""
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(ALERTMANAGER_CONFIG.read_text().replace("receiver: pager", "receiver: slack"))
    receivers = routed_to(amtool, broken, alertname="SfeProcessDown", severity="critical")
    assert "pager" not in receivers and receivers != RECEIVERS["critical"]


def test_receiver_credentials_are_files_not_config() -> None:
    config = load_yaml(ALERTMANAGER_CONFIG)
    for receiver in config["receivers"]:
        for kind, entries in receiver.items():
            if kind == "name":
                continue
            for entry in entries:
                secrets = {key for key in entry if key.endswith(("_file", "_key", "_url"))}
                assert secrets and all(key.endswith("_file") for key in secrets), (receiver, entry)


def test_critical_inhibits_the_warning_of_the_same_alert() -> None:
    (rule,) = load_yaml(ALERTMANAGER_CONFIG)["inhibit_rules"]
    assert rule["source_matchers"] == ['severity="critical"']
    assert rule["target_matchers"] == ['severity="warning"']
    assert "alertname" in rule["equal"]


def test_prometheus_sends_alerts_to_the_alertmanager_compose_starts() -> None:
    compose = load_yaml(DOCKER / "compose.yaml")["services"]
    (target,) = load_yaml(PROMETHEUS_CONFIG)["alerting"]["alertmanagers"][0]["static_configs"][0][
        "targets"
    ]
    host, port = target.split(":")
    assert host in compose
    assert any(ports.endswith(f":{port}") for ports in compose[host]["ports"])
    mounts = {v.split(":")[1] for v in compose[host]["volumes"]}
    assert "/etc/alertmanager/alertmanager.yml" in mounts


def test_every_process_that_serves_metrics_is_scraped() -> None:
    compose = load_yaml(DOCKER / "compose.yaml")["services"]
    serving = {
        name
        for name, service in compose.items()
        if service.get("command")
        and service["command"][0] in {"worker", "ingest", "projection", "sink"}
    }
    scraped = set()
    for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            scraped.update(sd["names"])
        for static in job.get("static_configs", []):
            scraped.update(target.split(":")[0] for target in static["targets"])
    assert serving == scraped
