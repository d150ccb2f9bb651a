"""roles/slurm_exporter/files/dashboards/slurm.json: structure, PromQL validity, served metrics.

The Grafana JSON must have the datasource and cluster variables, every panel on ${datasource},
every query filtered by cluster; every slurm_* metric a query names must be one the exporter
serves (checked against the exporter's output on the recorded 22.05 fixtures); every query must
parse (promtool, when installed).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from .. import dashboards
from .conftest import ROLE, load_exporter, make_fake_slurm

exp = load_exporter()
DASHBOARD = ROLE / "files" / "dashboards" / "slurm.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
VARIABLES = {"$__rate_interval": "1m", "$cluster": "lab", "$partition": ".*"}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict) -> list[dict]:
    return [p for p in board["panels"] if p["type"] != "row"]


def queries(board: dict) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels(board) for t in p["targets"]]


def test_dashboard_structure() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39 and board["uid"] == "xpu-slurm"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["cluster"]["query"]["query"] == "label_values(up, cluster)"
    assert variables["partition"]["datasource"] == DATASOURCE
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert all(t["datasource"] == DATASOURCE for t in panel["targets"])


def test_dashboard_covers_what_the_issue_asks() -> None:
    text = " ".join(expr for _, expr in queries(dashboard()))
    for needed in (
        "powering_up",  # cloud power states
        "slurm_node_unavailable",  # drained / down table with reasons
        "sum by (user, state) (slurm_jobs",  # jobs by user
        "sum by (partition) (slurm_jobs",  # jobs by partition
        "slurm_partition_gpus_allocated",
        "slurm_user_gpus_allocated",
        "slurm_scheduler_cycle_last_seconds",
        "slurm_exporter_cache_age_seconds",
        "slurm_up",
    ):
        assert needed in text, needed


def test_every_query_filters_by_cluster_and_counters_use_increase() -> None:
    for title, expr in queries(dashboard()):
        assert 'cluster=~"$cluster"' in expr, title
        for function, metric in re.findall(r"\b(rate|increase)\((\w+)", expr):
            assert metric.endswith("_total"), (title, function, metric)


def test_every_metric_the_dashboard_reads_is_served(tmp_path: Path) -> None:
    fake = make_fake_slurm(tmp_path / "bin")
    collector = exp.SlurmCollector(str(fake.bin_dir), timeout=5)
    collector.collect_once()
    served = collector.exposition(exp.build_registry(collector)).decode()
    names = set(re.findall(r"^(slurm_[a-z_]+)", served, re.MULTILINE))
    board = dashboard()
    texts = [expr for _, expr in queries(board)] + [
        v["definition"] for v in board["templating"]["list"] if v["type"] == "query"
    ]
    used = {m for text in texts for m in re.findall(r"\bslurm_[a-z0-9_]+", text)}
    assert used and used - names == set()


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed (make deps)")
def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    exprs = []
    for _, expr in queries(dashboard()):
        for name, value in VARIABLES.items():
            expr = expr.replace(name, value)
        assert "$" not in expr, expr
        exprs.append(expr)
    proc = dashboards.promtool_check(exprs, tmp_path, "slurm_dashboard")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in proc.stdout
