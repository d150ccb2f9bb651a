"""Filters monitoring_plan and monitoring_file_sd: each monitoring type's plan, and file discovery
targets with the labels EC2 discovery would give."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.xpu.parallelcluster.plugins.filter.monitoring import (
    monitoring_file_sd,
    monitoring_plan,
)

SPEC = {
    "name": "ml1",
    "region": "us-west-2",
    "queues": [
        {
            "name": "gpu",
            "compute_resources": [
                {"name": "b200", "instance_type": "p6-b200.48xlarge"},
                {"name": "g6", "instance_type": "g6.xlarge"},
            ],
        },
        {"name": "cpu", "compute_resources": [{"name": "c", "instance_type": "c6i.xlarge"}]},
    ],
}
AMP = {
    "AmpRemoteWriteUrl": "https://aps-workspaces.us-west-2.amazonaws.com/workspaces/ws-1/api/v1/remote_write",
    "AmpQueryUrl": "https://aps-workspaces.us-west-2.amazonaws.com/workspaces/ws-1/api/v1/query",
}


def test_none_puts_prometheus_on_the_head_node_with_the_catalogs_types() -> None:
    plan = monitoring_plan({"MonitoringType": "none"}, spec=SPEC)
    assert plan["type"] == "none" and plan["prometheus_on"] == "head"
    assert plan["gpu_types"] == ["g6.xlarge", "p6-b200.48xlarge"]
    assert plan["efa_types"] == ["p6-b200.48xlarge"]  # g6.xlarge has no EFA
    assert plan["remote_write"] == [] and plan["region"] == "us-west-2"
    assert plan["cluster"] == "ml1"


def test_no_outputs_means_none() -> None:
    assert monitoring_plan({}, spec=SPEC)["type"] == "none"


@pytest.mark.parametrize("kind", ["amp-only", "amp"])
def test_amp_writes_to_the_workspace_with_sigv4(kind: str) -> None:
    plan = monitoring_plan({"MonitoringType": kind, **AMP}, spec=SPEC)
    assert plan["type"] == "amp-only" and plan["prometheus_on"] == "head"
    [entry] = plan["remote_write"]
    assert entry["url"].endswith("/api/v1/remote_write")
    assert entry["sigv4"] == {"region": "us-west-2"}
    assert entry["queue_config"]["max_samples_per_send"] == 1000


def test_amp_and_amg_needs_the_workspace() -> None:
    with pytest.raises(AnsibleFilterError, match=r"AmgWorkspaceId \(the workspace"):
        monitoring_plan({"MonitoringType": "amp+amg", **AMP}, spec=SPEC)
    plan = monitoring_plan({"MonitoringType": "amp+amg", "AmgWorkspaceId": "g-1", **AMP}, spec=SPEC)
    assert plan["type"] == "amp+amg" and plan["remote_write"]


def test_self_hosting_puts_prometheus_on_the_monitoring_instance() -> None:
    plan = monitoring_plan(
        {"MonitoringType": "self-hosting", "MonitoringInstanceId": "i-1"}, spec=SPEC
    )
    assert plan["prometheus_on"] == "monitoring" and plan["remote_write"] == []
    with pytest.raises(AnsibleFilterError, match=r"MonitoringInstanceId .*playbooks/infra\.yml"):
        monitoring_plan({"MonitoringType": "self-hosting"}, spec=SPEC)


def test_the_override_wins_and_bad_values_are_named() -> None:
    with pytest.raises(AnsibleFilterError, match=r"amp-only needs .*AmpRemoteWriteUrl"):
        monitoring_plan({"MonitoringType": "none"}, SPEC, "amp-only")
    assert monitoring_plan({"MonitoringType": "amp-only", **AMP}, SPEC, "none")["type"] == "none"
    with pytest.raises(AnsibleFilterError, match="'grafana' is not one of"):
        monitoring_plan({}, spec=SPEC, monitoring_type="grafana")
    with pytest.raises(AnsibleFilterError, match="xpu_pc_prometheus_sd_mode is 'consul'"):
        monitoring_plan({}, spec=SPEC, sd_mode="consul")
    with pytest.raises(AnsibleFilterError, match=r"p5\.48xlarg"):
        monitoring_plan(
            {}, spec={"queues": [{"compute_resources": [{"instance_type": "p5.48xlarg"}]}]}
        )
    with pytest.raises(AnsibleFilterError, match="needs the region"):
        monitoring_plan({"MonitoringType": "amp-only", **AMP}, spec={"name": "x"})


def node(name: str, node_type: str, ip: str, **extra: object) -> dict:
    return {
        "inventory_hostname": name,
        "pc_node_type": node_type,
        "private_ip_address": ip,
        "private_dns_name": f"ip-{ip.replace('.', '-')}.ec2.internal",
        "instance_id": f"i-{name}",
        **extra,
    }


def test_file_sd_gives_each_exporter_its_nodes_and_the_ec2_labels() -> None:
    plan = monitoring_plan({}, spec=SPEC)
    nodes = [
        node("head", "HeadNode", "10.0.0.10", instance_type="m6i.xlarge"),
        node("login", "LoginNode", "10.0.0.11"),
        node(
            "b1",
            "Compute",
            "10.0.0.21",
            instance_type="p6-b200.48xlarge",
            pc_queue="gpu",
            pc_compute_resource="b200",
        ),
        node("c1", "Compute", "10.0.0.22", instance_type="c6i.xlarge", pc_queue="cpu"),
        node(
            "c2",
            "Compute",
            "10.0.0.23",
            instance_type="c6i.xlarge",
            pc_queue="cpu",
            efa_exporter_skip_without_devices=False,
        ),
    ]
    sd = monitoring_file_sd(nodes, plan)
    targets = {job: [t for g in groups for t in g["targets"]] for job, groups in sd.items()}
    assert targets["node"] == [f"10.0.0.{n}:9100" for n in (10, 11, 21, 22, 23)]
    assert targets["slurm"] == ["10.0.0.10:9102"]
    assert targets["efa"] == ["10.0.0.21:9101", "10.0.0.23:9101"]  # EFA type, or told not to skip
    assert targets["dcgm"] == ["10.0.0.21:9400"]
    b1 = sd["dcgm"][0]["labels"]
    assert b1 == {
        "node_type": "compute",
        "hostname": "ip-10-0-0-21",
        "instance_id": "i-b1",
        "instance_type": "p6-b200.48xlarge",
        "queue": "gpu",
        "compute_resource": "b200",
    }
    assert "queue" not in sd["node"][0]["labels"]  # no empty labels


def test_file_sd_without_gpu_or_efa_nodes_has_no_such_job() -> None:
    sd = monitoring_file_sd([node("head", "HeadNode", "10.0.0.10")], monitoring_plan({}, spec={}))
    assert set(sd) == {"node", "slurm"}


def test_file_sd_refuses_a_host_without_the_node_type_tag() -> None:
    with pytest.raises(AnsibleFilterError, match="host x has no parallelcluster:node-type"):
        monitoring_file_sd([{"inventory_hostname": "x"}], monitoring_plan({}, spec={}))
