"""The dynamic inventories, built by amazon.aws.aws_ec2 from the emulator."""

from __future__ import annotations

import shutil
from pathlib import Path

import boto3
import pytest
import yaml

from tests.fence import assert_loopback_endpoint

from .conftest import COMPUTE, HEAD, LOGIN, ROOT, inventory_list, run

pytestmark = [pytest.mark.lab, pytest.mark.aws]


def hosts(inv: dict, group: str) -> list[str]:
    return sorted(inv.get(group, {}).get("hosts", []))


def test_lab_inventory_groups_by_node_type_queue_and_resource(inventory: dict) -> None:
    assert hosts(inventory, "head") == [HEAD]
    assert hosts(inventory, "login") == [LOGIN]
    assert sorted(inventory["compute"]["children"]) == ["queue_cpu"]
    assert hosts(inventory, "queue_cpu") == sorted(COMPUTE)
    assert hosts(inventory, "compute_resource_cpu_c6i") == sorted(COMPUTE)
    assert hosts(inventory, "node_type_HeadNode") == [HEAD]


def test_lab_inventory_maps_each_instance_onto_its_container(inventory: dict) -> None:
    hostvars = inventory["_meta"]["hostvars"]
    for node in [HEAD, LOGIN, *COMPUTE]:
        assert hostvars[node]["ansible_host"] == node
        assert hostvars[node]["ansible_connection"] == "containers.podman.podman"
        assert hostvars[node]["pc_cluster_name"] == "xpu-lab"
    assert hostvars[COMPUTE[0]]["pc_queue"] == "cpu"
    assert hostvars[COMPUTE[0]]["pc_compute_resource"] == "c6i"
    assert hostvars[HEAD]["private_ip_address"] == "10.213.0.10"
    assert hostvars[HEAD]["metadata_options"]["http_tokens"] == "required"


def test_every_inventory_host_answers(lab_up) -> None:
    proc = run(
        [
            str(ROOT / ".venv/bin/ansible"),
            "-i",
            "inventories/lab",
            "all",
            "-m",
            "ansible.builtin.ping",
        ]
    )
    assert proc.stdout.count("SUCCESS") == 4, proc.stdout


@pytest.fixture
def other_cluster(lab_up):
    """A second cluster's nodes in the same emulator, removed afterwards."""
    import os

    ec2 = boto3.client("ec2", endpoint_url=assert_loopback_endpoint(os.environ["AWS_ENDPOINT_URL"]))
    image = sorted(i["ImageId"] for i in ec2.describe_images(Owners=["amazon"])["Images"])[0]
    ids = []
    for node_type, extra in [
        ("HeadNode", {}),
        (
            "Compute",
            {"parallelcluster:queue-name": "gpu", "parallelcluster:compute-resource-name": "p5"},
        ),
    ]:
        tags = {
            "Name": node_type,
            "parallelcluster:cluster-name": "other",
            "parallelcluster:node-type": node_type,
            **extra,
        }
        res = ec2.run_instances(
            ImageId=image,
            InstanceType="m6i.large",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                }
            ],
        )
        ids += [i["InstanceId"] for i in res["Instances"]]
    yield ids
    ec2.terminate_instances(InstanceIds=ids)


def test_lab_inventory_ignores_other_clusters(other_cluster) -> None:
    inv = inventory_list("inventories/lab")
    assert hosts(inv, "head") == [HEAD]
    assert "queue_gpu" not in inv


def test_aws_inventory_selects_one_cluster_and_jumps_through_login(
    other_cluster, tmp_path: Path
) -> None:
    """inventories/aws as shipped, pointed at the emulator and the lab's cluster name."""
    import os

    inv_dir = tmp_path / "aws"
    shutil.copytree(ROOT / "inventories" / "aws", inv_dir)
    config_path = inv_dir / "aws_ec2.yml"
    config = yaml.safe_load(config_path.read_text())
    config["endpoint_url"] = assert_loopback_endpoint(os.environ["AWS_ENDPOINT_URL"])
    config["filters"]["tag:parallelcluster:cluster-name"] = "xpu-lab"
    config_path.write_text(yaml.safe_dump(config))

    inv = inventory_list(str(inv_dir))
    assert len(hosts(inv, "head")) == 1
    assert len(hosts(inv, "login")) == 1
    assert len(hosts(inv, "queue_cpu")) == 2
    assert len(hosts(inv, "compute_resource_cpu_c6i")) == 2
    assert "queue_gpu" not in inv  # the other cluster's nodes are filtered out
    hostvars = inv["_meta"]["hostvars"]
    compute = hosts(inv, "queue_cpu")[0]
    assert hostvars[compute]["ansible_host"].startswith("10.213.0.")

    # Rendered connection settings: head and compute jump through the login node.
    login = hosts(inv, "login")[0]
    login_host = hostvars[login]["ansible_host"]
    proc = run(
        [
            str(ROOT / ".venv/bin/ansible"),
            "-i",
            str(inv_dir),
            "all",
            "-c",
            "local",
            "-m",
            "ansible.builtin.debug",
            "-a",
            "msg=ARGS[{{ ansible_ssh_common_args | default('') }}]",
        ]
    )
    out = proc.stdout
    assert out.count(f"ARGS[-o ProxyJump=ubuntu@{login_host}]") == 3, out
    assert out.count("ARGS[]") == 1, out
