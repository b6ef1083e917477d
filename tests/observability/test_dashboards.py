"""The Grafana dashboards of SPEC.md, their provisioning, and how compose mounts them."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.observability.support import (
    DASHBOARDS,
    DOCKER,
    dashboard_expressions,
    dashboards,
    load_yaml,
    panels,
    run_promtool,
)

PROVISIONING = DOCKER / "grafana" / "provisioning"
SPEC_DASHBOARDS = ("System Health", "Integration Status", "Business KPIs", "ML Performance")


def datasource_uid() -> str:
    (source,) = load_yaml(PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus"
    return str(source["uid"])


def test_the_four_dashboards_of_the_spec_exist() -> None:
    found = dashboards()
    titles = [dashboard["title"] for dashboard in found.values()]
    for wanted in SPEC_DASHBOARDS:
        assert sum(title.endswith(wanted) for title in titles) == 1, (wanted, titles)
    uids = [dashboard["uid"] for dashboard in found.values()]
    assert len(set(uids)) == len(uids) == len(SPEC_DASHBOARDS)
    assert all(uid and len(uid) <= 40 for uid in uids)


@pytest.mark.parametrize("name", sorted(path.name for path in DASHBOARDS.glob("*.json")))
def test_dashboard_is_well_formed(name: str) -> None:
    dashboard = dashboards()[name]
    assert dashboard["title"] and dashboard["uid"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert "id" not in dashboard or dashboard["id"] is None
    shown = panels(dashboard)
    assert len(shown) >= 4
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(set(ids)) == len(ids)
    uid = datasource_uid()
    for panel in shown:
        where = f"{name} {panel.get('title')!r}"
        assert panel["title"] and panel["type"], where
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, where
        targets = panel.get("targets")
        assert targets, f"{where} has no targets"
        refs = [target["refId"] for target in targets]
        assert len(set(refs)) == len(refs), where
        for target in targets:
            assert target["expr"].strip(), where
            assert target.get("datasource", panel["datasource"])["uid"] == uid, where


@pytest.mark.parametrize("name", sorted(path.name for path in DASHBOARDS.glob("*.json")))
def test_panels_fit_the_grid_without_overlapping(name: str) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in dashboards()[name]["panels"]:
        pos: dict[str, Any] = panel["gridPos"]
        assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] >= 0 and pos["y"] >= 0
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{panel['title']!r} overlaps another panel"
        taken |= cells


def as_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced by plain values."""
    expr = re.sub(r"\[\$\w+\]", "[5m]", expr)  # $__rate_interval, $__range
    return re.sub(r"\$\w+", "x", expr)  # $job, $model inside label matchers


def test_dashboard_queries_are_valid_promql(promtool: Path, tmp_path: Path) -> None:
    """promtool parses every panel query (as a recording rule) once variables are filled in."""
    expressions = dashboard_expressions()
    rules = [
        {"record": f"dashboard:query_{index}:check", "expr": as_promql(expr)}
        for index, (_, expr) in enumerate(expressions)
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run_promtool(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_promql_check_rejects_a_broken_query(promtool: Path, tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    broken = {
        "record": "dashboard:broken:check",
        "expr": as_promql("sum by (x (rate(y[$__range]))"),
    }
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": [broken]}]}))
    assert run_promtool(promtool, "check", "rules", str(path)).returncode != 0


def test_variables_use_the_provisioned_datasource() -> None:
    uid = datasource_uid()
    for dashboard in dashboards().values():
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                assert variable["datasource"]["uid"] == uid, variable["name"]


def mounts(service: str) -> dict[str, str]:
    """Container path -> host path (relative to docker/) of a compose service's volumes."""
    volumes = load_yaml(DOCKER / "compose.yaml")["services"][service]["volumes"]
    return {target: source for source, target, *_ in (volume.split(":") for volume in volumes)}


def host_path(service: str, container_path: str) -> Path:
    """Where a container path of a compose service lives in this repository."""
    path = PurePosixPath(container_path)
    for target, source in mounts(service).items():
        if path == PurePosixPath(target) or PurePosixPath(target) in path.parents:
            return (DOCKER / source / path.relative_to(target)).resolve()
    raise AssertionError(f"{container_path} is not mounted into {service}")


def test_compose_provisions_the_datasource_and_the_dashboards() -> None:
    datasource = host_path("grafana", "/etc/grafana/provisioning/datasources/prometheus.yml")
    assert datasource == (PROVISIONING / "datasources" / "prometheus.yml").resolve()
    provider_file = host_path("grafana", "/etc/grafana/provisioning/dashboards/sfe.yml")
    (provider,) = load_yaml(provider_file)["providers"]
    assert provider["type"] == "file"
    assert host_path("grafana", provider["options"]["path"]) == DASHBOARDS.resolve()
    (source,) = load_yaml(datasource)["datasources"]
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in load_yaml(DOCKER / "compose.yaml")["services"]
