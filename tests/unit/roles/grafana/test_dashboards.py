"""Every dashboard the collection ships (roles/*/files/dashboards/*.json); the overview's queries.

The dashboards of the exporter roles are written by their roles; whichever exist are checked here,
so a dashboard that would not bind to the provisioned data source, or that clashes with another
one's uid, fails this test. The overview's PromQL may only use metric names of the monitoring
contract (exporters' names and the labels every scrape job attaches).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
ROLE = ROOT / "roles" / "grafana"
DASHBOARDS = sorted(ROOT.glob("roles/*/files/dashboards/*.json"))
OVERVIEW = ROLE / "files" / "dashboards" / "overview.json"

# Metric names of the monitoring contract the overview may query.
CONTRACT_METRICS = {
    "up",
    "ALERTS",
    "DCGM_FI_DEV_GPU_UTIL",
    "slurm_up",
    "slurm_nodes",
    "slurm_node_unavailable",
    "slurm_partition_gpus_total",
    "slurm_partition_gpus_allocated",
    "slurm_jobs",
    "efa_tx_bytes_total",
    "efa_rx_bytes_total",
}
CONTRACT_LABELS = {
    "cluster",
    "job",
    "node_type",
    "queue",
    "state",
    "alertstate",
    "node",
    "partition",
}
# A name followed by a selector or range: metric names in the overview's expressions.
METRIC = re.compile(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\s*\{")
FUNCTIONS = {"count", "sum", "avg", "min", "max", "rate", "by", "vector"}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def targets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for p in panels(dashboard) for t in p.get("targets", [])]


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_the_overview_is_among_the_dashboards() -> None:
    assert OVERVIEW in DASHBOARDS


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: f"{p.parts[-4]}/{p.name}")
def test_dashboard_binds_to_the_data_source_variable(path: Path) -> None:
    dashboard = load(path)
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] and len(dashboard["uid"]) <= 40
    found = variables(dashboard)
    assert found["datasource"]["type"] == "datasource"
    assert found["datasource"]["query"] == "prometheus"
    cluster = found["cluster"]
    query = cluster.get("query")
    text = query.get("query") if isinstance(query, dict) else query
    assert text == "label_values(up, cluster)" or cluster.get("definition") == text
    # Every query goes through the variable, so provisioning can bind it to one uid.
    for panel in panels(dashboard):
        if panel.get("type") == "row":
            continue
        sources = [panel.get("datasource")] + [t.get("datasource") for t in panel["targets"]]
        for source in filter(None, sources):
            assert source.get("uid") == "${datasource}", (panel.get("title"), source)


def test_dashboard_uids_are_unique() -> None:
    uids = [load(path)["uid"] for path in DASHBOARDS]
    assert len(uids) == len(set(uids)), uids


def test_default_dashboard_list_names_the_shipped_files() -> None:
    """grafana_dashboards lists the overview and the exporter roles' dashboards by role path."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    listed = [item.replace("{{ role_path }}", str(ROLE)) for item in defaults["grafana_dashboards"]]
    resolved = [Path(p).resolve() for p in listed]
    assert resolved[0] == OVERVIEW
    assert len({p.name for p in resolved}) == len(resolved)
    expected = {
        "node_exporter": ["node.json"],
        "dcgm_exporter": ["gpu.json", "nvlink.json"],
        "efa_exporter": ["efa.json"],
        "slurm_exporter": ["slurm.json"],
    }
    assert {(p.parts[-4], p.name) for p in resolved[1:]} == {
        (role, name) for role, names in expected.items() for name in names
    }
    # The shipped ones that exist must be in the list (no dashboard left out of provisioning).
    assert {p for p in DASHBOARDS if p.parts[-4] in expected or p == OVERVIEW} <= set(resolved)


def test_overview_queries_use_contract_metrics_and_labels_only() -> None:
    dashboard = load(OVERVIEW)
    exprs = [t["expr"] for t in targets(dashboard)]
    names = {m for e in exprs for m in METRIC.findall(e)} - FUNCTIONS
    assert names <= CONTRACT_METRICS, names - CONTRACT_METRICS
    labels = {label for e in exprs for label in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*=~?", e)}
    assert labels <= CONTRACT_LABELS, labels - CONTRACT_LABELS
    # Every series query is scoped to the selected cluster.
    for expr in exprs:
        for selector in re.findall(r"\{([^}]*)\}", expr):
            assert 'cluster=~"$cluster' in selector, expr


@pytest.mark.parametrize(
    ("what", "pattern"),
    [
        ("nodes up", r'count\(up\{job="node"'),
        ("GPU utilization", r"avg\(DCGM_FI_DEV_GPU_UTIL"),
        ("GPUs allocated", r"sum\(slurm_partition_gpus_allocated"),
        ("GPUs total", r"sum\(slurm_partition_gpus_total"),
        ("jobs running", r'slurm_jobs\{[^}]*state="running"'),
        ("jobs pending", r'slurm_jobs\{[^}]*state="pending"'),
        ("nodes drained", r'slurm_node_unavailable\{[^}]*state=~"drained\|draining"'),
        ("nodes down", r'slurm_node_unavailable\{[^}]*state=~"down\|fail"'),
        ("EFA throughput", r"rate\(efa_tx_bytes_total\{[^}]*\}\[\$__rate_interval\]\)"),
        ("firing alerts", r'ALERTS\{alertstate="firing"'),
        ("nodes per queue", r"sum by \(partition, state\) \(slurm_nodes"),
    ],
)
def test_overview_shows(what: str, pattern: str) -> None:
    exprs = [t["expr"] for t in targets(load(OVERVIEW))]
    assert any(re.search(pattern, e) for e in exprs), what


def test_overview_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in panels(load(OVERVIEW)):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, panel["title"]
        cells |= mine
    ids = [p["id"] for p in panels(load(OVERVIEW))]
    assert len(ids) == len(set(ids))
