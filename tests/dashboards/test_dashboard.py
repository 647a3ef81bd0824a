"""dashboards/ai-devops-monitor.json: valid PromQL, and only metrics the service exposes."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.service import Running

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "ai-devops-monitor.json"
_FUNCTIONS = {"sum", "rate", "increase", "max", "histogram_quantile", "clamp_min", "by", "le"}


def _exprs() -> list[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 20
    return exprs


def _metric_names(expr: str) -> set[str]:
    without_labels = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\([a-z_, ]*\)\s*\(", " ", expr)
    names = set(re.findall(r"\b[a-z_][a-z0-9_]*\b", without_labels)) - _FUNCTIONS
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in names if "_" in n}


def test_every_expression_is_valid_promql(tmp_path: Path) -> None:
    """promtool accepts every panel query (with the $job variable filled in)."""
    rules = [
        {"record": f"dashboard:check:{i}", "expr": e.replace("$job", ".*")}
        for i, e in enumerate(_exprs())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_dashboard_uses_only_exposed_metrics(service: Running) -> None:
    """Every metric a panel queries is registered on the service's /metrics."""
    text = (await service.client.get(f"{service.url}/metrics")).text
    exposed = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    used = set().union(*(_metric_names(e) for e in _exprs()))
    assert "http_requests_total" in used
    missing = {m for m in used if m not in exposed and m.removesuffix("_total") not in exposed}
    assert not missing, f"not on /metrics: {sorted(missing)}"
