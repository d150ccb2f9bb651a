"""Rendering the ParallelCluster config: golden files per preset, and a test per rule.

Golden files live in tests/unit/fixtures/cluster_config/ (see the README there); regenerate them
with XPU_UPDATE_GOLDEN=1 after an intended change and review the diff.
"""

from __future__ import annotations

import builtins
import copy
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.xpu.parallelcluster.plugins.module_utils import cluster_render as cr
from ansible_collections.xpu.parallelcluster.plugins.module_utils import cluster_spec as cs

ROOT = Path(__file__).resolve().parents[4]
PRESETS = ROOT / "playbooks" / "vars" / "cluster_presets"
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "cluster_config"
PRESET_NAMES = sorted(p.stem for p in PRESETS.glob("*.yml"))
INFRA: dict[str, Any] = json.loads((FIXTURES / "infra_outputs.json").read_text())
BUCKET = INFRA["NodeAssetsBucketName"]
AMP_POLICY = INFRA["AmpRemoteWritePolicyArn"]


def preset(name: str) -> dict[str, Any]:
    return yaml.safe_load((PRESETS / f"{name}.yml").read_text())["cluster_spec"]


def spec() -> dict[str, Any]:
    """A spec that exercises most of the renderer: GPU, CPU and reserved queues, login pool."""
    return {
        "name": "rules",
        "region": "us-east-1",
        "login_pools": [{"name": "login"}],
        "queues": [
            {
                "name": "gpu",
                "compute_resources": [
                    {"name": "p5", "instance_type": "p5.48xlarge", "max_count": 4},
                    {"name": "g6e", "instance_type": "g6e.12xlarge", "max_count": 2},
                ],
            },
            {
                "name": "cb",
                "capacity_type": "CAPACITY_BLOCK",
                "reservation_id": "cr-0123456789abcdef0",
                "compute_resources": [
                    {"name": "b200", "instance_type": "p6-b200.48xlarge", "max_count": 2}
                ],
            },
            {
                "name": "cpu",
                "capacity_type": "SPOT",
                "multi_az": True,
                "compute_resources": [
                    {"name": "m6i", "instance_type": "m6i.xlarge", "max_count": 10}
                ],
            },
        ],
    }


def render(raw: dict[str, Any] | None = None, infra: dict[str, Any] | None = None) -> cr.Rendered:
    return cr.render(raw if raw is not None else spec(), INFRA if infra is None else infra)


