"""files/cloudwatch/dashboard.json.j2 against what the cloudwatch_agent role really publishes.

The dashboard template is rendered with plain Jinja2; the role's agent configuration
(roles/cloudwatch_agent/templates/agent-fragment.json.j2) is rendered by Ansible's own templating
with the role's defaults and vars, the same variables for both. Every widget metric - a metric row
or a SEARCH expression - must name a metric of that configuration in its namespace, under a
dimension set the agent publishes for it: one of the aggregation dimension sets whose dimensions
the metric carries. AWS/EC2 metrics go by InstanceId only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = ROOT / "files" / "cloudwatch" / "dashboard.json.j2"
AGENT_ROLE = ROOT / "roles" / "cloudwatch_agent"
CLUSTER = "ml1"
REGION = "us-east-1"
# Dimensions an input adds to each of its metrics besides the appended ones (the agent's inputs:
# disk keeps path and fstype with drop_device; nvidia_gpu tags index and name).
INPUT_DIMENSIONS = {"mem": set(), "disk": {"path", "fstype"}, "nvidia_gpu": {"index", "name"}}
EC2_METRICS = {"CPUUtilization", "NetworkIn", "NetworkOut", "StatusCheckFailed"}
SEARCH = re.compile(r"SEARCH\('\{([^}]*)\}\s+MetricName=\"([^\"]+)\"([^']*)'")


def trusted(value: Any) -> Any:
    """Role files as Ansible would load them: their strings may be templates."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: trusted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [trusted(v) for v in value]
    return value


def agent_config(**overrides: Any) -> dict[str, Any]:
    """The fragment the cloudwatch_agent role writes on a GPU node, with its defaults."""
    variables = {
        **yaml.safe_load((AGENT_ROLE / "defaults" / "main.yml").read_text()),
        **yaml.safe_load((AGENT_ROLE / "vars" / "main.yml").read_text()),
    }
    variables = trusted(variables) | {
        "cloudwatch_agent_cluster_name": CLUSTER,
        "ansible_managed": "Ansible managed",
        "__cloudwatch_agent_nvidia_smi_stat": {"stat": {"exists": True}},  # a GPU node
        **trusted(overrides),
    }
    template = (AGENT_ROLE / "templates" / "agent-fragment.json.j2").read_text()
    rendered = Templar(loader=DataLoader(), variables=variables).template(
        trust_as_template(template)
    )
    return json.loads(rendered)


def dashboard(**variables: Any) -> dict[str, Any]:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    text = env.from_string(DASHBOARD.read_text()).render(
        cloudwatch_agent_cluster_name=CLUSTER, cloudwatch_dashboard_region=REGION, **variables
    )
    return json.loads(text)


def published(config: dict[str, Any]) -> dict[tuple[str, str], set[frozenset[str]]]:
    """(namespace, metric) -> the dimension sets the agent publishes it under, exactly known."""
    metrics = config["metrics"]
    namespace = metrics["namespace"]
    appended = set(metrics.get("append_dimensions", {}))
    sets = [frozenset(s) for s in metrics.get("aggregation_dimensions", [])]
    found: dict[tuple[str, str], set[frozenset[str]]] = {}
    for name, section in metrics["metrics_collected"].items():
        carried = appended | set(section.get("append_dimensions", {})) | INPUT_DIMENSIONS[name]
        for measurement in section["measurement"]:
            if name == "nvidia_gpu":
                metric = f"nvidia_smi_{measurement}"
            else:
                prefix = f"{name}_"
                metric = measurement if measurement.startswith(prefix) else prefix + measurement
            found[(namespace, metric)] = {s for s in sets if s <= carried}
    return found


def queried(board: dict[str, Any]) -> list[tuple[str, str, frozenset[str], dict[str, str]]]:
    """(namespace, metric, dimension names, dimension values) of every widget metric."""
    found = []
    for widget in board["widgets"]:
        if widget["type"] != "metric":
            continue
        for row in widget["properties"]["metrics"]:
            first = row[0]
            if isinstance(first, dict):
                match = SEARCH.search(first["expression"])
                assert match, first["expression"]
                schema = [part.strip() for part in match[1].split(",")]
                values = dict(re.findall(r'(\w+)="([^"]*)"', match[3]))
                found.append((schema[0], match[2], frozenset(schema[1:]), values))
            else:
                plain = [item for item in row if not isinstance(item, dict)]
                namespace, metric, *pairs = plain
                assert len(pairs) % 2 == 0, row
                dims = dict(zip(pairs[::2], pairs[1::2], strict=True))
                found.append((namespace, metric, frozenset(dims), dims))
    return found


