"""roles/efa_exporter/files/dashboards/efa.json: structure, PromQL validity, and real query results.

The fast tests check the Grafana JSON (schema version, the datasource and cluster variables, every
panel on ${datasource}), parse every query with promtool, and check that every efa_* metric a
query names is one the exporter serves. The slow test runs a real Prometheus (the Debian package
make deps installs) scraping the exporter on loopback and evaluates every panel and variable
query: each must return data.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from .. import dashboards
from ..harness import free_port
from .conftest import DASHBOARD, load_exporter, make_sysfs, scrape

exporter = load_exporter()
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# What Grafana puts in place of the variables when the queries run.
VARIABLES = {
    "$__rate_interval": "15s",
    "$cluster": "lab",
    "$node": ".*",
    "$device": ".*",
}
REQUIRED = {
    "efa_tx_bytes_total",
    "efa_rx_bytes_total",
    "efa_rdma_read_bytes_total",
    "efa_rdma_write_bytes_total",
    "efa_retrans_pkts_total",
    "efa_retrans_timeout_events_total",
    "efa_impaired_remote_conn_events_total",
    "efa_unresponsive_remote_events_total",
    "efa_rx_drops_total",
    "efa_port_up",
}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict) -> list[dict]:
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def queries(board: dict) -> list[tuple[str, str]]:
    """(panel title, expr) of every panel target."""
    return [
        (panel["title"], target["expr"])
        for panel in panels(board)
        for target in panel.get("targets", [])
    ]


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def test_dashboard_structure() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39
    assert board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["cluster"]["definition"] == "label_values(up, cluster)"
    assert variables["cluster"]["query"]["query"] == "label_values(up, cluster)"
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE


def test_every_query_filters_by_cluster_and_uses_counters_correctly() -> None:
    for title, expr in queries(dashboard()):
        assert 'cluster=~"$cluster"' in expr, title
        # rate() and increase() only on counters.
        for function, metric in re.findall(r"\b(rate|increase)\((\w+)", expr):
            assert metric.endswith("_total"), (title, function, metric)


def test_every_metric_the_dashboard_reads_is_served(tmp_path: Path) -> None:
    served = scrape(exporter.make_registry(str(make_sysfs(tmp_path, 2).root), False))
    names = {s.name for family in served.families.values() for s in family.samples}
    board = dashboard()
    texts = [expr for _, expr in queries(board)] + [
        v["definition"] for v in board["templating"]["list"] if v["type"] == "query"
    ]
    used = {m for text in texts for m in re.findall(r"\befa_[a-z0-9_]+", text)}
    assert used - names == set()
    assert used >= REQUIRED


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed (make deps)")
def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    exprs = [substitute(expr) for _, expr in queries(dashboard())]
    proc = dashboards.promtool_check(exprs, tmp_path, "efa_dashboard")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in proc.stdout


def _get(url: str) -> dict:
    with NO_PROXY.open(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
@pytest.mark.skipif(
    not shutil.which("prometheus"), reason="prometheus is not installed (make deps)"
)
def test_every_query_returns_data_from_a_real_prometheus(tmp_path: Path) -> None:
    tree = make_sysfs(tmp_path / "node", 2, states={"rdmap32s27": "1: DOWN"})
    httpd = exporter.serve(exporter.make_registry(str(tree.root)), "127.0.0.1", 0)
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "efa",
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{httpd.server_address[1]}"],
                        "labels": {
                            "cluster": "lab",
                            "hostname": "compute-1",
                            "node_type": "compute",
                        },
                    }
                ],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    api = f"http://127.0.0.1:{port}/api/v1"
    board = dashboard()
    pending = {substitute(expr): title for title, expr in queries(board)}
    try:
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            time.sleep(1)
            for expr in list(pending):
                try:
                    answer = _get(f"{api}/query?{urllib.parse.urlencode({'query': expr})}")
                except OSError:
                    break  # Prometheus not up yet
                assert answer["status"] == "success", (pending[expr], answer)
                if answer["data"]["result"]:
                    del pending[expr]
        assert pending == {}, f"queries without data: {sorted(pending.values())}"
        # The variables' queries: label_values(up, cluster) and the node and device lists.
        clusters = _get(f"{api}/label/cluster/values?match[]=up")["data"]
        assert clusters == ["lab"]
        query = urllib.parse.urlencode({"match[]": 'efa_tx_bytes_total{cluster=~"lab"}'})
        series = _get(f"{api}/series?{query}")["data"]
        assert {s["hostname"] for s in series} == {"compute-1"}
        assert {s["device"] for s in series} == set(tree.efa)
        # The down port shows in the table with its state.
        table = next(e for e in queries(board) if e[0] == "Ports not ACTIVE")[1]
        query = urllib.parse.urlencode({"query": substitute(table)})
        (row,) = _get(f"{api}/query?{query}")["data"]["result"]
        assert row["metric"] == {
            "hostname": "compute-1",
            "device": "rdmap32s27",
            "port": "1",
            "state": "DOWN",
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        httpd.shutdown()
        httpd.server_close()
