#!/usr/bin/env python3
"""Helpers for scripts/lab.sh: the lab's node list, its Slurm configuration and
its EC2 instances in the local AWS emulator.

The lab cluster is described once, in lab-cluster.yml. This program turns that
description into:

* ``nodes``: one line per node for the shell (container, hostname, address, role);
* ``slurm-conf DIR``: slurm.conf laid out the way ParallelCluster lays it out
  (a main file that includes ``slurm_parallelcluster.conf``, which includes one
  partition file per queue under ``pcluster/``);
* ``register``: one EC2 instance per node in the emulator, tagged with the real
  ParallelCluster tags, so ``amazon.aws.aws_ec2`` builds the inventory exactly as
  it does on AWS. Re-running changes nothing; instances of removed nodes are
  terminated.
* ``instances``: what the emulator holds for the lab cluster.

Every AWS call goes to ``AWS_ENDPOINT_URL``, which must be a loopback address.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import ipaddress
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

HERE = Path(__file__).resolve().parent
DEFAULT_SPEC = HERE / "lab-cluster.yml"

# Tags ParallelCluster puts on the instances it launches.
TAG_CLUSTER = "parallelcluster:cluster-name"
TAG_NODE_TYPE = "parallelcluster:node-type"
TAG_QUEUE = "parallelcluster:queue-name"
TAG_COMPUTE_RESOURCE = "parallelcluster:compute-resource-name"
# Lab-only tag: the podman container that stands in for the instance.
TAG_CONTAINER = "xpu:lab-container"

NODE_TYPES = {"head": "HeadNode", "login": "LoginNode", "compute": "Compute"}


class LabError(Exception):
    """A problem the user can fix; printed without a traceback."""


@dataclass(frozen=True)
class Node:
    container: str
    hostname: str
    address: str
    role: str  # head | login | compute
    instance_type: str
    queue: str = ""
    compute_resource: str = ""
    login_pool: str = ""

    @property
    def tags(self) -> dict[str, str]:
        tags = {
            "Name": NODE_TYPES[self.role],
            TAG_CLUSTER: "",  # filled in by LabSpec
            TAG_NODE_TYPE: NODE_TYPES[self.role],
            TAG_CONTAINER: self.container,
        }
        if self.role == "compute":
            tags[TAG_QUEUE] = self.queue
            tags[TAG_COMPUTE_RESOURCE] = self.compute_resource
        if self.role == "login":
            tags["parallelcluster:login-nodes-pool"] = self.login_pool
        return tags


@dataclass(frozen=True)
class LabSpec:
    cluster_name: str
    region: str
    network_name: str
    subnet: ipaddress.IPv4Network
    vpc_cidr: ipaddress.IPv4Network
    nodes: tuple[Node, ...]
    queues: tuple[dict[str, Any], ...]

    @property
    def head(self) -> Node:
        return next(n for n in self.nodes if n.role == "head")

    def node_tags(self, node: Node) -> dict[str, str]:
        tags = node.tags
        tags[TAG_CLUSTER] = self.cluster_name
        return tags


def _require(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data or data[key] in (None, ""):
        raise LabError(f"{where}: '{key}' is required")
    return data[key]


def load_spec(path: Path = DEFAULT_SPEC) -> LabSpec:
    """Read and check lab-cluster.yml."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise LabError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise LabError(f"{path}: expected a mapping at the top level")
    name = str(_require(data, "cluster_name", path.name))
    net = _require(data, "network", path.name)
    try:
        subnet = ipaddress.ip_network(str(_require(net, "subnet", "network")))
        vpc = ipaddress.ip_network(str(net.get("vpc_cidr", subnet)))
    except ValueError as exc:
        raise LabError(f"network: {exc}") from exc
    if not subnet.subnet_of(vpc):  # type: ignore[arg-type]
        raise LabError(f"network.subnet {subnet} must lie inside network.vpc_cidr {vpc}")

    try:
        nodes, queues = _load_nodes(data, name, path)
    except (KeyError, TypeError, ValueError) as exc:
        raise LabError(f"{path.name}: invalid node or queue entry ({exc!r})") from exc
    seen: set[str] = set()
    for node in nodes:
        addr = ipaddress.ip_address(node.address)
        if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
            raise LabError(f"node {node.hostname}: address {addr} is not usable in {subnet}")
        if int(addr) - int(subnet.network_address) < 4:
            raise LabError(f"node {node.hostname}: {addr} is reserved (gateway / AWS reserved)")
        for key in (node.hostname, node.address):
            if key in seen:
                raise LabError(f"node {node.hostname}: '{key}' is used twice")
            seen.add(key)
    return LabSpec(
        cluster_name=name,
        region=str(data.get("region", "us-east-1")),
        network_name=str(net.get("name", name)),
        subnet=subnet,  # type: ignore[arg-type]
        vpc_cidr=vpc,  # type: ignore[arg-type]
        nodes=tuple(nodes),
        queues=queues,
    )


