"""playbooks/monitoring.yml on the lab (monitoring type none): Prometheus on the head node scrapes
every exporter of every node, loads the rules, and every dashboard panel's query is valid PromQL
that returns data unless it needs GPU or EFA hardware.

The lab's Prometheus finds its targets through file discovery written from the lab's inventory
(the emulator's instances have no network of their own); everything else is the production path.
The CloudWatch dashboard goes to the emulator's CloudWatch.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from typing import Any

import boto3
import pytest

from .conftest import CLUSTER, COMPUTE, HEAD, LAB_VARS, LOGIN, ROOT, TIMINGS, on_node, playbook

pytestmark = pytest.mark.lab

DASHBOARDS = sorted(ROOT.glob("roles/*/files/dashboards/*.json"))
# Metrics only GPU or EFA hardware produces (the lab's EFA exporter runs, with 0 devices; Slurm
# counts GPUs only where nodes have GPU GRES).
HARDWARE = re.compile(r"\bDCGM_FI_\w+|\befa_(?!devices\b|exporter_)\w+|\bslurm_\w*gpus\w*")
# Tables that list problems, empty while the cluster is healthy: their queries must still parse.
PROBLEM_LISTS = {
    ("overview.json", "Firing alerts"),
    ("node.json", "Read-only or full filesystems"),
}


def api(path: str, **params: str) -> Any:
    """GET from the head node's Prometheus, on the head node itself."""
    url = f"http://127.0.0.1:9090/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    code = (
        "import sys, urllib.request; "
        "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=20).read().decode())"
    )
    out = on_node(HEAD, "python3", "-c", code, url).stdout
    body = json.loads(out)
    assert body["status"] == "success", body
    return body["data"]


def panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for panel in items:
        found.append(panel)
        found.extend(panels(panel.get("panels", [])))
    return found


@pytest.fixture(scope="module")
def monitoring(lab_up) -> str:
    """monitoring.yml after the infra stage, as make demo runs it (type from the stack's outputs).

    The infra stage runs here again (idempotent): an earlier test may have deleted the stack.
    """
    playbook("-e", LAB_VARS, "playbooks/infra.yml", "playbooks/lab/emulator-gaps.yml")
    # The exporters on every node (configure.yml's share of monitoring; whatever ran before).
    playbook(
        "-e",
        LAB_VARS,
        "-e",
        '{"xpu_pc_components": "node_exporter,efa_exporter"}',
        "playbooks/configure.yml",
    )
    started = time.monotonic()
    out = playbook("-e", LAB_VARS, "playbooks/monitoring.yml").stdout
    TIMINGS["monitoring.yml first run"] = time.monotonic() - started
    assert re.search(rf"{HEAD}\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", out), out[
        -3000:
    ]
    return out


@pytest.fixture(scope="module")
def targets(monitoring: str) -> list[dict[str, Any]]:
    """Active targets once every one has been scraped (up or down), within two minutes."""
    deadline = time.monotonic() + 120
    while True:
        active = api("targets", state="active")["activeTargets"]
        if active and all(t["health"] == "up" for t in active):
            return active
        if time.monotonic() > deadline:
            return active
        time.sleep(3)


def test_the_summary_names_the_local_prometheus_url(monitoring: str) -> None:
    assert re.search(r"Prometheus: http://10\.213\.0\.\d+:9090", monitoring), monitoring[-2000:]
    assert f"CloudWatch dashboard: {CLUSTER}-xpu-nodes" in monitoring
    # The playbook itself waited for the first scrapes: every target up (the lab requires it).
    assert re.search(
        r"Scrape targets up: 8 of 8 \(jobs efa, node, prometheus, slurm\)", monitoring
    ), monitoring[-2000:]


def test_every_exporter_of_every_node_is_scraped_and_up(targets: list[dict[str, Any]]) -> None:
    down = [(t["labels"], t.get("lastError")) for t in targets if t["health"] != "up"]
    assert not down, down
    by_job: dict[str, set[str]] = {}
    for t in targets:
        by_job.setdefault(t["labels"]["job"], set()).add(t["labels"].get("hostname", ""))
    assert len(by_job["node"]) == 4, by_job  # head, login, two compute nodes
    assert len(by_job["efa"]) == len(COMPUTE), by_job
    assert len(by_job["slurm"]) == 1, by_job
    assert "prometheus" in by_job, by_job
    # The labels EC2 discovery would give, from the inventory.
    node_types = {t["labels"]["node_type"] for t in targets if t["labels"]["job"] == "node"}
    assert node_types == {"head", "login", "compute"}
    assert all(t["labels"]["cluster"] == CLUSTER for t in targets)
    queues = {t["labels"].get("queue") for t in targets if t["labels"]["job"] == "efa"}
    assert queues == {"cpu"}