def mismatches(board: dict[str, Any], config: dict[str, Any]) -> list[str]:
    allowed = published(config)
    wrong = []
    for namespace, metric, dims, values in queried(board):
        if namespace == "AWS/EC2":
            if metric not in EC2_METRICS or dims != {"InstanceId"}:
                wrong.append(f"AWS/EC2 {metric} {sorted(dims)}")
            continue
        if (namespace, metric) not in allowed:
            wrong.append(f"{namespace} {metric}: not published")
        elif dims not in allowed[(namespace, metric)]:
            wrong.append(f"{namespace} {metric} {sorted(dims)}: not a published dimension set")
        elif values.get("ClusterName", CLUSTER) != CLUSTER:
            wrong.append(f"{metric}: ClusterName {values.get('ClusterName')}")
    return wrong


def test_every_widget_metric_is_published_with_its_dimensions() -> None:
    config = agent_config()
    board = dashboard(cloudwatch_dashboard_instance_ids=["i-0123456789abcdef0"])
    assert mismatches(board, config) == []
    metrics = {(m, d) for _, m, d, _ in queried(board)}
    # The views the dashboard exists for: cluster-wide, per instance type, per node, per GPU,
    # per mount point, and the EC2 metrics of the listed instance.
    assert ("mem_used_percent", frozenset({"ClusterName"})) in metrics
    assert ("mem_used_percent", frozenset({"ClusterName", "InstanceType"})) in metrics
    assert ("mem_used_percent", frozenset({"ClusterName", "InstanceId"})) in metrics
    assert ("disk_used_percent", frozenset({"ClusterName", "InstanceId", "path"})) in metrics
    gpu = frozenset({"ClusterName", "InstanceId", "index"})
    assert ("nvidia_smi_utilization_gpu", gpu) in metrics
    assert ("CPUUtilization", frozenset({"InstanceId"})) in metrics
    # Every measurement of the agent configuration has a widget.
    assert {m for m, _ in metrics} >= {metric for _, metric in published(config)}


def test_search_expressions_are_scoped_to_the_cluster_and_mount_points() -> None:
    board = dashboard(cloudwatch_agent_disk_resources=["/", "/scratch"])
    searches = [v for _, _, dims, v in queried(board) if len(dims) > 1]
    assert searches and all(v.get("ClusterName") == CLUSTER for v in searches)
    paths = {v["path"] for _, m, _, v in queried(board) if m == "disk_used_percent" and "path" in v}
    assert paths == {"/", "/scratch"}


def test_same_variables_render_both_and_agree() -> None:
    """A custom namespace and measurements in inventory change both the same way."""
    same = {
        "cloudwatch_agent_namespace": "Team/Training",
        "cloudwatch_agent_gpu_measurements": ["utilization_gpu", "memory_used"],
        "cloudwatch_agent_mem_measurements": ["used_percent"],
    }
    config = agent_config(**same)
    board = dashboard(**same)
    assert mismatches(board, config) == []
    assert {ns for ns, *_ in queried(board)} == {"Team/Training"}
    assert "mem_used_percent" in {m for _, m, _, _ in queried(board)}


def test_no_ec2_widgets_without_instances_and_no_gpu_widgets_when_off() -> None:
    board = dashboard(cloudwatch_dashboard_gpu=False)
    names = {(ns, m) for ns, m, _, _ in queried(board)}
    assert not [n for n in names if n[0] == "AWS/EC2" or n[1].startswith("nvidia_smi_")]


@pytest.mark.parametrize(
    ("agent_overrides", "expected"),
    [
        # The agent stops publishing the per-GPU set: the per-GPU widgets no longer match.
        (
            {
                "cloudwatch_agent_aggregation_dimensions": [
                    ["ClusterName"],
                    ["ClusterName", "InstanceType"],
                    ["ClusterName", "InstanceId"],
                    ["ClusterName", "InstanceId", "path"],
                ]
            },
            "['ClusterName', 'InstanceId', 'index']: not a published dimension set",
        ),
        # Another namespace on the agent side only.
        ({"cloudwatch_agent_namespace": "CWAgent"}, "XPU/ParallelCluster mem_used_percent: not"),
    ],
    ids=["dropped-aggregation-set", "namespace-differs"],
)
def test_a_dimension_or_namespace_mismatch_is_caught(
    agent_overrides: dict[str, Any], expected: str
) -> None:
    wrong = mismatches(dashboard(), agent_config(**agent_overrides))
    assert any(expected in line for line in wrong), wrong


def test_layout_is_a_valid_dashboard_grid() -> None:
    board = dashboard(cloudwatch_dashboard_instance_ids=["i-0123456789abcdef0"])
    cells: set[tuple[int, int]] = set()
    for widget in board["widgets"]:
        assert widget["x"] + widget["width"] <= 24
        mine = {
            (x, y)
            for x in range(widget["x"], widget["x"] + widget["width"])
            for y in range(widget["y"], widget["y"] + widget["height"])
        }
        assert not cells & mine, widget
        cells |= mine
        if widget["type"] == "metric":
            assert widget["properties"]["region"] == REGION
            ids = [r[0]["id"] for r in widget["properties"]["metrics"] if isinstance(r[0], dict)]
            assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[a-z]\w*", i) for i in ids)
