"""The real pcluster CLI's dry run, driven by xpu.parallelcluster.pcluster_cluster in check mode.

Against the local AWS emulator: the test creates a VPC with a public and a private subnet, an
ed25519 key pair and a stand-in AMI, writes a minimal ParallelCluster v3 config (Slurm, head node
m6i.xlarge, queue ``cpu`` with c6i.xlarge 0-2, ubuntu2204), and runs the module through
``ansible-playbook --check``. ParallelCluster's validators run against the emulator (about 70 of
them); only those the emulator cannot serve are suppressed, each listed below with the reason.
pcluster reaches AWS through the environment the Makefile sets: ``AWS_ENDPOINT_URL`` (botocore
honours it for every service), dummy credentials, and the ``HTTPS_PROXY=http://127.0.0.1:9`` fence,
which makes pcluster's fetch of the supported-regions list over HTTPS fail; pcluster then falls
back to the copy in its package (``pcluster.utils.retrieve_supported_regions``).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
import uuid

import boto3
import pytest
import yaml

from tests.fence import assert_loopback_endpoint

from .conftest import ROOT, TIMINGS

pytestmark = [pytest.mark.aws]

#: Validators suppressed for EMULATOR GAPS only (docs/cluster-lifecycle.md keeps the same list).
EMULATOR_SUPPRESSED_VALIDATORS = (
    # pcluster validates the head node's launch template with a RunInstances dry run whose block
    # device mappings include instance-store volumes ({"DeviceName": "/dev/sdb", "VirtualName":
    # "ephemeral0"}). EC2 accepts them; moto 5.2.1 requires "Ebs" in every mapping and answers
    # "MissingParameter: The request must contain the parameter ebs".
    "type:HeadNodeLaunchTemplateValidator",
    # The same RunInstances dry run for the compute resources of the first queue.
    "type:ComputeResourceLaunchTemplateValidator",
)
# Emulator gaps that need no suppression, because the test builds the resources around them:
# - No official ParallelCluster AMI: pcluster looks one up with DescribeImages (owner amazon,
#   name aws-parallelcluster-3.16.1-ubuntu-2204-lts-hvm-x86_64*) before any validator runs, and a
#   failed lookup ends the dry run ("Cannot find official ParallelCluster AMI"). The test makes a
#   stand-in with CreateImage (so it has an architecture), tags it as pcluster does
#   (parallelcluster:version/os/build_status) and sets Image.CustomAmi.
# - moto omits KeyType for key pairs created without one, and KeyPairValidator then fails with
#   'KeyType'; the key pair is created as ed25519, which ubuntu2204 needs anyway (RSA is refused).
# - RegisterImage in moto drops Architecture, which InstanceTypeBaseAMICompatibleValidator needs;
#   CreateImage from an x86_64 instance keeps it.

PCLUSTER_VERSION = "3.16.1"
DRYRUN_SUCCESS = "Request would have succeeded, but DryRun flag is set."


@pytest.fixture(scope="module")
def ec2(emulator: str):
    endpoint = assert_loopback_endpoint(emulator)
    return boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture(scope="module")
def network(ec2):
    """VPC, public and private subnet, ed25519 key pair and a stand-in pcluster AMI."""
    tag = uuid.uuid4().hex[:8]
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": True})
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.0.0/24", AvailabilityZone="us-east-1a")
    private = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24", AvailabilityZone="us-east-1a")
    public_id = public["Subnet"]["SubnetId"]
    private_id = private["Subnet"]["SubnetId"]
    ec2.modify_subnet_attribute(SubnetId=public_id, MapPublicIpOnLaunch={"Value": True})
    key = f"xpu-dryrun-{tag}"
    ec2.create_key_pair(KeyName=key, KeyType="ed25519")
    base = ec2.describe_images(
        Owners=["amazon"],
        Filters=[
            {"Name": "architecture", "Values": ["x86_64"]},
            {"Name": "name", "Values": ["ubuntu/images/*"]},
        ],
    )["Images"]
    assert base, "the emulator holds no x86_64 Ubuntu image to derive a stand-in AMI from"
    instance = ec2.run_instances(
        ImageId=base[0]["ImageId"],
        MinCount=1,
        MaxCount=1,
        InstanceType="m6i.xlarge",
        SubnetId=private_id,
    )["Instances"][0]["InstanceId"]
    ami = ec2.create_image(InstanceId=instance, Name=f"xpu-dryrun-ubuntu2204-{tag}")["ImageId"]
    ec2.terminate_instances(InstanceIds=[instance])
    ec2.create_tags(
        Resources=[ami],
        Tags=[
            {"Key": "parallelcluster:version", "Value": PCLUSTER_VERSION},
            {"Key": "parallelcluster:os", "Value": "ubuntu2204"},
            {"Key": "parallelcluster:build_status", "Value": "available"},
        ],
    )
    yield {"public": public_id, "private": private_id, "key": key, "ami": ami, "tag": tag}
    ec2.deregister_image(ImageId=ami)
    ec2.delete_key_pair(KeyName=key)
    ec2.delete_subnet(SubnetId=public_id)
    ec2.delete_subnet(SubnetId=private_id)
    ec2.detach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    ec2.delete_internet_gateway(InternetGatewayId=igw)
    ec2.delete_vpc(VpcId=vpc)


def minimal_config(network: dict) -> dict:
    return {
        "Region": "us-east-1",
        "Image": {"Os": "ubuntu2204", "CustomAmi": network["ami"]},
        "HeadNode": {
            "InstanceType": "m6i.xlarge",
            "Networking": {"SubnetId": network["public"]},
            "Ssh": {"KeyName": network["key"]},
        },
        "Scheduling": {
            "Scheduler": "slurm",
            "SlurmQueues": [
                {
                    "Name": "cpu",
                    "ComputeResources": [
                        {
                            "Name": "c6i",
                            "InstanceType": "c6i.xlarge",
                            "MinCount": 0,
                            "MaxCount": 2,
                        }
                    ],
                    "Networking": {"SubnetIds": [network["private"]]},
                }
            ],
        },
    }


def compute_resource(config: dict) -> dict:
    return config["Scheduling"]["SlurmQueues"][0]["ComputeResources"][0]


@pytest.fixture(scope="module")
def dry_runs(network: dict, tmp_path_factory) -> dict[str, dict]:
    """Run the module in check mode on four configs in one playbook; results by task name."""
    workdir = tmp_path_factory.mktemp("pcluster-dryrun")
    good = minimal_config(network)
    efa = copy.deepcopy(good)
    compute_resource(efa)["Efa"] = {"Enabled": True}
    min_over_max = copy.deepcopy(good)
    compute_resource(min_over_max).update(MinCount=3, MaxCount=2)
    configs = {"valid": good, "efa": efa, "min_over_max": min_over_max, "unsuppressed": good}
    tasks = []
    for name, config in configs.items():
        path = workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        suppress = [] if name == "unsuppressed" else list(EMULATOR_SUPPRESSED_VALIDATORS)
        tasks.append(
            {
                "name": name,
                "xpu.parallelcluster.pcluster_cluster": {
                    "name": f"xpu-dryrun-{network['tag']}",
                    "region": "us-east-1",
                    "config": str(path),
                    "suppress_validators": suppress,
                },
                "ignore_errors": True,
            }
        )
    playbook = workdir / "dryrun.yml"
    playbook.write_text(
        json.dumps(
            [{"name": "dry runs", "hosts": "localhost", "gather_facts": False, "tasks": tasks}]
        )
    )
    env = {
        **os.environ,
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".cache" / "collections"),
    }
    argv = [
        str(ROOT / ".venv" / "bin" / "ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={sys.executable}",
        "--check",
        str(playbook),
    ]
    started = time.monotonic()
    proc = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    TIMINGS["pcluster_cluster check mode, 4 dry runs"] = time.monotonic() - started
    try:
        report = json.loads(proc.stdout)
    except ValueError as exc:
        raise AssertionError(
            f"ansible-playbook printed no JSON (rc {proc.returncode})\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-3000:]}"
        ) from exc
    results = {}
    for task in report["plays"][0]["tasks"]:
        results[task["task"]["name"]] = task["hosts"]["localhost"]
    return results


def test_minimal_config_passes_the_dry_run(dry_runs: dict) -> None:
    result = dry_runs["valid"]
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert result["msg"] == f"cluster {result['invocation']['module_args']['name']} would be " + (
        f"created ({DRYRUN_SUCCESS})"
    )
    assert result["cluster"] is None
    assert result["validation_messages"] == []


def test_efa_on_a_type_without_efa_fails_with_the_validator_message(dry_runs: dict) -> None:
    result = dry_runs["efa"]
    assert result["failed"] is True
    assert (
        "[ERROR] EfaValidator: Instance type 'c6i.xlarge' does not support EFA." in (result["msg"])
    )
    assert "EfaValidator" in {m["type"] for m in result["validation_messages"]}


def test_min_count_over_max_count_fails_with_the_validator_message(dry_runs: dict) -> None:
    result = dry_runs["min_over_max"]
    assert result["failed"] is True
    assert result["validation_messages"] == [
        {
            "level": "ERROR",
            "type": "ComputeResourceSizeValidator",
            "message": "Max count must be greater than or equal to min count.",
        }
    ]


def test_only_the_listed_emulator_gaps_fail_without_suppression(dry_runs: dict) -> None:
    """When moto closes a gap this fails: drop that validator from the list (and the docs)."""
    result = dry_runs["unsuppressed"]
    assert result["failed"] is True
    failing = {m["type"] for m in result["validation_messages"] if m["level"] == "ERROR"}
    assert failing == {v.split(":", 1)[1] for v in EMULATOR_SUPPRESSED_VALIDATORS}
    assert "The request must contain the parameter ebs" in result["msg"]


def test_the_docs_list_the_same_suppressed_validators() -> None:
    docs = (ROOT / "docs" / "cluster-lifecycle.md").read_text()
    for validator in EMULATOR_SUPPRESSED_VALIDATORS:
        assert f"`{validator}`" in docs
