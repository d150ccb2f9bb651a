"""Unit tests for scripts/lab/labctl.py: the lab's node list, Slurm files and emulator instances.

labctl is a script, not a package, so it is loaded by path. The EC2 tests run against moto's
in-process ``mock_aws``: labctl's own client (built by ``labctl.ec2_client`` on the loopback
``AWS_ENDPOINT_URL``) gets a first ``before-send`` handler that hands each request to moto and
never lets it reach a socket.
"""

from __future__ import annotations

import copy
import importlib.util
import ipaddress
import json
import os
import re
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
LABCTL_PATH = ROOT / "scripts" / "lab" / "labctl.py"
SHIPPED_SPEC = ROOT / "scripts" / "lab" / "lab-cluster.yml"


def _load_labctl() -> ModuleType:
    spec = importlib.util.spec_from_file_location("xpu_lab_labctl", LABCTL_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while it executes
    spec.loader.exec_module(module)
    return module


labctl = _load_labctl()

# What the shipped lab-cluster.yml must give: hostname -> (container, address, role, type).
SHIPPED_NODES = {
    "head": ("xpu-lab-head", "10.213.0.10", "head", "m6i.xlarge"),
    "login": ("xpu-lab-login", "10.213.0.11", "login", "m6i.large"),
    "cpu-st-c6i-1": ("xpu-lab-cpu-st-c6i-1", "10.213.0.21", "compute", "c6i.xlarge"),
    "cpu-st-c6i-2": ("xpu-lab-cpu-st-c6i-2", "10.213.0.22", "compute", "c6i.xlarge"),
}

# The exact tags ParallelCluster puts on each kind of instance, plus the lab's container tag.
SHIPPED_TAGS = {
    "head": {
        "Name": "HeadNode",
        "parallelcluster:cluster-name": "xpu-lab",
        "parallelcluster:node-type": "HeadNode",
        "xpu:lab-container": "xpu-lab-head",
    },
    "login": {
        "Name": "LoginNode",
        "parallelcluster:cluster-name": "xpu-lab",
        "parallelcluster:node-type": "LoginNode",
        "parallelcluster:login-nodes-pool": "login",
        "xpu:lab-container": "xpu-lab-login",
    },
    **{
        f"cpu-st-c6i-{n}": {
            "Name": "Compute",
            "parallelcluster:cluster-name": "xpu-lab",
            "parallelcluster:node-type": "Compute",
            "parallelcluster:queue-name": "cpu",
            "parallelcluster:compute-resource-name": "c6i",
            "xpu:lab-container": f"xpu-lab-cpu-st-c6i-{n}",
        }
        for n in (1, 2)
    },
}


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def shipped() -> dict[str, Any]:
    """The shipped lab-cluster.yml as data, for tests to alter."""
    return yaml.safe_load(SHIPPED_SPEC.read_text())


@pytest.fixture
def spec() -> Any:
    return labctl.load_spec(SHIPPED_SPEC)


def write_spec(tmp_path: Path, data: Any, name: str = "lab-cluster.yml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def load_variant(tmp_path: Path, data: Any) -> Any:
    return labctl.load_spec(write_spec(tmp_path, data))


def two_queue_data(shipped: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(shipped)
    data["queues"].append(
        {
            "name": "gpu",
            "compute_resources": [
                {
                    "name": "g5",
                    "instance_type": "g5.xlarge",
                    "count": 1,
                    "first_address": "10.213.0.31",
                    "cpus": 4,
                    "real_memory_mb": 2048,
                },
                {
                    "name": "g6",
                    "instance_type": "g6.xlarge",
                    "count": 3,
                    "first_address": "10.213.0.41",
                    "cpus": 4,
                    "real_memory_mb": 4096,
                },
            ],
        }
    )
    return data


# --------------------------------------------------------------------------- load_spec


def test_shipped_spec_has_the_four_lab_nodes(spec: Any) -> None:
    assert spec.cluster_name == "xpu-lab"
    assert spec.region == "us-east-1"
    assert spec.network_name == "xpu-lab"
    assert spec.subnet == ipaddress.ip_network("10.213.0.0/24")
    assert spec.vpc_cidr == ipaddress.ip_network("10.213.0.0/16")
    got = {n.hostname: (n.container, n.address, n.role, n.instance_type) for n in spec.nodes}
    assert got == SHIPPED_NODES
    # Order matters to lab.sh: head first, then login, then compute in index order.
    assert [n.hostname for n in spec.nodes] == list(SHIPPED_NODES)
    assert spec.head.hostname == "head"


def test_compute_nodes_use_parallelcluster_static_names_and_consecutive_addresses(
    tmp_path: Path, shipped: dict[str, Any]
) -> None:
    shipped["queues"][0]["compute_resources"][0].update(count=3, first_address="10.213.0.50")
    spec = load_variant(tmp_path, shipped)
    compute = [n for n in spec.nodes if n.role == "compute"]
    assert [(n.hostname, n.address, n.queue, n.compute_resource) for n in compute] == [
        ("cpu-st-c6i-1", "10.213.0.50", "cpu", "c6i"),
        ("cpu-st-c6i-2", "10.213.0.51", "cpu", "c6i"),
        ("cpu-st-c6i-3", "10.213.0.52", "cpu", "c6i"),
    ]
    assert [n.container for n in compute] == [f"xpu-lab-cpu-st-c6i-{i}" for i in (1, 2, 3)]


def test_vpc_cidr_defaults_to_the_subnet(tmp_path: Path, shipped: dict[str, Any]) -> None:
    del shipped["network"]["vpc_cidr"]
    del shipped["region"]
    spec = load_variant(tmp_path, shipped)
    assert spec.vpc_cidr == spec.subnet == ipaddress.ip_network("10.213.0.0/24")
    assert spec.region == "us-east-1"


def _drop_cluster_name(d: dict[str, Any]) -> None:
    del d["cluster_name"]


def _empty_cluster_name(d: dict[str, Any]) -> None:
    d["cluster_name"] = ""


def _subnet_outside_vpc(d: dict[str, Any]) -> None:
    d["network"]["subnet"] = "10.214.0.0/24"


def _head_outside_subnet(d: dict[str, Any]) -> None:
    d["head_node"]["address"] = "10.213.1.10"


def _compute_outside_subnet(d: dict[str, Any]) -> None:
    d["queues"][0]["compute_resources"][0]["first_address"] = "10.213.5.21"


def _compute_range_runs_into_broadcast(d: dict[str, Any]) -> None:
    # The first node fits; the second is the broadcast address.
    d["queues"][0]["compute_resources"][0]["first_address"] = "10.213.0.254"


def _head_on_network_address(d: dict[str, Any]) -> None:
    d["head_node"]["address"] = "10.213.0.0"


def _login_on_broadcast(d: dict[str, Any]) -> None:
    d["login_nodes"][0]["address"] = "10.213.0.255"


def _duplicate_address(d: dict[str, Any]) -> None:
    d["login_nodes"][0]["address"] = "10.213.0.10"


def _compute_range_overlaps_login(d: dict[str, Any]) -> None:
    d["queues"][0]["compute_resources"][0]["first_address"] = "10.213.0.11"


def _duplicate_hostname(d: dict[str, Any]) -> None:
    d["login_nodes"][0]["hostname"] = "head"


def _no_queues(d: dict[str, Any]) -> None:
    del d["queues"]


def _no_head(d: dict[str, Any]) -> None:
    del d["head_node"]


def _no_compute_resources(d: dict[str, Any]) -> None:
    del d["queues"][0]["compute_resources"]


def _node_without_address(d: dict[str, Any]) -> None:
    del d["login_nodes"][0]["address"]


def _subnet_with_host_bits(d: dict[str, Any]) -> None:
    d["network"]["subnet"] = "10.213.0.1/24"


def _zero_count(d: dict[str, Any]) -> None:
    d["queues"][0]["compute_resources"][0]["count"] = 0


def _duplicate_queue(d: dict[str, Any]) -> None:
    d["queues"].append(dict(d["queues"][0]))


@pytest.mark.parametrize(
    ("alter", "expected"),
    [
        (_node_without_address, ["invalid node or queue entry", "address"]),
        (_subnet_with_host_bits, ["network:", "has host bits set"]),
        (_zero_count, ["compute resource c6i: count must be 1 or more"]),
        (_duplicate_queue, ["queue names must be unique"]),
        (_drop_cluster_name, ["'cluster_name' is required"]),
        (_empty_cluster_name, ["'cluster_name' is required"]),
        (_subnet_outside_vpc, ["network.subnet 10.214.0.0/24", "network.vpc_cidr 10.213.0.0/16"]),
        (_head_outside_subnet, ["node head:", "10.213.1.10 is not usable in 10.213.0.0/24"]),
        (_compute_outside_subnet, ["node cpu-st-c6i-1:", "10.213.5.21 is not usable"]),
        (_compute_range_runs_into_broadcast, ["node cpu-st-c6i-2:", "10.213.0.255 is not usable"]),
        (_head_on_network_address, ["node head:", "10.213.0.0 is not usable"]),
        (_login_on_broadcast, ["node login:", "10.213.0.255 is not usable"]),
        (_duplicate_address, ["node login:", "'10.213.0.10' is used twice"]),
        (_compute_range_overlaps_login, ["node cpu-st-c6i-1:", "'10.213.0.11' is used twice"]),
        (_duplicate_hostname, ["node head:", "'head' is used twice"]),
        (_no_queues, ["'queues' is required"]),
        (_no_head, ["'head_node' is required"]),
        (_no_compute_resources, ["queue cpu:", "'compute_resources' is required"]),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else "",
)
def test_load_spec_refuses_invalid_specs(
    tmp_path: Path, shipped: dict[str, Any], alter: Any, expected: list[str]
) -> None:
    alter(shipped)
    with pytest.raises(labctl.LabError) as excinfo:
        load_variant(tmp_path, shipped)
    for part in expected:
        assert part in str(excinfo.value)


@pytest.mark.parametrize("last_octet", [1, 2, 3])
def test_load_spec_refuses_reserved_addresses(
    tmp_path: Path, shipped: dict[str, Any], last_octet: int
) -> None:
    shipped["head_node"]["address"] = f"10.213.0.{last_octet}"
    with pytest.raises(labctl.LabError, match=rf"node head: 10\.213\.0\.{last_octet} is reserved"):
        load_variant(tmp_path, shipped)


def test_load_spec_accepts_the_first_unreserved_address(
    tmp_path: Path, shipped: dict[str, Any]
) -> None:
    shipped["head_node"]["address"] = "10.213.0.4"
    assert load_variant(tmp_path, shipped).head.address == "10.213.0.4"


@pytest.mark.parametrize("top", [["a", "b"], "just a string", 42, None])
def test_load_spec_refuses_a_non_mapping_top_level(tmp_path: Path, top: Any) -> None:
    path = write_spec(tmp_path, top)
    with pytest.raises(labctl.LabError, match="expected a mapping at the top level") as excinfo:
        labctl.load_spec(path)
    assert str(path) in str(excinfo.value)


def test_load_spec_reports_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yml"
    with pytest.raises(labctl.LabError, match="cannot read") as excinfo:
        labctl.load_spec(path)
    assert str(path) in str(excinfo.value)


def test_load_spec_reports_a_directory(tmp_path: Path) -> None:
    with pytest.raises(labctl.LabError, match="cannot read"):
        labctl.load_spec(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_load_spec_reports_an_unreadable_file(tmp_path: Path, shipped: dict[str, Any]) -> None:
    path = write_spec(tmp_path, shipped)
    path.chmod(0)
    with pytest.raises(labctl.LabError, match="cannot read"):
        labctl.load_spec(path)


def test_load_spec_reports_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    path.write_text("cluster_name: [unclosed\n")
    with pytest.raises(labctl.LabError, match="cannot read"):
        labctl.load_spec(path)


# --------------------------------------------------------------------------- tags


def test_node_tags_are_the_parallelcluster_tags(spec: Any) -> None:
    assert {n.hostname: spec.node_tags(n) for n in spec.nodes} == SHIPPED_TAGS


def test_node_tags_do_not_leak_between_calls(spec: Any) -> None:
    head = spec.head
    first = spec.node_tags(head)
    first["Name"] = "changed"
    assert spec.node_tags(head) == SHIPPED_TAGS["head"]


# --------------------------------------------------------------------------- Slurm


def test_render_slurm_lays_files_out_like_parallelcluster(spec: Any) -> None:
    files = labctl.render_slurm(spec)
    assert set(files) == {
        "slurm.conf",
        "slurm_parallelcluster.conf",
        "pcluster/slurm_parallelcluster_cpu_partition.conf",
    }
    main = files["slurm.conf"].splitlines()
    assert "ClusterName=xpu-lab" in main
    assert "SlurmctldHost=head(10.213.0.10)" in main
    assert "ProctrackType=proctrack/linuxproc" in main
    assert "include slurm_parallelcluster.conf" in main
    # Static, always-on nodes: no power saving at all.
    for key in ("SuspendProgram", "ResumeProgram", "SuspendTime", "ResumeTimeout"):
        assert key not in files["slurm.conf"]
    pc = [line for line in files["slurm_parallelcluster.conf"].splitlines() if line[:1] != "#"]
    assert pc == ["include pcluster/slurm_parallelcluster_cpu_partition.conf"]
    for content in files.values():
        assert content.startswith("# Managed by scripts/lab.sh")
        assert content.endswith("\n")


def test_render_slurm_partition_file(spec: Any) -> None:
    partition = labctl.render_slurm(spec)["pcluster/slurm_parallelcluster_cpu_partition.conf"]
    lines = [line for line in partition.splitlines() if not line.startswith("#")]
    assert lines == [
        "NodeName=cpu-st-c6i-1 NodeAddr=10.213.0.21 NodeHostname=cpu-st-c6i-1 CPUs=2 "
        "RealMemory=1024 State=UNKNOWN Feature=static,c6i.xlarge,c6i",
        "NodeName=cpu-st-c6i-2 NodeAddr=10.213.0.22 NodeHostname=cpu-st-c6i-2 CPUs=2 "
        "RealMemory=1024 State=UNKNOWN Feature=static,c6i.xlarge,c6i",
        "NodeSet=cpu_c6i_nodes Nodes=cpu-st-c6i-[1-2]",
        "PartitionName=cpu Nodes=cpu_c6i_nodes MaxTime=INFINITE State=UP Default=YES",
    ]


def test_render_slurm_gives_one_partition_file_per_queue(
    tmp_path: Path, shipped: dict[str, Any]
) -> None:
    spec = load_variant(tmp_path, two_queue_data(shipped))
    files = labctl.render_slurm(spec)
    cpu = "pcluster/slurm_parallelcluster_cpu_partition.conf"
    gpu = "pcluster/slurm_parallelcluster_gpu_partition.conf"
    assert set(files) == {"slurm.conf", "slurm_parallelcluster.conf", cpu, gpu}
    includes = [
        line for line in files["slurm_parallelcluster.conf"].splitlines() if line[:1] != "#"
    ]
    assert includes == [f"include {cpu}", f"include {gpu}"]
    assert "PartitionName=cpu Nodes=cpu_c6i_nodes MaxTime=INFINITE State=UP Default=YES" in (
        files[cpu].splitlines()
    )
    gpu_lines = files[gpu].splitlines()
    assert (
        "PartitionName=gpu Nodes=gpu_g5_nodes,gpu_g6_nodes MaxTime=INFINITE State=UP Default=NO"
        in gpu_lines
    )
    assert "NodeSet=gpu_g5_nodes Nodes=gpu-st-g5-1" in gpu_lines
    assert "NodeSet=gpu_g6_nodes Nodes=gpu-st-g6-[1-3]" in gpu_lines
    assert (
        "NodeName=gpu-st-g6-3 NodeAddr=10.213.0.43 NodeHostname=gpu-st-g6-3 CPUs=4 "
        "RealMemory=4096 State=UNKNOWN Feature=static,g6.xlarge,g6"
    ) in gpu_lines
    # No node of one queue leaks into the other's file.
    assert "gpu-st" not in files[cpu]
    assert "cpu-st" not in files[gpu]
    assert sum(line.startswith("NodeName=") for line in gpu_lines) == 4


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["cpu-st-c6i-1", "cpu-st-c6i-2"], "cpu-st-c6i-[1-2]"),
        (["cpu-st-c6i-1", "cpu-st-c6i-2", "cpu-st-c6i-3"], "cpu-st-c6i-[1-3]"),
        (["cpu-st-c6i-9", "cpu-st-c6i-10", "cpu-st-c6i-11"], "cpu-st-c6i-[9-11]"),
        (["cpu-st-c6i-1"], "cpu-st-c6i-1"),
        (["cpu-st-c6i-1", "cpu-st-c6i-3"], "cpu-st-c6i-1,cpu-st-c6i-3"),
        (["cpu-st-c6i-2", "cpu-st-c6i-1"], "cpu-st-c6i-2,cpu-st-c6i-1"),
        (["cpu-st-c6i-1", "gpu-st-c6i-2"], "cpu-st-c6i-1,gpu-st-c6i-2"),
    ],
)
def test_hostlist(names: list[str], expected: str) -> None:
    assert labctl._hostlist(names) == expected


def _snapshot(outdir: Path) -> dict[str, tuple[int, str]]:
    return {
        str(p.relative_to(outdir)): (p.stat().st_mtime_ns, p.read_text())
        for p in sorted(outdir.rglob("*"))
        if p.is_file()
    }


def test_write_slurm_is_idempotent(tmp_path: Path, spec: Any) -> None:
    outdir = tmp_path / "etc-slurm"
    expected = labctl.render_slurm(spec)

    assert labctl.write_slurm(spec, outdir) is True
    first = _snapshot(outdir)
    assert set(first) == set(expected)  # no leftover *.tmp files
    for rel, content in expected.items():
        path = outdir / rel
        assert path.read_text() == content
        assert stat.S_IMODE(path.stat().st_mode) == 0o644

    # Push the mtimes into the past so that a rewrite would show even on coarse clocks.
    for rel in expected:
        os.utime(outdir / rel, ns=(1_000_000_000, 1_000_000_000))
    before = _snapshot(outdir)
    assert labctl.write_slurm(spec, outdir) is False
    assert _snapshot(outdir) == before


def test_write_slurm_restores_an_edited_file(tmp_path: Path, spec: Any) -> None:
    outdir = tmp_path / "etc-slurm"
    labctl.write_slurm(spec, outdir)
    for path in outdir.rglob("*.conf"):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    edited = outdir / "pcluster" / "slurm_parallelcluster_cpu_partition.conf"
    edited.write_text("NodeName=rogue\n")
    before = _snapshot(outdir)

    assert labctl.write_slurm(spec, outdir) is True
    after = _snapshot(outdir)
    rel = str(edited.relative_to(outdir))
    assert edited.read_text() == labctl.render_slurm(spec)[rel]
    assert stat.S_IMODE(edited.stat().st_mode) == 0o644
    # Only the edited file was rewritten.
    assert {k: v for k, v in after.items() if k != rel} == {
        k: v for k, v in before.items() if k != rel
    }
    assert set(after) == set(before)
    assert labctl.write_slurm(spec, outdir) is False


# --------------------------------------------------------------------------- endpoint


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5055",
        "http://localhost:5055",
        "http://127.0.0.2:5055",
        "http://[::1]:5055",
    ],
)
def test_emulator_endpoint_accepts_loopback(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    assert labctl.emulator_endpoint() == url


@pytest.mark.parametrize(
    "url",
    [
        "",
        "https://ec2.us-east-1.amazonaws.com",
        "http://10.0.0.1:5055",
        "http://169.254.169.254/",
        "http://127.0.0.1@169.254.169.254:5055",  # userinfo does not make it loopback
        "http://localhost.example.com:5055",
        "127.0.0.1:5055",  # no scheme: not a URL with a host
    ],
)
def test_emulator_endpoint_refuses_anything_else(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    with pytest.raises(labctl.LabError, match="AWS_ENDPOINT_URL") as excinfo:
        labctl.emulator_endpoint()
    assert repr(url) in str(excinfo.value)


def test_emulator_endpoint_refuses_an_unset_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(labctl.LabError, match="AWS_ENDPOINT_URL"):
        labctl.emulator_endpoint()


def test_register_refuses_a_remote_endpoint_before_any_call(
    monkeypatch: pytest.MonkeyPatch, spec: Any
) -> None:
    from moto import mock_aws

    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://ec2.us-east-1.amazonaws.com")
    with mock_aws(), pytest.raises(labctl.LabError, match="AWS_ENDPOINT_URL"):
        labctl.register(spec)


# --------------------------------------------------------------------------- emulator

# Nothing listens here: a request that escaped the in-process stub would fail instead of
# reaching a lab emulator that may be running on the Makefile's port.
STUB_ENDPOINT = "http://127.0.0.1:9"


@pytest.fixture
def ec2(monkeypatch: pytest.MonkeyPatch, spec: Any) -> Iterator[Any]:
    """labctl's EC2 client, answered in-process by moto; every test starts from empty."""
    from moto import mock_aws
    from moto.core.models import botocore_stubber

    monkeypatch.setenv("AWS_ENDPOINT_URL", STUB_ENDPOINT)

    def through_moto(request: Any, event_name: str, **_: Any) -> Any:
        url = urlsplit(request.url)
        assert labctl.emulator_endpoint() == STUB_ENDPOINT
        assert f"{url.scheme}://{url.netloc}" == STUB_ENDPOINT, request.url
        # moto recognises EC2 by its AWS host name; the URL is put back afterwards so that
        # moto's own handler, which runs next, does not execute the request a second time.
        region = request.context.get("client_region", spec.region)
        request.url = url._replace(scheme="https", netloc=f"ec2.{region}.amazonaws.com").geturl()
        try:
            response = botocore_stubber(event_name, request)
        finally:
            request.url = url.geturl()
        assert response is not None, f"moto did not answer {request.url}"
        return response

    real_client = labctl.ec2_client

    def stubbed_client(lab_spec: Any) -> Any:
        client = real_client(lab_spec)
        client.meta.events.register_first("before-send", through_moto)
        return client

    monkeypatch.setattr(labctl, "ec2_client", stubbed_client)
    with mock_aws():
        yield labctl.ec2_client(spec)


def tags_of(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def all_instances(ec2: Any) -> list[dict[str, Any]]:
    return [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]


def by_container(ec2: Any, spec: Any) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for inst in labctl.lab_instances(ec2, spec):
        container = tags_of(inst)[labctl.TAG_CONTAINER]
        assert container not in found, f"two running instances for {container}"
        found[container] = inst
    return found


def describe_one(ec2: Any, instance_id: str) -> dict[str, Any]:
    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return reservations[0]["Instances"][0]


def state_of(ec2: Any, instance_id: str) -> str:
    return describe_one(ec2, instance_id)["State"]["Name"]


def lab_subnet(ec2: Any, spec: Any) -> str:
    subnets = ec2.describe_subnets(
        Filters=[{"Name": "tag:xpu:lab-cluster", "Values": [spec.cluster_name]}]
    )["Subnets"]
    assert len(subnets) == 1
    return subnets[0]["SubnetId"]


def launch(ec2: Any, subnet: str, address: str, tags: dict[str, str]) -> str:
    return ec2.run_instances(
        ImageId=labctl._image_id(ec2),
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet,
        PrivateIpAddress=address,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )["Instances"][0]["InstanceId"]


@pytest.mark.aws
@pytest.mark.slow
def test_register_creates_one_tagged_instance_per_node(ec2: Any, spec: Any) -> None:
    result = labctl.register(spec)
    assert result == {
        "created": ["head", "login", "cpu-st-c6i-1", "cpu-st-c6i-2"],
        "terminated": [],
        "unchanged": [],
    }
    instances = all_instances(ec2)
    assert len(instances) == 4
    subnet = lab_subnet(ec2, spec)
    by_name = {tags_of(i)[labctl.TAG_CONTAINER]: i for i in instances}
    for hostname, (container, address, _role, instance_type) in SHIPPED_NODES.items():
        inst = by_name[container]
        assert inst["State"]["Name"] == "running"
        assert inst["PrivateIpAddress"] == address
        assert inst["InstanceType"] == instance_type
        assert inst["SubnetId"] == subnet
        assert tags_of(inst) == SHIPPED_TAGS[hostname]
        assert inst["MetadataOptions"]["HttpTokens"] == "required"
        assert inst["MetadataOptions"]["HttpEndpoint"] == "enabled"
    # The emulated network matches the spec.
    sub = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]
    assert sub["CidrBlock"] == "10.213.0.0/24"
    vpc = ec2.describe_vpcs(VpcIds=[sub["VpcId"]])["Vpcs"][0]
    assert vpc["CidrBlock"] == "10.213.0.0/16"


@pytest.mark.aws
@pytest.mark.slow
def test_register_twice_changes_nothing(ec2: Any, spec: Any) -> None:
    labctl.register(spec)
    before = {c: i["InstanceId"] for c, i in by_container(ec2, spec).items()}
    subnets_before = ec2.describe_subnets()["Subnets"]

    result = labctl.register(spec)
    assert result == {
        "created": [],
        "terminated": [],
        "unchanged": sorted(SHIPPED_NODES),
    }
    assert {c: i["InstanceId"] for c, i in by_container(ec2, spec).items()} == before
    assert len(all_instances(ec2)) == 4
    assert ec2.describe_subnets()["Subnets"] == subnets_before


@pytest.mark.aws
@pytest.mark.slow
def test_register_replaces_an_instance_whose_tags_changed(ec2: Any, spec: Any) -> None:
    labctl.register(spec)
    before = by_container(ec2, spec)
    victim = before["xpu-lab-cpu-st-c6i-2"]["InstanceId"]
    ec2.create_tags(Resources=[victim], Tags=[{"Key": labctl.TAG_QUEUE, "Value": "gpu"}])

    result = labctl.register(spec)
    assert result["terminated"] == [victim]
    assert result["created"] == ["cpu-st-c6i-2"]
    assert result["unchanged"] == ["cpu-st-c6i-1", "head", "login"]
    assert state_of(ec2, victim) == "terminated"
    after = by_container(ec2, spec)
    replacement = after["xpu-lab-cpu-st-c6i-2"]
    assert replacement["InstanceId"] != victim
    assert replacement["PrivateIpAddress"] == "10.213.0.22"
    assert tags_of(replacement) == SHIPPED_TAGS["cpu-st-c6i-2"]
    for container in ("xpu-lab-head", "xpu-lab-login", "xpu-lab-cpu-st-c6i-1"):
        assert after[container]["InstanceId"] == before[container]["InstanceId"]


@pytest.mark.aws
@pytest.mark.slow
def test_register_replaces_instances_whose_address_moved(
    ec2: Any, spec: Any, tmp_path: Path, shipped: dict[str, Any]
) -> None:
    labctl.register(spec)
    before = by_container(ec2, spec)
    shipped["queues"][0]["compute_resources"][0]["first_address"] = "10.213.0.31"
    moved = load_variant(tmp_path, shipped)

    result = labctl.register(moved)
    old = sorted(before[f"xpu-lab-cpu-st-c6i-{n}"]["InstanceId"] for n in (1, 2))
    assert sorted(result["terminated"]) == old
    assert result["created"] == ["cpu-st-c6i-1", "cpu-st-c6i-2"]
    assert result["unchanged"] == ["head", "login"]
    for instance_id in old:
        assert state_of(ec2, instance_id) == "terminated"
    after = by_container(ec2, moved)
    assert {c: i["PrivateIpAddress"] for c, i in after.items()} == {
        "xpu-lab-head": "10.213.0.10",
        "xpu-lab-login": "10.213.0.11",
        "xpu-lab-cpu-st-c6i-1": "10.213.0.31",
        "xpu-lab-cpu-st-c6i-2": "10.213.0.32",
    }
    assert after["xpu-lab-head"]["InstanceId"] == before["xpu-lab-head"]["InstanceId"]
    assert tags_of(after["xpu-lab-cpu-st-c6i-1"]) == SHIPPED_TAGS["cpu-st-c6i-1"]


@pytest.mark.aws
@pytest.mark.slow
def test_register_terminates_strays_and_leaves_other_clusters_alone(ec2: Any, spec: Any) -> None:
    labctl.register(spec)
    before = {c: i["InstanceId"] for c, i in by_container(ec2, spec).items()}
    subnet = lab_subnet(ec2, spec)
    stray = launch(
        ec2,
        subnet,
        "10.213.0.50",
        {labctl.TAG_CLUSTER: "xpu-lab", labctl.TAG_CONTAINER: "xpu-lab-cpu-st-c6i-9"},
    )
    untagged_stray = launch(ec2, subnet, "10.213.0.51", {labctl.TAG_CLUSTER: "xpu-lab"})
    other_tags = {
        labctl.TAG_CLUSTER: "other-lab",
        labctl.TAG_NODE_TYPE: "HeadNode",
        labctl.TAG_CONTAINER: "xpu-lab-head",  # even a clashing container tag
    }
    other = launch(ec2, subnet, "10.213.0.60", other_tags)
    unrelated = launch(ec2, subnet, "10.213.0.61", {"Name": "not-a-cluster"})

    result = labctl.register(spec)
    assert sorted(result["terminated"]) == sorted([stray, untagged_stray])
    assert result["created"] == []
    assert result["unchanged"] == sorted(SHIPPED_NODES)
    assert state_of(ec2, stray) == "terminated"
    assert state_of(ec2, untagged_stray) == "terminated"
    assert state_of(ec2, other) == "running"
    assert state_of(ec2, unrelated) == "running"
    assert tags_of(describe_one(ec2, other)) == other_tags
    assert {c: i["InstanceId"] for c, i in by_container(ec2, spec).items()} == before


@pytest.mark.aws
@pytest.mark.slow
def test_lab_instances_returns_only_this_clusters_running_instances(ec2: Any, spec: Any) -> None:
    labctl.register(spec)
    subnet = lab_subnet(ec2, spec)
    lab_tags = {labctl.TAG_CLUSTER: "xpu-lab", labctl.TAG_CONTAINER: "xpu-lab-extra"}
    terminated = launch(ec2, subnet, "10.213.0.50", lab_tags)
    ec2.terminate_instances(InstanceIds=[terminated])
    stopped = launch(ec2, subnet, "10.213.0.51", lab_tags)
    ec2.stop_instances(InstanceIds=[stopped])
    other = launch(ec2, subnet, "10.213.0.60", {labctl.TAG_CLUSTER: "other-lab"})

    found = labctl.lab_instances(ec2, spec)
    ids = {i["InstanceId"] for i in found}
    assert len(found) == len(ids) == 4
    assert not ids & {terminated, stopped, other}
    assert {i["PrivateIpAddress"] for i in found} == {a for _, a, _, _ in SHIPPED_NODES.values()}
    assert all(i["State"]["Name"] in ("pending", "running") for i in found)
    assert all(tags_of(i)[labctl.TAG_CLUSTER] == "xpu-lab" for i in found)


@pytest.mark.aws
@pytest.mark.slow
def test_lab_instances_is_empty_before_register(ec2: Any, spec: Any) -> None:
    assert labctl.lab_instances(ec2, spec) == []


# --------------------------------------------------------------------------- CLI


def test_main_nodes(capsys: pytest.CaptureFixture[str]) -> None:
    assert labctl.main(["--spec", str(SHIPPED_SPEC), "nodes"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{container} {hostname} {address} {role}"
        for hostname, (container, address, role, _) in SHIPPED_NODES.items()
    ]


def test_main_defaults_to_the_shipped_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert labctl.DEFAULT_SPEC == SHIPPED_SPEC
    assert labctl.main(["nodes"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_main_info(capsys: pytest.CaptureFixture[str]) -> None:
    assert labctl.main(["--spec", str(SHIPPED_SPEC), "info"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "cluster_name=xpu-lab",
        "network_name=xpu-lab",
        "subnet=10.213.0.0/24",
        "gateway=10.213.0.1",
        "region=us-east-1",
    ]


def test_main_slurm_conf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outdir = tmp_path / "etc-slurm"
    assert labctl.main(["--spec", str(SHIPPED_SPEC), "slurm-conf", str(outdir)]) == 0
    assert labctl.main(["--spec", str(SHIPPED_SPEC), "slurm-conf", str(outdir)]) == 0
    assert capsys.readouterr().out.splitlines() == ["changed", "unchanged"]
    assert (outdir / "slurm.conf").is_file()


@pytest.mark.parametrize("kind", ["missing", "invalid"])
def test_main_reports_a_bad_spec_with_exit_code_2(
    tmp_path: Path, shipped: dict[str, Any], capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    if kind == "missing":
        path = tmp_path / "absent.yml"
    else:
        del shipped["cluster_name"]
        path = write_spec(tmp_path, shipped)
    assert labctl.main(["--spec", str(path), "nodes"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("labctl: ")
    assert "Traceback" not in captured.err


def test_main_refuses_a_remote_endpoint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://ec2.us-east-1.amazonaws.com")
    from moto import mock_aws

    with mock_aws():
        assert labctl.main(["--spec", str(SHIPPED_SPEC), "instances"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("labctl: AWS_ENDPOINT_URL=")


@pytest.mark.aws
@pytest.mark.slow
def test_main_register_and_instances(ec2: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert labctl.main(["--spec", str(SHIPPED_SPEC), "register"]) == 0
    assert labctl.main(["--spec", str(SHIPPED_SPEC), "register"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "emulator: 4 created, 0 terminated, 0 unchanged",
        "emulator: 0 created, 0 terminated, 4 unchanged",
    ]
    assert labctl.main(["--spec", str(SHIPPED_SPEC), "instances"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [row[1:] for row in rows] == [
        ["running", "m6i.xlarge", "10.213.0.10", "HeadNode", "-", "xpu-lab-head"],
        ["running", "m6i.large", "10.213.0.11", "LoginNode", "-", "xpu-lab-login"],
        ["running", "c6i.xlarge", "10.213.0.21", "Compute", "cpu", "xpu-lab-cpu-st-c6i-1"],
        ["running", "c6i.xlarge", "10.213.0.22", "Compute", "cpu", "xpu-lab-cpu-st-c6i-2"],
    ]
    assert all(row[0].startswith("i-") for row in rows)


@pytest.mark.aws
@pytest.mark.slow
def test_register_replaces_a_stopped_instance(ec2: Any, spec: Any) -> None:
    labctl.register(spec)
    victim = by_container(ec2, spec)["xpu-lab-login"]["InstanceId"]
    ec2.stop_instances(InstanceIds=[victim])

    result = labctl.register(spec)
    assert result["terminated"] == [victim]
    assert result["created"] == ["login"]
    replacement = by_container(ec2, spec)["xpu-lab-login"]
    assert replacement["State"]["Name"] == "running"
    assert replacement["PrivateIpAddress"] == "10.213.0.11"


@pytest.mark.aws
@pytest.mark.slow
def test_register_makes_the_clusters_ed25519_key_pair_once(ec2: Any, spec: Any) -> None:
    labctl.register(spec)
    labctl.register(spec)
    pairs = ec2.describe_key_pairs()["KeyPairs"]
    assert [(p["KeyName"], p["KeyType"]) for p in pairs] == [("xpu-lab", "ed25519")]


def test_emulator_amis_stand_in_for_every_official_parallelcluster_image() -> None:
    import fnmatch

    amis = labctl.emulator_amis("3.16.1")
    names = [a["name"] for a in amis]
    # pcluster's own lookup pattern: aws-parallelcluster-<version>-<os part>-<arch>*
    for part in labctl.PCLUSTER_IMAGE_OS.values():
        for arch in ("x86_64", "arm64"):
            pattern = f"aws-parallelcluster-3.16.1-{part}-{arch}*"
            matches = [a for a in amis if fnmatch.fnmatch(a["name"], pattern)]
            assert len(matches) == 1, pattern
            assert matches[0]["architecture"] == arch
            assert matches[0]["state"] == "available"
    assert labctl.LAB_BASE_IMAGE in names
    assert len({a["ami_id"] for a in amis}) == len(amis)
    assert all(re.fullmatch(r"ami-[a-z0-9]+", a["ami_id"]) for a in amis)
    # moto 5.2.1 parses creation_date in place and then fails in a second region.
    assert all("creation_date" not in a for a in amis)


def test_write_emulator_amis_reports_changes(tmp_path: Path) -> None:
    path = tmp_path / "amis.json"
    assert labctl.write_emulator_amis(path) is True
    before = path.stat().st_mtime_ns
    assert labctl.write_emulator_amis(path) is False
    assert path.stat().st_mtime_ns == before
    assert json.loads(path.read_text())[0]["ami_id"].startswith("ami-")


def test_lab_sh_refuses_a_port_the_lab_inventory_does_not_use(tmp_path: Path) -> None:
    import subprocess

    inventory = yaml.safe_load((ROOT / "inventories" / "lab" / "aws_ec2.yml").read_text())
    port = urlsplit(inventory["endpoint_url"]).port
    env = {**os.environ, "XPU_LAB_AWS_PORT": str(port + 1), "XPU_LAB_STATE": str(tmp_path)}
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "lab.sh"), "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert f"reaches the emulator on port {port}" in proc.stderr
    assert not list(tmp_path.iterdir())  # refused before doing anything