def test_recording_and_alert_rules_are_loaded(targets) -> None:
    groups = api("rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    alerts = {r["name"] for r in rules if r["type"] == "alerting"}
    assert {
        "GpuXidCriticalError",
        "NvlinkErrors",
        "EfaRetransmits",
        "EfaImpairedRemoteConnections",
        "NodeDown",
        "SlurmNodesDrained",
        "SlurmNodeDown",
        "ExporterDown",
        "DiskSpaceLow",
        "MemoryLow",
    } <= alerts, alerts
    assert any(r["type"] == "recording" for r in rules)
    assert all(r["health"] == "ok" for r in rules), [r for r in rules if r["health"] != "ok"]


def substitute(expr: str, values: dict[str, str]) -> str:
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name]).replace("$" + name, values[name])
    return expr


@pytest.fixture
def busy_cluster(targets):
    """Jobs running and pending, and a node draining, as the Slurm panels show them."""
    submit = (
        "sbatch",
        "--parsable",
        "--partition=cpu",
        "--nodes=2",
        "--exclusive",
        "--output=/dev/null",
    )
    jobs = [
        on_node(LOGIN, *submit, "--wrap=sleep 600", user="ubuntu").stdout.strip(),
        on_node(LOGIN, *submit, "--wrap=true", user="ubuntu").stdout.strip(),
    ]
    node = COMPUTE[0].removeprefix(f"{CLUSTER}-")
    on_node(HEAD, "scontrol", "update", f"nodename={node}", "state=drain", "reason=panel-test")
    try:
        deadline = time.monotonic() + 120  # the exporter collects every 30 s, Prometheus scrapes
        while not (
            api("query", query='slurm_jobs{state="pending"} > 0')["result"]
            and api("query", query="slurm_node_unavailable")["result"]
        ):
            assert time.monotonic() < deadline, "the Slurm exporter never showed the jobs"
            time.sleep(3)
        yield
    finally:
        on_node(HEAD, "scancel", *jobs, check=False)
        on_node(HEAD, "scontrol", "update", f"nodename={node}", "state=resume", check=False)


def test_every_dashboard_query_is_valid_and_returns_data_on_the_lab(targets, busy_cluster) -> None:
    hostnames = {
        t["labels"]["node_type"]: t["labels"]["hostname"]
        for t in targets
        if "hostname" in t["labels"]
    }
    values = {
        "cluster": CLUSTER,
        "__rate_interval": "2m",
        "__range": "1h",
        "__interval": "30s",
        "partition": "cpu",
        "device": ".*",
        "job": ".*",
    }
    empty, checked = [], 0
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        # A node of the kind the dashboard shows: EFA panels a compute node, others the head node.
        node = hostnames["compute"] if path.name == "efa.json" else hostnames["head"]
        for panel in panels(dashboard.get("panels", [])):
            exprs = [t["expr"] for t in panel.get("targets", []) if t.get("expr")]
            if not exprs:
                continue
            results = []
            for expr in exprs:
                query = substitute(expr, {**values, "node": node})
                assert "$" not in query, (path.name, panel["title"], query)
                data = api("query", query=query)  # invalid PromQL: status error, the call fails
                results.append(data["result"])
                checked += 1
            if HARDWARE.search(" ".join(exprs)) or (path.name, panel["title"]) in PROBLEM_LISTS:
                continue
            if not any(results):
                empty.append(f"{path.name}: {panel['title']}: {exprs}")
    assert checked > 100, checked
    assert not empty, "panels without data on the lab:\n" + "\n".join(empty)


def test_the_cloudwatch_dashboard_is_in_the_emulator(monitoring: str, emulator: str) -> None:
    cw = boto3.client("cloudwatch", endpoint_url=emulator, region_name="us-east-1")
    body = json.loads(cw.get_dashboard(DashboardName=f"{CLUSTER}-xpu-nodes")["DashboardBody"])
    assert body["widgets"]
    assert CLUSTER in json.dumps(body)


def test_a_second_run_changes_nothing(monitoring: str) -> None:
    started = time.monotonic()
    out = playbook("-e", LAB_VARS, "playbooks/monitoring.yml").stdout
    TIMINGS["monitoring.yml second run (changed=0)"] = time.monotonic() - started
    for host in (HEAD, "localhost"):
        assert re.search(rf"{host}\s+: ok=\d+\s+changed=0\s", out), out[-3000:]
    assert LOGIN not in out.split("PLAY RECAP")[-1]  # monitoring touches the head node only
    # Check mode on the converged lab predicts no change either.
    out = playbook("-e", LAB_VARS, "playbooks/monitoring.yml", "--check", "--diff").stdout
    for host in (HEAD, "localhost"):
        assert re.search(rf"{host}\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", out), out[
            -3000:
        ]
