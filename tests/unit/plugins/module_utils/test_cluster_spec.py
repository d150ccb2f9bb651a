"""The typed cluster spec: defaults, derivations, and bad specs that must fail usefully.

Each bad spec asserts the message names the field by its full path and says what to change.
Nothing here touches the network (the suite's fence would refuse it anyway).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible_collections.xpu.parallelcluster.plugins.module_utils import cluster_spec as cs

Spec = dict[str, Any]


def base() -> Spec:
    """A small valid spec: one EFA GPU queue, one CPU queue, one login pool."""
    return {
        "name": "demo",
        "region": "us-east-1",
        "login_pools": [{"name": "login", "allowed_ssh_cidr": "10.0.0.0/16"}],
        "queues": [
            {
                "name": "gpu",
                "compute_resources": [
                    {"name": "p5", "instance_type": "p5.48xlarge", "max_count": 4},
                ],
            },
            {
                "name": "cpu",
                "compute_resources": [
                    {"name": "m6i", "instance_type": "m6i.xlarge", "max_count": 10},
                ],
            },
        ],
    }


def gpu_queue(spec: Spec) -> dict[str, Any]:
    return spec["queues"][0]


def gpu_cr(spec: Spec) -> dict[str, Any]:
    return spec["queues"][0]["compute_resources"][0]


def capacity_block(spec: Spec) -> dict[str, Any]:
    queue = gpu_queue(spec)
    queue.update(capacity_type="CAPACITY_BLOCK", reservation_id="cr-0123456789abcdef0")
    return queue


def problems(spec: Spec) -> list[cs.Issue]:
    with pytest.raises(cs.SpecError) as exc:
        cs.parse(spec)
    return exc.value.issues


def the_issue(spec: Spec, path: str) -> cs.Issue:
    issues = problems(spec)
    found = [i for i in issues if i.path == path]
    assert found, f"no issue at {path}; got: {[str(i) for i in issues]}"
    return found[0]


# ---------------------------------------------------------------------------------------------
# Bad specs: (modification, path the message names, text of the fix)
# ---------------------------------------------------------------------------------------------


def _set(getter: Callable[[Spec], dict[str, Any]], **values: Any) -> Callable[[Spec], None]:
    return lambda spec: getter(spec).update(values)


def _top(**values: Any) -> Callable[[Spec], None]:
    return lambda spec: spec.update(values)


def _cb_then(**values: Any) -> Callable[[Spec], None]:
    def apply(spec: Spec) -> None:
        capacity_block(spec)
        gpu_cr(spec).update(values)

    return apply


def _del(key: str) -> Callable[[Spec], None]:
    return lambda spec: spec.pop(key)


def _gb200_head(spec: Spec) -> None:
    gpu_queue(spec).update(capacity_type="CAPACITY_BLOCK", reservation_id="cr-0123456789abcdef0")
    gpu_cr(spec).update(instance_type="p6e-gb200.36xlarge", max_count=9)


def _gb200_ondemand(spec: Spec) -> None:
    spec["head_node"] = {"instance_type": "m7g.2xlarge"}
    spec["login_pools"][0]["instance_type"] = "m7g.xlarge"
    spec["queues"] = [
        {
            "name": "gb200",
            "compute_resources": [
                {"name": "nvl", "instance_type": "p6e-gb200.36xlarge", "max_count": 9}
            ],
        }
    ]


def _duplicate_queue(spec: Spec) -> None:
    spec["queues"][1]["name"] = "gpu"


def _two_mounts(spec: Spec) -> None:
    spec["shared_storage"] = {
        "ebs": [
            {"name": "one", "mount_dir": "/shared", "size": 100},
            {"name": "two", "mount_dir": "/shared", "size": 100},
        ]
    }


BAD_SPECS: list[tuple[str, Callable[[Spec], None], str, str]] = [
    # --- fields, types, choices -------------------------------------------------------------
    ("unknown-top-level-field", _top(queue=[]), "queue", "did you mean 'queues'?"),
    ("missing-name", _del("name"), "name", "set name"),
    (
        "capacity-type-typo",
        _set(gpu_queue, capacity_type="SPOTT"),
        "queues[0].capacity_type",
        "did you mean 'SPOT'?",
    ),
    ("os-typo", _top(os="ubuntu-22.04"), "os", "did you mean 'ubuntu2204'?"),
    (
        "max-count-not-a-number",
        _set(gpu_cr, max_count="four"),
        "queues[0].compute_resources[0].max_count",
        "write an integer",
    ),
    (
        "login-pool-key-name-was-removed",
        lambda s: s["login_pools"][0].update(ssh_key_name="mykey"),
        "login_pools[0].ssh_key_name",
        "ParallelCluster 3.15 removed KeyName",
    ),
    (
        "instance-type-on-the-queue",
        _set(gpu_queue, instance_type="p5.48xlarge"),
        "queues[0].instance_type",
        "put instance_type on each entry of compute_resources",
    ),
    (
        "bootstrap-component-typo",
        lambda s: s.update(bootstrap={"components": ["nccl_build"]}),
        "bootstrap.components[0]",
        "did you mean 'nccl_shared'?",
    ),
    (
        "log-retention-not-allowed",
        lambda s: s.update(monitoring={"log_retention_days": 10}),
        "monitoring.log_retention_days",
        "choose one of 1, 3, 5",
    ),
    # --- names --------------------------------------------------------------------------------
    ("cluster-name-pattern", _top(name="my_cluster"), "name", "for example 'my-cluster'"),
    ("cluster-name-length", _top(name="c" * 61), "name", "shorten it to 60"),
    (
        "cluster-name-length-with-accounting",
        lambda s: s.update(
            name="c" * 45,
            slurm={
                "database": {
                    "uri": "db.example.com:3306",
                    "user_name": "slurm",
                    "password_secret_arn": (
                        "arn:aws:secretsmanager:us-east-1:123456789012:secret:slurmdb"
                    ),
                }
            },
        ),
        "name",
        "shorten it to 40",
    ),
    ("region-format", _top(region="us-east1"), "region", "such as us-east-1"),
    ("queue-name-uppercase", _set(gpu_queue, name="GPU"), "queues[0].name", "for example 'gpu'"),
    ("queue-name-length", _set(gpu_queue, name="q" * 26), "queues[0].name", "25 characters"),
    ("queue-name-twice", _duplicate_queue, "queues[1].name", "rename one"),
    # --- instance types and architectures -------------------------------------------------------
    (
        "instance-type-typo",
        _set(gpu_cr, instance_type="p5.48xlarg"),
        "queues[0].compute_resources[0].instance_type",
        "did you mean 'p5.48xlarge'?",
    ),
    (
        "arm64-compute-with-x86-head",
        _gb200_head,
        "queues[0].compute_resources[0].instance_type",
        "set head_node.instance_type to an arm64 type such as m7g.2xlarge",
    ),
    (
        "gb200-outside-a-capacity-block",
        _gb200_ondemand,
        "queues[0].compute_resources[0].instance_type",
        "capacity_type: CAPACITY_BLOCK",
    ),
    (
        "rocky-without-custom-ami",
        _top(os="rocky9"),
        "custom_ami",
        "build one with `pcluster build-image` and set custom_ami",
    ),
    # --- capacity types and reservations ---------------------------------------------------------
    (
        "capacity-block-without-reservation",
        _set(gpu_queue, capacity_type="CAPACITY_BLOCK"),
        "queues[0].compute_resources[0].reservation_id",
        "set reservation_id: cr-...",
    ),
    (
        "odcr-without-reservation",
        _set(gpu_queue, capacity_type="ODCR"),
        "queues[0].compute_resources[0].reservation_id",
        "set reservation_id: cr-...",
    ),
    (
        "reservation-on-an-on-demand-queue",
        _set(gpu_queue, reservation_id="cr-0123456789abcdef0"),
        "queues[0].reservation_id",
        "set capacity_type: ODCR",
    ),
    (
        "reservation-id-format",
        _set(gpu_queue, capacity_type="ODCR", reservation_id="res-123"),
        "queues[0].reservation_id",
        "use the cr-... id",
    ),
    (
        "capacity-block-with-placement-group",
        _cb_then(placement_group=True),
        "queues[0].compute_resources[0].placement_group",
        "Capacity Blocks cannot be combined with a placement group",
    ),
    (
        "capacity-block-with-dynamic-nodes",
        _cb_then(min_count=0),
        "queues[0].compute_resources[0].min_count",
        "set min_count to 4 or leave it unset",
    ),
    (
        "min-above-max",
        _set(gpu_cr, min_count=5),
        "queues[0].compute_resources[0].min_count",
        "raise max_count to at least 5",
    ),
    (
        "spot-price-on-on-demand",
        _set(gpu_cr, spot_price=10.0),
        "queues[0].compute_resources[0].spot_price",
        "set capacity_type: SPOT",
    ),
    # --- EFA and placement groups ----------------------------------------------------------------
    (
        "efa-on-a-type-without-efa",
        lambda s: s["queues"][1]["compute_resources"][0].update(efa=True),
        "queues[1].compute_resources[0].efa",
        "pick an EFA type such as m6i.32xlarge",
    ),
    (
        "efa-on-a-g5-size-without-efa",
        _set(gpu_cr, instance_type="g5.2xlarge", efa=True),
        "queues[0].compute_resources[0].efa",
        "such as g5.8xlarge",
    ),
    (
        "efa-across-availability-zones",
        _set(gpu_queue, multi_az=True),
        "queues[0].compute_resources[0].efa",
        "or set efa: false",
    ),
    (
        "placement-group-across-subnets",
        lambda s: (
            gpu_queue(s).update(
                subnet_ids=["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
            ),
            gpu_cr(s).update(efa=False, placement_group=True),
        ),
        "queues[0].compute_resources[0].placement_group",
        "give the queue one subnet",
    ),
    (
        "reservation-across-subnets",
        lambda s: capacity_block(s).update(
            subnet_ids=["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
        ),
        "queues[0].subnet_ids",
        "the one subnet in the reservation's Availability Zone",
    ),
    (
        "placement-group-on-burstable",
        lambda s: s["queues"][1]["compute_resources"][0].update(
            instance_type="t3.medium", placement_group=True
        ),
        "queues[1].compute_resources[0].placement_group",
        "set placement_group: false",
    ),
    # --- access ----------------------------------------------------------------------------------
    (
        "head-ssh-open-to-the-world",
        _top(head_node={"allowed_ssh_cidr": "0.0.0.0/0"}),
        "head_node.allowed_ssh_cidr",
        "CIDR of your VPN or office network",
    ),
    (
        "login-ssh-not-a-cidr",
        lambda s: s["login_pools"][0].update(allowed_ssh_cidr="office"),
        "login_pools[0].allowed_ssh_cidr",
        "write it as a.b.c.d/n",
    ),
    (
        "queue-subnet-not-a-subnet-id",
        _set(gpu_queue, subnet_ids=["private-a"]),
        "queues[0].subnet_ids[0]",
        "use subnet-...",
    ),
    (
        "login-pool-name-twice",
        lambda s: s["login_pools"].append({"name": "login"}),
        "login_pools[1].name",
        "rename one",
    ),
    (
        "dcv-without-cidr",
        _top(head_node={"dcv": {"enabled": True}}),
        "head_node.dcv.allowed_cidr",
        "set the CIDR your users connect from",
    ),
    (
        "login-bootstrap-without-s3-policy",
        lambda s: s["login_pools"][0].update(bootstrap=True),
        "login_pools[0].bootstrap",
        "add a policy that reads the stack bucket's bootstrap/ prefix",
    ),
    (
        "policy-not-an-arn",
        _set(gpu_queue, additional_iam_policies=["AmazonS3FullAccess"]),
        "queues[0].additional_iam_policies[0]",
        "arn:aws:iam::<account>:policy/<name>",
    ),
    # --- Slurm, storage, bootstrap, tags --------------------------------------------------------
    (
        "slurm-setting-parallelcluster-owns",
        lambda s: s.update(slurm={"custom_slurm_settings": [{"ResumeTimeout": 3600}]}),
        "slurm.custom_slurm_settings[0].ResumeTimeout",
        "set bootstrap.compute_node_timeout",
    ),
    (
        "partition-setting-parallelcluster-owns",
        _set(gpu_queue, custom_slurm_settings={"PartitionName": "x"}),
        "queues[0].custom_slurm_settings.PartitionName",
        "remove it",
    ),
    (
        "database-secret-not-an-arn",
        lambda s: s.update(
            slurm={"database": {"uri": "db:3306", "user_name": "u", "password_secret_arn": "pw"}}
        ),
        "slurm.database.password_secret_arn",
        "arn:aws:secretsmanager:<region>:<account>:secret:<name>",
    ),
    ("same-mount-twice", _two_mounts, "shared_storage.ebs[1].mount_dir", "its own mount_dir"),
    (
        "mount-on-a-system-directory",
        lambda s: s.update(shared_storage={"efs": [{"name": "sw", "mount_dir": "/opt"}]}),
        "shared_storage.efs[0].mount_dir",
        "mount it elsewhere",
    ),
    (
        "efs-throughput-half-set",
        lambda s: s.update(
            shared_storage={
                "efs": [{"name": "sw", "mount_dir": "/sw", "provisioned_throughput": 64}]
            }
        ),
        "shared_storage.efs[0].provisioned_throughput",
        "throughput_mode: provisioned",
    ),
    (
        "bootstrap-timeout-out-of-range",
        lambda s: s.update(bootstrap={"compute_node_timeout": 60}),
        "bootstrap.compute_node_timeout",
        "derive it from bootstrap.components",
    ),
    (
        "bootstrap-script-not-a-url",
        lambda s: s.update(bootstrap={"script": "/tmp/boot.sh"}),
        "bootstrap.script",
        "s3://<NodeAssetsBucketName>/bootstrap/node-bootstrap.sh",
    ),
    (
        "reserved-tag-prefix",
        _top(tags={"parallelcluster:owner": "me"}),
        "tags.parallelcluster:owner",
        "rename the key",
    ),
    (
        "gpu-health-check-on-a-cpu-queue",
        lambda s: s["queues"][1].update(gpu_health_check=True),
        "queues[1].gpu_health_check",
        "remove gpu_health_check",
    ),
    (
        "proxy-without-port",
        _top(proxy={"http_proxy_address": "http://proxy.example.com"}),
        "proxy.http_proxy_address",
        "http://proxy.example.com:8080",
    ),
]


def test_there_are_at_least_25_bad_specs() -> None:
    assert len(BAD_SPECS) >= 25
    assert len({case[0] for case in BAD_SPECS}) == len(BAD_SPECS)


@pytest.mark.parametrize(
    ("modify", "path", "fix"),
    [pytest.param(m, p, f, id=i) for i, m, p, f in BAD_SPECS],
)
def test_bad_spec_names_the_field_and_the_fix(
    modify: Callable[[Spec], None], path: str, fix: str
) -> None:
    spec = base()
    modify(spec)
    issue = the_issue(spec, path)
    text = str(issue)
    assert text.startswith(f"{path}: "), text
    assert fix in text, text
    assert issue.fix, f"{text}: no fix given"


def test_the_instance_type_typo_message_reads_as_documented() -> None:
    spec = base()
    gpu_cr(spec)["instance_type"] = "p5.48xlarg"
    assert str(the_issue(spec, "queues[0].compute_resources[0].instance_type")) == (
        "queues[0].compute_resources[0].instance_type: unknown instance type 'p5.48xlarg'; "
        "did you mean 'p5.48xlarge'?"
    )


def test_every_problem_is_reported_at_once() -> None:
    spec = base()
    spec["name"] = "bad_name"
    gpu_cr(spec)["instance_type"] = "p5.48xlarg"
    spec["head_node"] = {"allowed_ssh_cidr": "0.0.0.0/0"}
    paths = {i.path for i in problems(spec)}
    assert {"name", "queues[0].compute_resources[0].instance_type"} <= paths
    assert "head_node.allowed_ssh_cidr" in paths
    with pytest.raises(cs.SpecError, match=r"has \d+ problems:\n- "):
        cs.parse(spec)


# ---------------------------------------------------------------------------------------------
# Defaults and derivations
# ---------------------------------------------------------------------------------------------


def test_defaults() -> None:
    parsed = cs.parse(base())
    spec = parsed.spec
    assert spec.os == "alinux2023"
    assert spec.head_node.instance_type == "m6i.2xlarge"
    assert spec.head_node.root_volume_encrypted and spec.head_node.imds_secured
    assert spec.shared_storage.fsx.enabled and spec.shared_storage.fsx.mount_dir == "/fsx"
    assert spec.slurm.queue_update_strategy == "DRAIN"
    assert spec.monitoring.cloudwatch_logs and spec.monitoring.log_retention_days == 14
    assert spec.bootstrap.enabled and "nccl_shared" in spec.bootstrap.components
    assert spec.queues[0].capacity_type == "ONDEMAND"
    assert spec.login_pools[0].count == 1


def test_efa_and_placement_group_come_from_the_catalog() -> None:
    parsed = cs.parse(base())
    gpu = parsed.spec.queues[0].compute_resources[0]
    cpu = parsed.spec.queues[1].compute_resources[0]
    assert (gpu.efa, gpu.placement_group, gpu.min_count) == (True, True, 0)
    assert (cpu.efa, cpu.placement_group) == (False, False)
    assert any("placement_group: true (multi-node EFA" in n for n in parsed.notes)


def test_single_node_efa_resource_gets_no_placement_group() -> None:
    spec = base()
    gpu_cr(spec)["max_count"] = 1
    assert cs.parse(spec).spec.queues[0].compute_resources[0].placement_group is False


def test_capacity_block_derives_static_nodes_and_no_placement_group() -> None:
    spec = base()
    capacity_block(spec)
    parsed = cs.parse(spec)
    cr = parsed.spec.queues[0].compute_resources[0]
    assert (cr.min_count, cr.max_count, cr.placement_group, cr.efa) == (4, 4, False, True)
    assert any("Capacity Blocks cannot use a placement group" in n for n in parsed.notes)


def test_odcr_keeps_its_own_placement_unless_named() -> None:
    spec = base()
    gpu_queue(spec).update(capacity_type="ODCR", reservation_id="cr-0123456789abcdef0")
    parsed = cs.parse(spec)
    assert parsed.spec.queues[0].compute_resources[0].placement_group is False
    assert parsed.spec.queues[0].pcluster_capacity_type == "ONDEMAND"
    gpu_cr(spec)["placement_group_name"] = "my-cpg"
    assert cs.parse(spec).spec.queues[0].compute_resources[0].placement_group is True


def test_efa_off_on_an_efa_type_is_allowed_with_a_warning() -> None:
    spec = base()
    gpu_cr(spec)["efa"] = False
    parsed = cs.parse(spec)
    assert parsed.spec.queues[0].compute_resources[0].efa is False
    assert any("fall back to TCP" in w for w in parsed.warnings)


def test_multi_az_queue_without_efa_types_is_fine() -> None:
    spec = base()
    spec["queues"][1]["multi_az"] = True
    cr = cs.parse(spec).spec.queues[1].compute_resources[0]
    assert (cr.efa, cr.placement_group) == (False, False)


def test_values_are_converted_like_ansible_does() -> None:
    spec = base()
    gpu_cr(spec)["max_count"] = "2"
    spec["head_node"] = {"imds_secured": "yes"}
    parsed = cs.parse(spec).spec
    assert parsed.queues[0].compute_resources[0].max_count == 2
    assert parsed.head_node.imds_secured is True


def test_normalize_matches_ansible_argument_spec_validation() -> None:
    """The module's argument_spec (OPTIONS) and normalize() give the same defaults and types."""
    raw = base()
    raw["queues"][0]["compute_resources"][0]["max_count"] = "4"
    validator = ArgumentSpecValidator({"spec": {"type": "dict", "options": cs.OPTIONS}})
    result = validator.validate({"spec": copy.deepcopy(raw)})
    assert not result.error_messages
    assert cs.normalize(raw) == result.validated_parameters["spec"]
    # And normalize() leaves Ansible's output unchanged (the module runs both).
    assert cs.normalize(result.validated_parameters["spec"]) == result.validated_parameters["spec"]


def test_a_gb200_cluster_with_an_arm64_head_node_parses() -> None:
    spec = base()
    _gb200_ondemand(spec)
    spec["queues"][0].update(capacity_type="CAPACITY_BLOCK", reservation_id="cr-0123456789abcdef0")
    cr = cs.parse(spec).spec.queues[0].compute_resources[0]
    assert (cr.efa, cr.placement_group, cr.min_count) == (True, False, 9)