def _load_nodes(
    data: dict[str, Any], name: str, path: Path
) -> tuple[list[Node], tuple[dict[str, Any], ...]]:
    def container(hostname: str) -> str:
        return f"{name}-{hostname}"

    nodes: list[Node] = []
    head = _require(data, "head_node", path.name)
    nodes.append(
        Node(
            container=container(head["hostname"]),
            hostname=head["hostname"],
            address=str(head["address"]),
            role="head",
            instance_type=head["instance_type"],
        )
    )
    for pool in data.get("login_nodes") or []:
        nodes.append(
            Node(
                container=container(pool["hostname"]),
                hostname=pool["hostname"],
                address=str(pool["address"]),
                role="login",
                instance_type=pool["instance_type"],
                login_pool=pool["pool"],
            )
        )
    queues = tuple(_require(data, "queues", path.name))
    queue_names = [q["name"] for q in queues]
    if len(set(queue_names)) != len(queue_names):
        raise LabError(f"{path.name}: queue names must be unique (got {queue_names})")
    for queue in queues:
        for cr in _require(queue, "compute_resources", f"queue {queue.get('name')}"):
            if int(cr["count"]) < 1:
                raise LabError(
                    f"queue {queue['name']} compute resource {cr['name']}: count must be 1 or more"
                )
            first = ipaddress.ip_address(str(cr["first_address"]))
            for index in range(1, int(cr["count"]) + 1):
                # ParallelCluster's static node name: <queue>-st-<resource>-<n>
                hostname = f"{queue['name']}-st-{cr['name']}-{index}"
                nodes.append(
                    Node(
                        container=container(hostname),
                        hostname=hostname,
                        address=str(first + index - 1),
                        role="compute",
                        instance_type=cr["instance_type"],
                        queue=queue["name"],
                        compute_resource=cr["name"],
                    )
                )
    return nodes, queues


# ---------------------------------------------------------------- Slurm config

HEADER = "# Managed by scripts/lab.sh from scripts/lab/lab-cluster.yml; edits are overwritten.\n"


def _hostlist(names: list[str]) -> str:
    """Compress ['q-st-c-1', 'q-st-c-2'] to 'q-st-c-[1-2]' (one contiguous range)."""
    if len(names) == 1:
        return names[0]
    prefix = names[0].rsplit("-", 1)[0]
    numbers = [int(n.rsplit("-", 1)[1]) for n in names]
    if all(n.rsplit("-", 1)[0] == prefix for n in names) and numbers == list(
        range(numbers[0], numbers[0] + len(numbers))
    ):
        return f"{prefix}-[{numbers[0]}-{numbers[-1]}]"
    return ",".join(names)


