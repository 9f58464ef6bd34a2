"""The Grafana dashboard in deploy/ graphs only series that Deskbell exports (a renamed metric breaks it)."""

from __future__ import annotations

import json
import re

from prometheus_client import REGISTRY

from desk import metrics  # noqa: F401  (declares the series)
from desk.settings import ROOT


def test_every_series_the_dashboard_queries_is_exported() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(deskbell_[a-z_]+)", target["expr"])
    }
    exported = {sample.name for family in REGISTRY.collect() for sample in family.samples} | {
        family.name for family in REGISTRY.collect()
    }
    # A series with labels has no samples until first used: add the names its samples will have.
    histogram_parts = {f"{name}_{part}" for name in exported for part in ("bucket", "sum", "count", "total")}
    assert queried, "the dashboard queries nothing"
    assert queried <= exported | histogram_parts, sorted(queried - exported - histogram_parts)
