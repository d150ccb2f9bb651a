"""gpu.json and nvlink.json (roles/dcgm_exporter/files/dashboards/): Grafana dashboards whose every
query is valid PromQL (promtool parses each one as a recording rule, template variables replaced
by concrete values) and asks only for metrics the role's counters CSV makes dcgm-exporter export.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from .. import dashboards

ROOT = Path(__file__).resolve().parents[4]
DASHBOARDS = ROOT / "roles" / "dcgm_exporter" / "files" / "dashboards"
DEFAULTS = yaml.safe_load((ROOT / "roles" / "dcgm_exporter" / "defaults" / "main.yml").read_text())
COUNTERS = {
    c["field"]
    for c in DEFAULTS["dcgm_exporter_default_counters"] + DEFAULTS["dcgm_exporter_extra_counters"]
}
# The DCGM 3 name of field 112, queried only as a fallback (`or`) beside the DCGM 4 name.
FALLBACKS = {"DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"}
VARIABLES = {
    "$__rate_interval": "2m",
    "$__interval": "1m",
    "$__range": "6h",
    "$cluster": "lab",
    "$node": ".*",
    "$job": ".*",
}
NAMES = ("gpu.json", "nvlink.json")


def load(name: str) -> dict:
    return json.loads((DASHBOARDS / name).read_text())


def panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return [p for p in found if p.get("type") != "row"]


def exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]


def concrete(expr: str) -> str:
    for variable, value in sorted(VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unreplaced variable in {expr}"
    return expr


def promtool_check(expressions: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    return dashboards.promtool_check([concrete(e) for e in expressions], tmp_path, "dashboard")


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_shape(name: str) -> None:
    dashboard = load(name)
    assert dashboard["schemaVersion"] >= 39
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["cluster"]["query"]["query"] == "label_values(up, cluster)"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel["targets"]:
            assert 'cluster="$cluster"' in target["expr"], (panel["title"], target["expr"])


@pytest.mark.parametrize("name", NAMES)
def test_every_query_is_valid_promql(name: str, tmp_path: Path) -> None:
    queries = exprs(load(name))
    assert len(queries) >= 8
    proc = promtool_check(queries, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_promql_check_catches_a_broken_query(tmp_path: Path) -> None:
    proc = promtool_check(
        ['sum by (hostname) (rate(DCGM_FI_DEV_GPU_UTIL{cluster="$cluster"}[5m])'], tmp_path
    )
    assert proc.returncode != 0


@pytest.mark.parametrize("name", NAMES)
def test_every_metric_is_one_the_counters_export(name: str) -> None:
    used = set(re.findall(r"\bDCGM_FI_[A-Z0-9_]+\b", " ".join(exprs(load(name)))))
    assert used
    assert used - FALLBACKS <= COUNTERS, sorted(used - FALLBACKS - COUNTERS)


def test_gpu_dashboard_covers_health_and_jobs() -> None:
    dashboard = load("gpu.json")
    text = " ".join(exprs(dashboard))
    for field in (
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
        "DCGM_FI_DEV_XID_ERRORS",
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
    ):
        assert field in text, field
    assert "by (hpc_job)" in text
    job = {v["name"]: v for v in dashboard["templating"]["list"]}["job"]
    assert "hpc_job" in job["query"]["query"]


def test_nvlink_dashboard_rates_and_errors() -> None:
    text = " ".join(exprs(load("nvlink.json")))
    # The profiling bytes are already rates (gauges): never rate() them.
    assert "DCGM_FI_PROF_NVLINK_TX_BYTES" in text and "DCGM_FI_PROF_NVLINK_RX_BYTES" in text
    assert not re.search(r"(rate|increase)\(DCGM_FI_PROF_", text)
    for kind in ("CRC_FLIT", "CRC_DATA", "REPLAY", "RECOVERY"):
        assert f"increase(DCGM_FI_DEV_NVLINK_{kind}_ERROR_COUNT_TOTAL" in text