def render_slurm(spec: LabSpec) -> dict[str, str]:
    """Return {relative path: content} for the lab's Slurm configuration."""
    head = spec.head
    main = HEADER + "\n".join(
        [
            f"ClusterName={spec.cluster_name}",
            f"SlurmctldHost={head.hostname}({head.address})",
            "SlurmUser=slurm",
            "SlurmctldPort=6817",
            "SlurmdPort=6818",
            "AuthType=auth/munge",
            "StateSaveLocation=/var/lib/slurm/slurmctld",
            "SlurmdSpoolDir=/var/spool/slurmd",
            "SlurmctldPidFile=/run/slurmctld.pid",
            "SlurmdPidFile=/run/slurmd.pid",
            "SwitchType=switch/none",
            "MpiDefault=none",
            # ParallelCluster uses proctrack/cgroup and task/cgroup,affinity; those
            # need privileged containers, so the lab tracks processes without cgroups.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "ReturnToService=1",
            "PropagateResourceLimitsExcept=MEMLOCK",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "MailProg=/bin/true",
            "JobCompType=jobcomp/none",
            "JobAcctGatherType=jobacct_gather/none",
            "SlurmctldLogFile=/var/log/slurm/slurmctld.log",
            "SlurmdLogFile=/var/log/slurm/slurmd.log",
            "SlurmctldTimeout=300",
            "SlurmdTimeout=180",
            "InactiveLimit=0",
            "MinJobAge=300",
            "KillWait=30",
            "Waittime=0",
            "MessageTimeout=30",
            # As on ParallelCluster: hide nothing from users, show CLOUD nodes.
            "PrivateData=cloud",
            # The lab's nodes are static and always on: no power saving, so Slurm
            # never waits for a container 'reboot' it cannot observe.
            "include slurm_parallelcluster.conf",
            "",
        ]
    )
    partitions = []
    files: dict[str, str] = {}
    for index, queue in enumerate(spec.queues):
        qname = queue["name"]
        lines = [HEADER.rstrip("\n")]
        all_names: list[str] = []
        for cr in queue["compute_resources"]:
            nodes = [
                n
                for n in spec.nodes
                if n.role == "compute" and n.queue == qname and n.compute_resource == cr["name"]
            ]
            names = [n.hostname for n in nodes]
            all_names.extend(names)
            for node in nodes:
                lines.append(
                    f"NodeName={node.hostname} NodeAddr={node.address} "
                    f"NodeHostname={node.hostname} CPUs={int(cr['cpus'])} "
                    f"RealMemory={int(cr['real_memory_mb'])} State=UNKNOWN "
                    f"Feature=static,{cr['instance_type']},{cr['name']}"
                )
            lines.append(f"NodeSet={qname}_{cr['name']}_nodes Nodes={_hostlist(names)}")
        default = "YES" if index == 0 else "NO"
        nodesets = ",".join(f"{qname}_{cr['name']}_nodes" for cr in queue["compute_resources"])
        lines.append(
            f"PartitionName={qname} Nodes={nodesets} MaxTime=INFINITE State=UP Default={default}"
        )
        files[f"pcluster/slurm_parallelcluster_{qname}_partition.conf"] = "\n".join(lines) + "\n"
        partitions.append(f"include pcluster/slurm_parallelcluster_{qname}_partition.conf")
    files["slurm.conf"] = main
    files["slurm_parallelcluster.conf"] = HEADER + "\n".join(partitions) + "\n"
    return files


def write_slurm(spec: LabSpec, outdir: Path) -> bool:
    """Write the Slurm files; return True when any content changed."""
    changed = False
    for rel, content in render_slurm(spec).items():
        path = outdir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.read_text() == content:
            continue
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(content)
        tmp.chmod(0o644)
        tmp.replace(path)
        changed = True
    return changed


# ---------------------------------------------------------------- emulator


def emulator_endpoint() -> str:
    """The emulator URL from AWS_ENDPOINT_URL, refusing anything but loopback."""
    url = os.environ.get("AWS_ENDPOINT_URL", "")
    host = urlparse(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise LabError(
            f"AWS_ENDPOINT_URL={url!r} is not a loopback address; the lab talks only to "
            "the local emulator (run through `make`, which sets it)"
        )
    return url


def ec2_client(spec: LabSpec) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "ec2",
        region_name=spec.region,
        endpoint_url=emulator_endpoint(),
        config=Config(retries={"max_attempts": 2}, connect_timeout=3, read_timeout=30),
    )


LIVE_STATES = ("pending", "running")


def lab_instances(
    ec2: Any, spec: LabSpec, states: tuple[str, ...] = LIVE_STATES
) -> list[dict[str, Any]]:
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[
            {"Name": f"tag:{TAG_CLUSTER}", "Values": [spec.cluster_name]},
            {"Name": "instance-state-name", "Values": list(states)},
        ]
    )
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def _ensure_network(ec2: Any, spec: LabSpec) -> str:
    """The emulated VPC and subnet (tagged with the cluster name); returns the subnet id."""
    tag = [{"Key": "xpu:lab-cluster", "Value": spec.cluster_name}]
    subnets = ec2.describe_subnets(
        Filters=[{"Name": "tag:xpu:lab-cluster", "Values": [spec.cluster_name]}]
    )["Subnets"]
    for subnet in subnets:
        if subnet["CidrBlock"] == str(spec.subnet):
            return subnet["SubnetId"]
    vpc = ec2.create_vpc(
        CidrBlock=str(spec.vpc_cidr),
        TagSpecifications=[{"ResourceType": "vpc", "Tags": tag}],
    )["Vpc"]["VpcId"]
    return ec2.create_subnet(
        VpcId=vpc,
        CidrBlock=str(spec.subnet),
        TagSpecifications=[{"ResourceType": "subnet", "Tags": tag}],
    )["Subnet"]["SubnetId"]