def queue(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(q for q in config["Scheduling"]["SlurmQueues"] if q["Name"] == name)


def resource(config: dict[str, Any], queue_name: str, name: str) -> dict[str, Any]:
    return next(c for c in queue(config, queue_name)["ComputeResources"] if c["Name"] == name)


def render_error(raw: dict[str, Any], infra: dict[str, Any] | None = None) -> list[str]:
    with pytest.raises(cr.RenderError) as exc:
        render(raw, infra)
    return [str(i) for i in exc.value.issues]


# ---------------------------------------------------------------------------------------------
# Golden files and offline validation, per preset
# ---------------------------------------------------------------------------------------------


def test_there_is_a_preset_per_accelerator_family_and_a_cpu_one() -> None:
    assert {"p6-b200", "p5en", "p5", "p4d", "cpu"} <= set(PRESET_NAMES)
    assert {"g5", "g6e"} & set(PRESET_NAMES) and {"trn1", "trn2"} & set(PRESET_NAMES)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_golden(name: str) -> None:
    rendered = render(preset(name))
    golden = FIXTURES / f"{name}.yaml"
    if os.environ.get("XPU_UPDATE_GOLDEN") == "1":
        golden.write_text(rendered.config_yaml)
    assert golden.is_file(), f"no golden file for {name}: run with XPU_UPDATE_GOLDEN=1"
    assert rendered.config_yaml == golden.read_text()
    assert yaml.safe_load(rendered.config_yaml) == rendered.config


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_preset_passes_parallelcluster_schema_offline(name: str) -> None:
    rendered = render(preset(name))
    spec_ = preset(name)
    cr.validate_offline(rendered.config, spec_["name"], spec_["region"])


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_preset_config_holds_no_nulls(name: str) -> None:
    assert cr.find_nulls(render(preset(name)).config) == []


def test_find_nulls_sees_nested_nulls() -> None:
    assert cr.find_nulls({"A": [{"B": None}], "C": {}}) == ["A[0].B", "C"]


def test_a_spec_with_every_option_renders_without_nulls_and_passes_the_schema() -> None:
    raw = spec()
    raw.update(
        os="ubuntu2204",
        custom_ami="ami-0123456789abcdef0",
        head_node={
            "instance_type": "m6i.4xlarge",
            "subnet_id": "subnet-0123456789abcdef9",
            "ssh_key_name": "admin",
            "additional_iam_policies": ["arn:aws:iam::123456789012:policy/head-extra"],
            "dcv": {"enabled": True, "allowed_cidr": "10.1.0.0/16"},
        },
        shared_storage={
            "fsx": {"file_system_id": "fs-0123456789abcdef9"},
            "efs": [
                {"name": "home", "mount_dir": "/home", "file_system_id": "fs-01234567"},
                {
                    "name": "sw",
                    "mount_dir": "/sw",
                    "throughput_mode": "provisioned",
                    "provisioned_throughput": 128,
                    "deletion_policy": "Retain",
                },
            ],
            "ebs": [
                {
                    "name": "data",
                    "mount_dir": "/data",
                    "size": 500,
                    "iops": 4000,
                    "throughput": 250,
                },
                {"name": "old", "mount_dir": "/old", "volume_id": "vol-0123456789abcdef0"},
            ],
        },
        slurm={
            "scaledown_idletime": 30,
            "queue_update_strategy": "TERMINATE",
            "enable_memory_based_scheduling": True,
            "custom_slurm_settings": [{"MaxJobCount": 20000}],
            "database": {
                "uri": "db.example.com:3306",
                "user_name": "slurm",
                "password_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db",
                "database_name": "slurm_acct",
            },
        },
        monitoring={"log_retention_days": 30, "detailed_monitoring": True},
        bootstrap={"args": ["--verbose"], "head_node_timeout": 2400},
        tags={"team": "ml", "cost-center": 42},
        iam={
            "additional_policies": ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"],
            "permissions_boundary": "arn:aws:iam::123456789012:policy/boundary",
        },
        directory_service={
            "domain_name": "corp.example.com",
            "domain_addr": "ldaps://corp.example.com",
            "domain_read_only_user": "cn=ReadOnly,ou=Users,dc=corp,dc=example,dc=com",
            "password_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ad",
            "ldap_tls_req_cert": "hard",
            "generate_ssh_keys_for_users": True,
        },
        proxy={"http_proxy_address": "http://proxy.example.com:8080"},
    )
    raw["login_pools"][0].update(
        gracetime_period=10,
        bootstrap=True,
        additional_iam_policies=["arn:aws:iam::123456789012:policy/read-bootstrap"],
    )
    raw["queues"][0].update(
        root_volume_size=300,
        job_exclusive_allocation=True,
        gpu_health_check=True,
        custom_slurm_settings={"MaxTime": "7-00:00:00"},
    )
    raw["queues"][2]["compute_resources"][0].update(spot_price=0.1)
    rendered = render(raw)
    assert cr.find_nulls(rendered.config) == []
    cr.validate_offline(rendered.config, raw["name"], raw["region"])
    config = rendered.config
    assert config["Image"] == {"Os": "ubuntu2204", "CustomAmi": "ami-0123456789abcdef0"}
    assert config["HeadNode"]["Dcv"] == {"Enabled": True, "Port": 8443, "AllowedIps": "10.1.0.0/16"}
    assert config["DirectoryService"]["DomainName"] == "corp.example.com"
    assert config["Iam"] == {"PermissionsBoundary": "arn:aws:iam::123456789012:policy/boundary"}
    assert config["HeadNode"]["Networking"]["Proxy"] == {
        "HttpProxyAddress": "http://proxy.example.com:8080"
    }
    assert config["Scheduling"]["SlurmSettings"]["Database"]["DatabaseName"] == "slurm_acct"
    storage = {s["Name"]: s for s in config["SharedStorage"]}
    assert storage["home"]["EfsSettings"] == {"FileSystemId": "fs-01234567"}
    assert storage["old"]["EbsSettings"] == {"VolumeId": "vol-0123456789abcdef0"}
    assert storage["fsx"]["FsxLustreSettings"] == {"FileSystemId": "fs-0123456789abcdef9"}


# ---------------------------------------------------------------------------------------------
# One test per rule
# ---------------------------------------------------------------------------------------------


def test_rule_capacity_block_has_no_placement_group() -> None:
    rendered = render()
    b200 = resource(rendered.config, "cb", "b200")
    assert b200["Networking"]["PlacementGroup"] == {"Enabled": False}
    assert (b200["MinCount"], b200["MaxCount"]) == (2, 2)
    assert b200["CapacityReservationTarget"] == {"CapacityReservationId": "cr-0123456789abcdef0"}
    assert queue(rendered.config, "cb")["CapacityType"] == "CAPACITY_BLOCK"
    assert any("Capacity Blocks cannot use a placement group" in n for n in rendered.notes)


def test_rule_capacity_block_refuses_a_placement_group_asked_for() -> None:
    raw = spec()
    raw["queues"][1]["compute_resources"][0]["placement_group"] = True
    with pytest.raises(cs.SpecError, match=r"queues\[1\]\.compute_resources\[0\]\.placement_group"):
        render(raw)


def test_rule_odcr_is_on_demand_with_a_reservation_target() -> None:
    raw = spec()
    raw["queues"][1]["capacity_type"] = "ODCR"
    config = render(raw).config
    assert queue(config, "cb")["CapacityType"] == "ONDEMAND"
    assert resource(config, "cb", "b200")["CapacityReservationTarget"] == {
        "CapacityReservationId": "cr-0123456789abcdef0"
    }


def test_rule_efa_exactly_where_the_type_supports_it() -> None:
    config = render().config
    assert resource(config, "gpu", "p5")["Efa"] == {"Enabled": True, "GdrSupport": True}
    # G family: EFA without GPUDirect RDMA.
    assert resource(config, "gpu", "g6e")["Efa"] == {"Enabled": True}
    # No EFA on the type: no Efa section at all.
    assert "Efa" not in resource(config, "cpu", "m6i")


def test_rule_efa_true_on_a_type_without_efa_is_refused() -> None:
    raw = spec()
    raw["queues"][2].pop("multi_az")
    raw["queues"][2]["compute_resources"][0]["efa"] = True
    with pytest.raises(cs.SpecError, match=r"m6i\.xlarge has no EFA interface"):
        render(raw)


def test_rule_multi_node_efa_gets_a_placement_group_in_one_subnet() -> None:
    config = render().config
    assert resource(config, "gpu", "p5")["Networking"]["PlacementGroup"] == {"Enabled": True}
    assert queue(config, "gpu")["Networking"]["SubnetIds"] == ["subnet-0a1b2c3d4e5f60711"]


def test_rule_placement_group_needs_a_single_subnet() -> None:
    raw = spec()
    raw["queues"][2]["compute_resources"][0]["placement_group"] = True
    with pytest.raises(cs.SpecError, match="placement group lives in one Availability Zone"):
        render(raw)


def test_rule_multi_az_queue_spreads_over_the_private_subnets() -> None:
    config = render().config
    assert queue(config, "cpu")["Networking"]["SubnetIds"] == INFRA["PrivateSubnetIds"].split(",")


def test_rule_amp_remote_write_policy_on_the_head_node_only() -> None:
    rendered = render()
    config = rendered.config
    head = config["HeadNode"]["Iam"]["AdditionalIamPolicies"]
    assert {"Policy": AMP_POLICY} in head
    text = yaml.safe_dump({k: v for k, v in config.items() if k != "HeadNode"})
    assert AMP_POLICY not in text


def test_rule_amp_remote_write_asked_for_without_the_policy_fails() -> None:
    raw = spec()
    raw["monitoring"] = {"prometheus_remote_write": True}
    infra = {k: v for k, v in INFRA.items() if not k.startswith("Amp")}
    issues = render_error(raw, infra)
    assert any(
        i.startswith("monitoring.prometheus_remote_write:") and "amp-only or amp+amg" in i
        for i in issues
    )


def test_rule_amp_remote_write_can_be_turned_off() -> None:
    raw = spec()
    raw["monitoring"] = {"prometheus_remote_write": False}
    assert AMP_POLICY not in render(raw).config_yaml


def test_rule_s3_read_only_on_the_stack_bucket_only() -> None:
    config = render().config
    expected = [{"BucketName": BUCKET, "EnableWriteAccess": False}]
    assert config["HeadNode"]["Iam"]["S3Access"] == expected
    for q in config["Scheduling"]["SlurmQueues"]:
        assert q["Iam"]["S3Access"] == expected, q["Name"]
    assert "*" not in yaml.safe_dump(config)


def test_rule_bootstrap_script_outside_the_stack_bucket_is_refused() -> None:
    raw = spec()
    raw["bootstrap"] = {"script": "s3://someone-elses-bucket/boot.sh"}
    issues = render_error(raw)
    assert any(
        i.startswith("bootstrap.script:") and f"upload the script to s3://{BUCKET}/bootstrap/" in i
        for i in issues
    )


def test_rule_imds_v2_everywhere_and_secured_on_the_head_node() -> None:
    config = render().config
    assert config["Imds"] == {"ImdsSupport": "v2.0"}
    assert config["HeadNode"]["Imds"] == {"Secured": True}


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_rule_custom_actions_run_the_node_bootstrap_with_role_and_queue() -> None:
    config = render().config
    script = f"s3://{BUCKET}/bootstrap/node-bootstrap.sh"
    head = config["HeadNode"]["CustomActions"]["OnNodeConfigured"]
    assert head["Script"] == script
    assert head["Args"][:4] == ["--cluster-name", "rules", "--role", "head"]
    assert "nccl_shared" in flag(head["Args"], "--components")
    # The script finds what it installs beside itself.
    assert flag(head["Args"], "--assets") == f"s3://{BUCKET}/bootstrap"
    for q in config["Scheduling"]["SlurmQueues"]:
        action = q["CustomActions"]["OnNodeConfigured"]
        assert action["Script"] == script
        assert action["Args"][2:6] == ["--role", "compute", "--queue", q["Name"]]
        assert "nccl_shared" not in flag(action["Args"], "--components")
        assert flag(action["Args"], "--assets") == f"s3://{BUCKET}/bootstrap"
    gpu = queue(config, "gpu")["CustomActions"]["OnNodeConfigured"]["Args"]
    cpu = queue(config, "cpu")["CustomActions"]["OnNodeConfigured"]["Args"]
    gpu_components, cpu_components = flag(gpu, "--components"), flag(cpu, "--components")
    assert "efa_check" in gpu_components and "container_toolkit" in gpu_components
    assert "efa_check" not in cpu_components and "container_toolkit" not in cpu_components
    # Login nodes run it only when asked (they cannot be given S3 access).
    assert "CustomActions" not in config["LoginNodes"]["Pools"][0]


def test_rule_bootstrap_timeouts_are_estimated_from_the_components() -> None:
    rendered = render()
    timeouts = rendered.config["DevSettings"]["Timeouts"]
    head = rendered.bootstrap_timeouts["head_node"]
    compute = rendered.bootstrap_timeouts["compute_node"]
    expected_head = cs.BOOTSTRAP_BASE_SECONDS + sum(
        cs.BOOTSTRAP_COMPONENTS[c][0] for c in head["components"]
    )
    assert timeouts["HeadNodeBootstrapTimeout"] == head["seconds"] == expected_head
    assert timeouts["ComputeNodeBootstrapTimeout"] == compute["seconds"]
    assert "nccl_shared" in head["components"] and "nccl_shared" not in compute["components"]
    assert head["source"] == compute["source"] == "estimate"


def test_rule_bootstrap_timeouts_stay_within_bounds() -> None:
    raw = spec()
    raw["bootstrap"] = {"components": []}
    timeouts = render(raw).config["DevSettings"]["Timeouts"]
    assert timeouts["HeadNodeBootstrapTimeout"] == cs.BOOTSTRAP_MIN_SECONDS
    assert timeouts["ComputeNodeBootstrapTimeout"] == cs.BOOTSTRAP_MIN_SECONDS


def test_rule_bootstrap_timeouts_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    heavy = dict(cs.BOOTSTRAP_COMPONENTS)
    heavy["nccl_shared"] = (5000, heavy["nccl_shared"][1], "")
    monkeypatch.setattr(cr, "BOOTSTRAP_COMPONENTS", heavy)
    assert render().config["DevSettings"]["Timeouts"]["HeadNodeBootstrapTimeout"] == 3600


def test_rule_bootstrap_timeout_override_wins_and_warns_when_short() -> None:
    raw = spec()
    raw["bootstrap"] = {"compute_node_timeout": 600}
    rendered = render(raw)
    assert rendered.config["DevSettings"]["Timeouts"]["ComputeNodeBootstrapTimeout"] == 600
    assert rendered.bootstrap_timeouts["compute_node"]["source"] == "override"
    assert any("bootstrap.compute_node_timeout is 600 s, below" in w for w in rendered.warnings)


def test_rule_cloudwatch_logs_on() -> None:
    monitoring = render().config["Monitoring"]
    assert monitoring["Logs"]["CloudWatch"] == {"Enabled": True, "RetentionInDays": 14}
    assert monitoring["Dashboards"]["CloudWatch"] == {"Enabled": True}


def test_rule_ssh_only_through_the_login_pool_with_the_stack_s_groups() -> None:
    rendered = render()
    config = rendered.config
    head, pool = config["HeadNode"], config["LoginNodes"]["Pools"][0]
    # The stack's groups replace ParallelCluster's managed ones (docs/infra.md): SSH reaches the
    # login nodes from the stack's SshAllowedCidr and the head node from the login group only.
    assert head["Networking"]["SecurityGroups"] == [INFRA["HeadNodeSecurityGroupId"]]
    assert pool["Networking"]["SecurityGroups"] == [INFRA["LoginNodeSecurityGroupId"]]
    assert queue(config, "gpu")["Networking"]["SecurityGroups"] == [INFRA["ComputeSecurityGroupId"]]
    assert head["Ssh"] == {"AllowedIps": cs.NO_SSH_CIDR}
    assert "Ssh" not in pool
    assert "0.0.0.0/0" not in rendered.config_yaml
    assert "AdditionalSecurityGroups" not in rendered.config_yaml


def test_rule_a_cidr_the_stack_s_groups_would_ignore_is_refused() -> None:
    raw = spec()
    raw["head_node"] = {"allowed_ssh_cidr": "10.1.0.0/16"}
    raw["login_pools"][0]["allowed_ssh_cidr"] = "10.1.0.0/16"
    issues = render_error(raw)
    assert any(i.startswith("head_node.allowed_ssh_cidr: has no effect") for i in issues)
    assert any(
        i.startswith("login_pools[0].allowed_ssh_cidr: has no effect") and "SshAllowedCidr" in i
        for i in issues
    )


def test_rule_without_the_stack_s_groups_ssh_comes_from_the_spec() -> None:
    infra = {k: v for k, v in INFRA.items() if not k.endswith("SecurityGroupId")}
    raw = spec()
    issues = render_error(raw, infra)
    assert any(
        i.startswith("login_pools[0].allowed_ssh_cidr: is required") and "VPN or office" in i
        for i in issues
    )
    raw["login_pools"][0]["allowed_ssh_cidr"] = "10.0.0.0/16"
    rendered = render(raw, infra)
    config = rendered.config
    assert config["HeadNode"]["Ssh"] == {"AllowedIps": cs.NO_SSH_CIDR}
    assert config["LoginNodes"]["Pools"][0]["Ssh"] == {"AllowedIps": "10.0.0.0/16"}
    assert "SecurityGroups" not in config["HeadNode"]["Networking"]
    assert any("accepts no SSH from the network" in n for n in rendered.notes)
    raw["head_node"] = {"allowed_ssh_cidr": "10.1.0.0/16"}
    assert render(raw, infra).config["HeadNode"]["Ssh"] == {"AllowedIps": "10.1.0.0/16"}
    cr.validate_offline(config, "rules", "us-east-1")


def test_rule_dcv_behind_the_stack_s_head_group_warns() -> None:
    raw = spec()
    raw["head_node"] = {"dcv": {"enabled": True, "allowed_cidr": "10.1.0.0/16"}}
    assert any("does not open DCV port 8443" in w for w in render(raw).warnings)


def test_rule_tags_carry_the_cluster_name() -> None:
    raw = spec()
    raw["tags"] = {"team": "ml"}
    tags = render(raw).config["Tags"]
    assert {"Key": "xpu:cluster-name", "Value": "rules"} in tags
    assert {"Key": "team", "Value": "ml"} in tags


def test_rule_fsx_comes_from_the_stack() -> None:
    config = render().config
    assert config["SharedStorage"] == [
        {
            "Name": "fsx",
            "StorageType": "FsxLustre",
            "MountDir": "/fsx",
            "FsxLustreSettings": {"FileSystemId": INFRA["FsxFileSystemId"]},
        }
    ]


@pytest.mark.parametrize(
    ("missing", "path", "fix"),
    [
        ("FsxFileSystemId", "shared_storage.fsx", "shared_storage.fsx.enabled: false"),
        ("NodeAssetsBucketName", "bootstrap.script", "or set bootstrap.script"),
    ],
)
def test_rule_missing_infra_outputs_are_named(missing: str, path: str, fix: str) -> None:
    infra = {k: v for k, v in INFRA.items() if k != missing}
    issues = render_error(spec(), infra)
    assert any(i.startswith(f"{path}:") and missing in i and fix in i for i in issues), issues


def test_rule_no_subnet_at_all_is_named() -> None:
    infra = {k: v for k, v in INFRA.items() if "Subnet" not in k}
    issues = render_error(spec(), infra)
    assert any(i.startswith("head_node.subnet_id:") for i in issues)
    assert any(i.startswith("queues[0].subnet_ids:") for i in issues)


def test_rule_malformed_infra_outputs_are_named() -> None:
    infra = dict(INFRA, ComputeSecurityGroupId="not-a-group")
    issues = render_error(spec(), infra)
    assert any(i.startswith("infra_outputs.ComputeSecurityGroupId:") for i in issues)


def test_rule_instance_type_typo_gets_did_you_mean() -> None:
    raw = spec()
    raw["queues"][0]["compute_resources"][0]["instance_type"] = "p5.48xlarg"
    with pytest.raises(cs.SpecError) as exc:
        render(raw)
    assert (
        "queues[0].compute_resources[0].instance_type: unknown instance type 'p5.48xlarg'; "
        "did you mean 'p5.48xlarge'?"
    ) in str(exc.value)


def test_summary_per_queue_with_dated_prices() -> None:
    summary = render().summary
    rows = {(r["queue"], r["compute_resource"]): r for r in summary["compute"]}
    p5 = rows[("gpu", "p5")]
    assert p5["instance_type"] == "p5.48xlarge"
    assert (p5["accelerators"], p5["accelerator_model"], p5["efa_interfaces"]) == (8, "H100", 32)
    assert (p5["max_nodes"], p5["placement_group"], p5["capacity_type"]) == (4, True, "ONDEMAND")
    assert p5["usd_per_hour_at_max"] == pytest.approx(4 * p5["usd_per_hour_per_node"], abs=0.01)
    assert rows[("cpu", "m6i")]["accelerator_model"] == "none"
    assert rows[("cb", "b200")]["capacity_type"] == "CAPACITY_BLOCK"
    assert summary["head_node"]["instance_type"] == "m6i.2xlarge"
    assert summary["login_pools"][0]["count"] == 1
    assert summary["prices_date"] == "2025-07-01" and summary["prices_approximate"] is True
    assert summary["usd_per_hour_at_max"] > summary["usd_per_hour_at_min"] > 0


def test_prices_outside_us_east_1_come_with_a_warning() -> None:
    raw = spec()
    raw["region"] = "eu-west-1"
    assert any("us-east-1 on-demand list prices" in w for w in render(raw).warnings)


def test_yaml_is_a_lint_clean_document() -> None:
    text = render().config_yaml
    lines = text.splitlines()
    assert lines[0].startswith("# AWS ParallelCluster 3.16.1") and lines[2] == "---"
    assert "null" not in text and "~" not in text
    assert "    - sg-" in text  # sequences indented under their key


# ---------------------------------------------------------------------------------------------
# Offline validation
# ---------------------------------------------------------------------------------------------


def test_schema_errors_name_the_config_path() -> None:
    config = copy.deepcopy(render().config)
    config["Scheduling"]["SlurmQueues"][0]["ComputeResources"][0]["Efa"]["Bogus"] = True
    config["HeadNode"]["Ssh"]["AllowedIps"] = "everyone"
    with pytest.raises(cr.RenderError) as exc:
        cr.validate_offline(config, "rules", "us-east-1")
    paths = {i.path for i in exc.value.issues}
    assert "Scheduling.SlurmQueues[0].ComputeResources[0].Efa.Bogus" in paths
    assert "HeadNode.Ssh.AllowedIps" in paths
    assert "schema refuses" in str(exc.value)


def test_offline_validation_opens_no_socket_and_restores_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        opened.append(address)
        raise OSError(f"offline validation tried to connect to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED", raising=False)
    raw = spec()
    raw["queues"][1]["capacity_type"] = (
        "ODCR"  # a reservation id: ClusterSchema.load would call EC2
    )
    rendered = render(raw)
    cr.validate_offline(rendered.config, "rules", "us-east-1")
    assert opened == []
    assert os.environ["AWS_DEFAULT_REGION"] == "ap-south-1"
    assert "AWS_EC2_METADATA_DISABLED" not in os.environ


def test_missing_aws_parallelcluster_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_import = builtins.__import__

    def no_pcluster(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("pcluster"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pcluster)
    with pytest.raises(cr.PclusterMissingError, match=r"pip install aws-parallelcluster==3\.16\.1"):
        cr.validate_offline(render().config, "rules", "us-east-1")


def test_why_validate_and_not_load_load_would_call_ec2(monkeypatch: pytest.MonkeyPatch) -> None:
    """ClusterSchema.load builds a SlurmClusterConfig, which asks EC2 about the reservations.

    This is the call validate_offline avoids; if a ParallelCluster upgrade stops making it, this
    test says so (and the note in validate_offline can go).
    """
    opened: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        opened.append(address)
        raise OSError("refused by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    # Whatever the caller's environment: dummy credentials, a loopback endpoint (never reached:
    # connect is refused above), one attempt.
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_RETRY_MODE": "standard",
    }.items():
        monkeypatch.setenv(key, value)
    raw = spec()
    raw["queues"][1]["capacity_type"] = "ODCR"
    config = render(raw).config
    schema = cr.load_cluster_schema()
    with cr._offline_aws_env("us-east-1"):
        schema(cluster_name="rules").load(config)
    assert opened, "ClusterSchema.load made no connection"


def test_rule_login_pools_sit_in_the_first_public_subnet() -> None:
    config = render().config
    pool = config["LoginNodes"]["Pools"][0]
    assert pool["Networking"]["SubnetIds"] == [INFRA["PublicSubnetIds"].split(",")[0]]
    assert config["HeadNode"]["Networking"]["SubnetId"] == INFRA["HeadNodeSubnetId"]


def test_rule_login_pools_fall_back_to_the_head_node_subnet_without_public_subnets() -> None:
    infra = {k: v for k, v in INFRA.items() if k != "PublicSubnetIds"}
    pool = render(infra=infra).config["LoginNodes"]["Pools"][0]
    assert pool["Networking"]["SubnetIds"] == [INFRA["HeadNodeSubnetId"]]
