"""Metric names referenced by PromQL expressions, and the names sfe processes expose.

A small scanner rather than a PromQL parser: it drops string literals, label matchers,
range and subquery brackets and grouping clauses, then keeps the identifiers that are
neither functions, aggregations nor keywords. Enough for the expressions of
docker/prometheus/alerts.yml and docker/grafana/dashboards, and tested on its own.
"""

from __future__ import annotations

import re

from prometheus_client.metrics import MetricWrapperBase

from sfe import metrics

# Series that Prometheus itself writes: target health, and the state of our alert rules.
PROMETHEUS_SERIES = frozenset({"up", "ALERTS"})

_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"offset", "bool", "inf", "nan"}
)
_NAME_MATCHER = re.compile(r'__name__\s*=\s*"([^"]+)"')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.+?)\s*,\s*\w+\s*\)\s*$", re.DOTALL)


def referenced_metrics(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    names = set(_NAME_MATCHER.findall(expr))
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _BRACKETS.sub("", text)
    text = _GROUPING.sub("", text)
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def variable_query_metrics(query: str) -> set[str]:
    """Metric names in a Grafana variable query (``label_values(selector, label)``)."""
    match = _LABEL_VALUES.match(query)
    return referenced_metrics(match.group(1)) if match else set()


def declared_families() -> dict[str, str]:
    """Family name -> type, for every metric declared in sfe/metrics.py."""
    families = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                families[family.name] = family.type
    return families


def declared_labels() -> dict[str, frozenset[str]]:
    """Series name -> label names, for every series of the families in sfe/metrics.py."""
    labels = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                for name in sample_names(family.name, family.type):
                    extra = {"le"} if name.endswith("_bucket") else set()
                    labels[name] = frozenset(value._labelnames) | extra
    return labels


def sample_names(family: str, kind: str) -> set[str]:
    """The series names a family of this type exposes."""
    if kind == "counter":
        return {f"{family}_total"}
    if kind == "histogram":
        return {f"{family}_bucket", f"{family}_count", f"{family}_sum"}
    return {family}


def family_of(name: str, families: dict[str, str]) -> str | None:
    """The declared family a series name belongs to, if any."""
    for family, kind in families.items():
        if name in sample_names(family, kind):
            return family
    return None


def exposed_names(exposition: str) -> set[str]:
    """Series names of every family in a text exposition, from its ``# TYPE`` lines."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(maxsplit=3)
            base = family.removesuffix("_total") if kind == "counter" else family
            names |= sample_names(base, kind)
    return names