def _image_id(ec2: Any) -> str:
    images = ec2.describe_images(
        Owners=["amazon"], Filters=[{"Name": "architecture", "Values": ["x86_64"]}]
    )["Images"]
    if not images:
        raise LabError("the emulator offers no AMI to launch lab instances from")
    preferred = [i for i in images if i.get("Name") == LAB_BASE_IMAGE]
    return (preferred or sorted(images, key=lambda i: i["ImageId"]))[0]["ImageId"]


def register(spec: LabSpec) -> dict[str, list[str]]:
    """Make the emulator hold exactly one running instance per lab node."""
    ec2 = ec2_client(spec)
    # A stopped instance still holds its address: replace it like any stale one.
    existing = lab_instances(ec2, spec, (*LIVE_STATES, "stopping", "stopped"))
    by_container: dict[str, dict[str, Any]] = {}
    stale: list[str] = []
    for inst in existing:
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        container = tags.get(TAG_CONTAINER, "")
        wanted = next((n for n in spec.nodes if n.container == container), None)
        if (
            wanted is None
            or inst["State"]["Name"] not in LIVE_STATES
            or container in by_container
            or inst.get("PrivateIpAddress") != wanted.address
            or inst.get("InstanceType") != wanted.instance_type
            or any(tags.get(k) != v for k, v in spec.node_tags(wanted).items())
        ):
            stale.append(inst["InstanceId"])
        else:
            by_container[container] = inst
    _ensure_key_pair(ec2, spec)
    if stale:
        ec2.terminate_instances(InstanceIds=stale)
    created: list[str] = []
    missing = [n for n in spec.nodes if n.container not in by_container]
    if missing:
        subnet = _ensure_network(ec2, spec)
        image = _image_id(ec2)
        for node in missing:
            tags = [{"Key": k, "Value": v} for k, v in spec.node_tags(node).items()]
            ec2.run_instances(
                ImageId=image,
                InstanceType=node.instance_type,
                MinCount=1,
                MaxCount=1,
                # DeleteOnTermination frees the address when a replaced instance
                # is terminated, so its successor can take it.
                NetworkInterfaces=[
                    {
                        "DeviceIndex": 0,
                        "SubnetId": subnet,
                        "PrivateIpAddress": node.address,
                        "DeleteOnTermination": True,
                    }
                ],
                MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
                TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
            )
            created.append(node.hostname)
    return {
        "created": created,
        "terminated": stale,
        "unchanged": sorted(n.hostname for n in spec.nodes if n.container in by_container),
    }


# What the emulator must hold that AWS has and moto does not: ParallelCluster's official AMIs
# (pcluster looks them up by owner and name before it validates anything) and a plain Ubuntu
# image the lab's instances are launched from. moto loads them at start from MOTO_AMIS_PATH.
PCLUSTER_IMAGE_OS = {
    "alinux2023": "amzn2023-hvm",
    "ubuntu2204": "ubuntu-2204-lts-hvm",
    "ubuntu2404": "ubuntu-2404-lts-hvm",
    "rhel8": "rhel8-hvm",
    "rhel9": "rhel9-hvm",
}
LAB_BASE_IMAGE = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20251101"
AMAZON_OWNER_ID = "137112412989"


def _ami_id(name: str) -> str:
    return "ami-" + hashlib.sha256(name.encode()).hexdigest()[:17]


