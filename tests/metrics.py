"""Helpers of the metrics tests: scrape a /metrics endpoint and parse it with
prometheus-client's own parser; the metric names the dashboard and the alert rules use."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "charts" / "qforge" / "dashboards" / "qforge.json"
_NAME = re.compile(r"\bqforge_[a-z0-9_]+")

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Scrape:
    def __init__(self, text: str) -> None:
        self.text = text
        self.families = list(text_string_to_metric_families(text))
        self.samples: Samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for f in self.families for s in f.samples}

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, tuple(sorted(labels.items())))]

    def total(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and want <= set(ls))

    def names(self) -> set[str]:
        """Every name a query may use: sample names, and the family names with the
        suffixes their type gives (a labelled counter without samples yet still counts)."""
        out = {name for name, _ in self.samples}
        for f in self.families:
            out.add(f.name)
            if f.type == "counter":
                out.add(f"{f.name}_total")
            if f.type == "histogram":
                out |= {f"{f.name}_bucket", f"{f.name}_sum", f"{f.name}_count"}
            if f.type == "info":
                out.add(f"{f.name}_info")
        return out


def scrape(url: str, timeout: float = 10) -> Scrape:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return Scrape(answer.read().decode())


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def dashboard_exprs() -> list[str]:
    exprs = [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard()["templating"]["list"]
              if isinstance(v.get("query"), dict)]
    return exprs


def names_in(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in _NAME.findall(e)}


def grafana_to_promql(expr: str) -> str:
    """A dashboard query as Prometheus receives it from Grafana (variables filled in)."""
    return (expr.replace("$__rate_interval", "1m").replace("$namespace", ".*")
            .replace("$job", ".*"))
