"""node.json (roles/node_exporter/files/dashboards/): a Grafana dashboard whose every query is valid
PromQL (promtool parses each one as a recording rule, template variables replaced by concrete
values) and asks only for metrics node_exporter exports (names recorded from a real 1.5.0).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from .. import dashboards

ROOT = Path(__file__).resolve().parents[4]
DASHBOARD = ROOT / "roles" / "node_exporter" / "files" / "dashboards" / "node.json"
NAMES = (
    ROOT / "tests" / "unit" / "fixtures" / "node_exporter" / "node_exporter_1.5.0_metric_names.txt"
)
VARIABLES = {
    "$__rate_interval": "2m",
    "$__interval": "1m",
    "$__range": "6h",
    "$cluster": "lab",
    "$node": ".*",
}


def load() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p.get("type") != "row"]


def exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p["targets"]]


def concrete(expr: str) -> str:
    for variable, value in sorted(VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


def promtool_check(expressions: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    return dashboards.promtool_check([concrete(e) for e in expressions], tmp_path, "node_dashboard")


def test_dashboard_shape() -> None:
    dashboard = load()
    assert dashboard["schemaVersion"] >= 39
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource"
        and variables["datasource"]["query"] == "prometheus"
    )
    assert variables["cluster"]["query"]["query"] == "label_values(up, cluster)"
    assert "hostname" in variables["node"]["query"]["query"]
    for panel in panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert 'cluster="$cluster"' in target["expr"], target["expr"]


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    proc = promtool_check(exprs(load()), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_promql_check_catches_a_broken_query(tmp_path: Path) -> None:
    assert promtool_check(["rate(node_cpu_seconds_total[5m]"], tmp_path).returncode != 0


def test_every_metric_is_one_node_exporter_exports() -> None:
    known = {line.split()[0] for line in NAMES.read_text().splitlines() if line.strip()}
    used = set(re.findall(r"\bnode_[a-zA-Z0-9_]+\b", " ".join(exprs(load()))))
    assert used and used <= known, sorted(used - known)


def test_panels_cover_cpu_memory_disk_network_load_and_filesystems() -> None:
    text = " ".join(exprs(load()))
    for metric in (
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_disk_read_bytes_total",
        "node_network_receive_bytes_total",
        "node_load1",
        "node_filesystem_avail_bytes",
    ):
        assert metric in text, metric
    assert 'mountpoint=~"/|/fsx"' in text and 'mountpoint="/fsx"' in text