def emulator_amis(pcluster_version: str) -> list[dict[str, Any]]:
    """Stand-ins for the AMIs the lab needs, in moto's MOTO_AMIS_PATH format.

    No ``creation_date``: moto 5.2.1 parses it in place in the shared list, and the second
    region it loads then fails on an already parsed date (moto sets the date itself).
    """
    created = "2025-11-01T00:00:00.000Z"

    def image(name: str, arch: str, description: str, tags: dict[str, str]) -> dict[str, Any]:
        return {
            "ami_id": _ami_id(name),
            "name": name,
            "description": description,
            "owner_id": AMAZON_OWNER_ID,
            "public": True,
            "state": "available",
            "architecture": arch,
            "virtualization_type": "hvm",
            "hypervisor": "xen",
            "image_type": "machine",
            "root_device_type": "ebs",
            "root_device_name": "/dev/sda1",
            "sriov": "simple",
            "boot_mode": "uefi-preferred",
            "image_location": f"amazon/{name}",
            "tags": tags,
        }

    amis = [image(LAB_BASE_IMAGE, "x86_64", "Ubuntu 22.04 (lab instances)", {})]
    for os_name, part in PCLUSTER_IMAGE_OS.items():
        for arch in ("x86_64", "arm64"):
            name = f"aws-parallelcluster-{pcluster_version}-{part}-{arch}-202511010000 {created}"
            amis.append(
                image(
                    name,
                    arch,
                    f"AWS ParallelCluster AMI for {os_name}, stand-in of the local lab",
                    {
                        "parallelcluster:version": pcluster_version,
                        "parallelcluster:os": os_name,
                        "parallelcluster:build_status": "available",
                    },
                )
            )
    return amis


def write_emulator_amis(path: Path) -> bool:
    """Write the AMI file for the emulator; True when its content changed."""
    try:
        version = importlib.metadata.version("aws-parallelcluster")
    except importlib.metadata.PackageNotFoundError as exc:
        raise LabError("aws-parallelcluster is not installed; run 'make deps'") from exc
    content = json.dumps(emulator_amis(version), indent=1, sort_keys=True) + "\n"
    if path.exists() and path.read_text() == content:
        return False
    path.write_text(content)
    return True


def _ensure_key_pair(ec2: Any, spec: LabSpec) -> None:
    """The cluster's SSH key pair (ed25519, as ParallelCluster needs on Ubuntu)."""
    try:
        ec2.describe_key_pairs(KeyNames=[spec.cluster_name])
    except Exception as exc:  # botocore ClientError: InvalidKeyPair.NotFound
        if "NotFound" not in str(exc):
            raise
        ec2.create_key_pair(KeyName=spec.cluster_name, KeyType="ed25519")


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="lab cluster file")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("nodes", help="print: container hostname address role (one node a line)")
    sub.add_parser("info", help="print shell assignments: cluster, network, subnet, region")
    conf = sub.add_parser("slurm-conf", help="write Slurm's configuration into DIR")
    conf.add_argument("dir", type=Path)
    amis = sub.add_parser("amis", help="write the stand-in AMIs for MOTO_AMIS_PATH")
    amis.add_argument("file", type=Path)
    sub.add_parser("register", help="register one EC2 instance per node in the emulator")
    sub.add_parser("instances", help="list the lab's instances in the emulator")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec)
        if args.command == "nodes":
            for n in spec.nodes:
                print(n.container, n.hostname, n.address, n.role)
        elif args.command == "info":
            print(f"cluster_name={spec.cluster_name}")
            print(f"network_name={spec.network_name}")
            print(f"subnet={spec.subnet}")
            print(f"gateway={next(spec.subnet.hosts())}")
            print(f"region={spec.region}")
        elif args.command == "slurm-conf":
            print("changed" if write_slurm(spec, args.dir) else "unchanged")
        elif args.command == "amis":
            print("changed" if write_emulator_amis(args.file) else "unchanged")
        elif args.command == "register":
            result = register(spec)
            print(
                "emulator: {} created, {} terminated, {} unchanged".format(
                    len(result["created"]), len(result["terminated"]), len(result["unchanged"])
                )
            )
        elif args.command == "instances":
            for inst in sorted(
                lab_instances(ec2_client(spec), spec), key=lambda i: i.get("PrivateIpAddress", "")
            ):
                tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
                print(
                    inst["InstanceId"],
                    inst["State"]["Name"],
                    inst["InstanceType"],
                    inst.get("PrivateIpAddress", "-"),
                    tags.get(TAG_NODE_TYPE, "-"),
                    tags.get(TAG_QUEUE, "-"),
                    tags.get(TAG_CONTAINER, "-"),
                )
    except LabError as exc:
        print(f"labctl: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
