"""The Grafana dashboard and the alert rules name only metrics the exporter really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from actors.telemetry import NodeMetrics

DOCS = Path(__file__).resolve().parents[2] / "docs" / "grafana"
NAME = re.compile(r"\bactorq_[a-z_]+\b")


def _exprs(node: Any) -> list[str]:
    """Every ``expr`` (and templating ``query``/``definition``) string in a JSON tree."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                found.append(value)
            elif key == "query" and isinstance(value, dict) and isinstance(value.get("query"), str):
                found.append(value["query"])
            else:
                found.extend(_exprs(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_exprs(item))
    return found


def _exported() -> frozenset[str]:
    return NodeMetrics().metric_names()


def test_every_dashboard_expression_names_an_exported_metric() -> None:
    dashboard = json.loads((DOCS / "actorq.json").read_text())
    exprs = _exprs(dashboard)
    assert len(exprs) >= 20
    named = {name for expr in exprs for name in NAME.findall(expr)}
    unknown = named - _exported()
    assert not unknown, f"the dashboard names metrics nobody exports: {sorted(unknown)}"
    # ... and every family the exporter has is on the dashboard somewhere.
    families = {f.name for f in NodeMetrics().registry.collect()}
    shown = {n.removesuffix("_total").removesuffix("_bucket") for n in named}
    assert families <= shown, f"not on the dashboard: {sorted(families - shown)}"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_the_alert_rules_name_exported_metrics() -> None:
    rules = yaml.safe_load((DOCS / "alerts.yml").read_text())
    alerts = {r["alert"]: r["expr"] for group in rules["groups"] for r in group["rules"]}
    assert {"ActorqJobsDead", "ActorqRecoveryAboveBound"} <= set(alerts)
    for alert, expr in alerts.items():
        named = set(NAME.findall(expr))
        assert named, alert
        assert named <= _exported(), f"{alert} names {sorted(named - _exported())}"


def test_the_exported_names_are_the_documented_ones() -> None:
    """The metric names the docs list are exactly the families of the exporter."""
    page = (DOCS.parent / "how-to" / "telemetry.md").read_text()
    families = {f.name for f in NodeMetrics().registry.collect()}
    listed = {n.removesuffix("_total") for n in re.findall(r"`(actorq_[a-z_]+)`", page)}
    assert families <= listed, f"undocumented: {sorted(families - listed)}"
    assert listed <= families, f"documented, not exported: {sorted(listed - families)}"
