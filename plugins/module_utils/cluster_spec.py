# Copyright: (c) 2026, xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)
"""The typed cluster spec: one description of a training cluster, validated before any AWS call.

What lives here:

- :data:`OPTIONS`, the spec as an Ansible argument spec (types, defaults, choices, nesting). It is
  the contract: the ``cluster_config`` module declares its ``spec`` option with it, and
  :func:`normalize` checks plain dictionaries against the same table, so Python callers and the
  module see the same defaults.
- :func:`normalize`: types, defaults, choices and unknown fields, with messages that name the
  field by its full path (``queues[0].compute_resources[1].instance_type``) and say what to
  change (did-you-mean for typos).
- :func:`parse`: normalize, build the :class:`ClusterSpec` dataclasses, apply the domain rules
  (capacity types and reservations, EFA and placement groups from the instance catalog,
  architectures, SSH exposure, Slurm settings ParallelCluster owns, storage, timeouts...) and
  derive what the user left unset. Every problem is collected, then raised together as one
  :class:`SpecError`; derived choices come back as notes, doubtful ones as warnings.

Rules that need the infrastructure stack's outputs (subnets, FSx, bucket, AMP policy) are checked
when rendering (``cluster_render``). Limits and patterns mirror aws-parallelcluster 3.16.1
(``pcluster/constants.py``, ``pcluster/validators/cluster_validators.py``,
``pcluster/validators/slurm_settings_validator.py``), cited where used.
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ansible.module_utils.common.validation import (
    check_type_bool,
    check_type_dict,
    check_type_float,
    check_type_int,
    check_type_list,
    check_type_str,
)
from ansible_collections.xpu.parallelcluster.plugins.module_utils import catalog

# --- choices and limits ------------------------------------------------------------------------
# pcluster/constants.py SUPPORTED_OSES (3.16.1); rocky8/rocky9 have no public ParallelCluster AMI
# (PRIVATE_OSES), so they need custom_ami.
OS_CHOICES = ("alinux2023", "ubuntu2204", "ubuntu2404", "rhel8", "rhel9", "rocky8", "rocky9")
OS_WITHOUT_PUBLIC_AMI = ("rocky8", "rocky9")
# pcluster/constants.py UNSUPPORTED_OSES_FOR_P6E_GB200.
OS_UNSUPPORTED_FOR_P6E_GB200 = ("rhel8", "rocky8", "rhel9")
CAPACITY_TYPES = ("ONDEMAND", "SPOT", "CAPACITY_BLOCK", "ODCR")
RESERVED_CAPACITY_TYPES = ("CAPACITY_BLOCK", "ODCR")
QUEUE_UPDATE_STRATEGIES = ("DRAIN", "TERMINATE", "COMPUTE_FLEET_STOP")
ALLOCATION_STRATEGIES = ("lowest-price", "capacity-optimized", "price-capacity-optimized")
# pcluster/schemas/cluster_schema.py CloudWatchLogsSchema.retention_in_days.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)
EBS_VOLUME_TYPES = ("gp3", "gp2", "io1", "io2", "st1", "sc1")

CLUSTER_NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]*$")
CLUSTER_NAME_MAX = 60  # PCLUSTER_NAME_MAX_LENGTH
CLUSTER_NAME_MAX_WITH_ACCOUNTING = 40  # PCLUSTER_NAME_MAX_LENGTH_SLURM_ACCOUNTING
# NameValidator (queues, compute resources, login pools): NAME_REGEX, NAME_MAX_LENGTH.
RESOURCE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
RESOURCE_NAME_MAX = 25
STORAGE_NAME_MAX = 30  # SHARED_STORAGE_NAME_MAX_LENGTH
MAX_QUEUES = 50  # MAX_NUMBER_OF_QUEUES
MAX_COMPUTE_RESOURCES = 50  # MAX_NUMBER_OF_COMPUTE_RESOURCES_PER_CLUSTER
MAX_LOGIN_POOLS = 10  # MAX_NUMBER_OF_LOGIN_NODE_POOLS
MAX_EBS = 5  # MAX_EBS_COUNT
MAX_TAGS = 40  # MAX_TAGS_COUNT
REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
AMI_RE = re.compile(r"^ami-[0-9a-z]{8}$|^ami-[0-9a-z]{17}$")
RESERVATION_RE = re.compile(r"^cr-[0-9a-f]{8}$|^cr-[0-9a-f]{17}$")
SUBNET_RE = re.compile(r"^subnet-[0-9a-z]{8}$|^subnet-[0-9a-z]{17}$")
FSX_ID_RE = re.compile(r"^fs-[0-9a-z]{17}$")
EFS_ID_RE = re.compile(r"^fs-[0-9a-z]{8}$|^fs-[0-9a-z]{17}$")
EBS_VOLUME_RE = re.compile(r"^vol-[0-9a-z]{8}$|^vol-[0-9a-z]{17}$")
SNAPSHOT_RE = re.compile(r"^snap-[0-9a-z]{8}$|^snap-[0-9a-z]{17}$")
POLICY_ARN_RE = re.compile(r"^arn:[a-z-]+:iam::(\d{12}|aws):policy/[\w+=,.@/-]+$")
SECRET_ARN_RE = re.compile(r"^arn:[a-z-]+:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$")
DS_SECRET_ARN_RE = re.compile(r"^arn:.*:(secretsmanager:.*:.*:secret:|ssm:.*:.*:parameter/).*$")
# DomainNameValidator: an FQDN or an LDAP distinguished name.
DOMAIN_RE = re.compile(
    r"^([a-zA-Z0-9_-]+)(\.[a-zA-Z0-9_-]+)*$|^((DC|dc)=[a-zA-Z0-9_-]+)(,(DC|dc)=[a-zA-Z0-9_-]+)*$"
)
PREFIX_LIST_RE = re.compile(r"^pl-[a-zA-Z0-9]+$")
TAG_VALUE_RE = re.compile(r"^[\w\s+=.:/@-]*$")
# SharedStorageMountDirValidator reserved directories.
RESERVED_MOUNT_DIRS = frozenset(
    [
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/lib",
        "/lib64",
        "/media",
        "/mnt",
        "/opt",
        "/opt/parallelcluster",
        "/opt/parallelcluster/shared",
        "/opt/parallelcluster/shared_login_nodes",
        "/opt/slurm",
        "/opt/intel",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/srv",
        "/sys",
        "/tmp",
        "/usr",
        "/var",
    ]
)
# pcluster/validators/slurm_settings_validator.py SLURM_SETTINGS_DENY_LIST (3.16.1), lower case:
# ParallelCluster writes these itself; a custom value would break scaling or accounting.
SLURM_DENY_GLOBAL = frozenset(
    [
        "epilog",
        "grestypes",
        "launchparameters",
        "prolog",
        "reconfigflags",
        "resumefailprogram",
        "resumeprogram",
        "resumetimeout",
        "slurmctldhost",
        "slurmctldlogfile",
        "slurmctldparameters",
        "slurmdlogfile",
        "slurmuser",
        "suspendexcnodes",
        "suspendprogram",
        "suspendtime",
        "taskplugin",
        "treewidth",
    ]
)
SLURM_DENY_ACCOUNTING = frozenset(
    [
        "accountingstoragetype",
        "accountingstoragehost",
        "accountingstorageport",
        "accountingstorageuser",
        "jobacctgathertype",
    ]
)
SLURM_DENY_QUEUE = frozenset(
    ["nodes", "partitionname", "resumetimeout", "state", "suspendtime", "oversubscribe"]
)
SLURM_SETTING_FIX = {
    "resumetimeout": "set bootstrap.compute_node_timeout (it becomes Slurm's ResumeTimeout)",
    "suspendtime": "set slurm.scaledown_idletime (minutes)",
    "prolog": "ship prolog scripts with the node roles (/etc/slurm/prolog.d)",
    "epilog": "ship epilog scripts with the node roles (/etc/slurm/epilog.d)",
}

# Node bootstrap components: estimated seconds and the node roles that run each (the node
# bootstrap script receives the list; docs/cluster.md "Bootstrap timeouts").
BOOTSTRAP_BASE_SECONDS = 600
BOOTSTRAP_MIN_SECONDS = 600
BOOTSTRAP_MAX_SECONDS = 3600
BOOTSTRAP_OVERRIDE_MAX_SECONDS = 7200
BOOTSTRAP_COMPONENTS: Mapping[str, tuple[int, frozenset[str], str]] = {
    # name: (seconds, roles, what it needs)
    "efa_check": (60, frozenset({"compute"}), "efa"),
    "container_toolkit": (180, frozenset({"compute"}), "gpu"),
    "enroot_pyxis": (120, frozenset({"head", "compute", "login"}), ""),
    "lustre_client": (120, frozenset({"head", "compute", "login"}), ""),
    # NCCL, aws-ofi-nccl and nccl-tests built once into shared storage, on the head node.
    "nccl_shared": (900, frozenset({"head"}), ""),
    "cloudwatch_agent": (60, frozenset({"head", "compute", "login"}), ""),
    "node_exporter": (30, frozenset({"head", "compute", "login"}), ""),
    "efa_exporter": (30, frozenset({"compute"}), "efa"),
    "dcgm_exporter": (60, frozenset({"compute"}), "gpu"),
}
DEFAULT_BOOTSTRAP_COMPONENTS = [
    "efa_check",
    "container_toolkit",
    "enroot_pyxis",
    "lustre_client",
    "nccl_shared",
    "cloudwatch_agent",
    "node_exporter",
    "efa_exporter",
    "dcgm_exporter",
]

# The head node's SSH rule when no CIDR is given: ParallelCluster opens port 22 to 0.0.0.0/0
# unless HeadNode/Ssh/AllowedIps is set, so "no SSH" is rendered as a loopback-only source
# that no packet from the network can match.
NO_SSH_CIDR = "127.0.0.1/32"
WORLD_CIDRS = ("0.0.0.0/0", "::/0")


def _opt(type_: str, **kwargs: Any) -> dict[str, Any]:
    spec = {"type": type_}
    spec.update(kwargs)
    return spec


def _section(options: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """A dict option whose defaults apply even when the user leaves it out."""
    return _opt("dict", options=options, apply_defaults=True, **kwargs)


_STR_LIST = {"type": "list", "elements": "str"}

# ---------------------------------------------------------------------------------------------
# The spec as an Ansible argument spec. DOCUMENTATION in plugins/modules/cluster_config.py
# describes every entry; tests/unit/plugins/modules/test_cluster_config.py keeps them in step.
# ---------------------------------------------------------------------------------------------
OPTIONS: dict[str, dict[str, Any]] = {
    "name": _opt("str", required=True),
    "region": _opt("str", required=True),
    "os": _opt("str", default="alinux2023", choices=list(OS_CHOICES)),
    "custom_ami": _opt("str"),
    "head_node": _section(
        {
            "instance_type": _opt("str", default="m6i.2xlarge"),
            "subnet_id": _opt("str"),
            "root_volume_size": _opt("int", default=200),
            "root_volume_encrypted": _opt("bool", default=True),
            "ssh_key_name": _opt("str"),
            "allowed_ssh_cidr": _opt("str"),
            "imds_secured": _opt("bool", default=True),
            "additional_iam_policies": _opt("list", elements="str", default=[]),
            "dcv": _section(
                {
                    "enabled": _opt("bool", default=False),
                    "allowed_cidr": _opt("str"),
                    "port": _opt("int", default=8443),
                }
            ),
        }
    ),
    "login_pools": _opt(
        "list",
        elements="dict",
        default=[],
        options={
            "name": _opt("str", required=True),
            "instance_type": _opt("str", default="m6i.xlarge"),
            "count": _opt("int", default=1),
            "allowed_ssh_cidr": _opt("str"),
            "subnet_id": _opt("str"),
            "gracetime_period": _opt("int"),
            "additional_iam_policies": _opt("list", elements="str", default=[]),
            "bootstrap": _opt("bool", default=False),
        },
    ),
    "queues": _opt(
        "list",
        elements="dict",
        required=True,
        options={
            "name": _opt("str", required=True),
            "capacity_type": _opt("str", default="ONDEMAND", choices=list(CAPACITY_TYPES)),
            "reservation_id": _opt("str"),
            "allocation_strategy": _opt("str", choices=list(ALLOCATION_STRATEGIES)),
            "subnet_ids": _opt("list", elements="str"),
            "multi_az": _opt("bool", default=False),
            "root_volume_size": _opt("int"),
            "root_volume_encrypted": _opt("bool", default=True),
            "ephemeral_mount_dir": _opt("str", default="/scratch"),
            "job_exclusive_allocation": _opt("bool"),
            "gpu_health_check": _opt("bool", default=False),
            "custom_slurm_settings": _opt("dict", default={}),
            "additional_iam_policies": _opt("list", elements="str", default=[]),
            "compute_resources": _opt(
                "list",
                elements="dict",
                required=True,
                options={
                    "name": _opt("str", required=True),
                    "instance_type": _opt("str", required=True),
                    "min_count": _opt("int"),
                    "max_count": _opt("int", required=True),
                    "efa": _opt("bool"),
                    "placement_group": _opt("bool"),
                    "placement_group_name": _opt("str"),
                    "reservation_id": _opt("str"),
                    "disable_simultaneous_multithreading": _opt("bool"),
                    "spot_price": _opt("float"),
                },
            ),
        },
    ),
    "shared_storage": _section(
        {
            "fsx": _section(
                {
                    "enabled": _opt("bool", default=True),
                    "name": _opt("str", default="fsx"),
                    "mount_dir": _opt("str", default="/fsx"),
                    "file_system_id": _opt("str"),
                }
            ),
            "efs": _opt(
                "list",
                elements="dict",
                default=[],
                options={
                    "name": _opt("str", required=True),
                    "mount_dir": _opt("str", required=True),
                    "file_system_id": _opt("str"),
                    "encrypted": _opt("bool", default=True),
                    "performance_mode": _opt("str", choices=["generalPurpose", "maxIO"]),
                    "throughput_mode": _opt("str", choices=["bursting", "provisioned"]),
                    "provisioned_throughput": _opt("int"),
                    "deletion_policy": _opt("str", choices=["Delete", "Retain"]),
                },
            ),
            "ebs": _opt(
                "list",
                elements="dict",
                default=[],
                options={
                    "name": _opt("str", required=True),
                    "mount_dir": _opt("str", required=True),
                    "volume_id": _opt("str"),
                    "snapshot_id": _opt("str"),
                    "size": _opt("int"),
                    "volume_type": _opt("str", default="gp3", choices=list(EBS_VOLUME_TYPES)),
                    "iops": _opt("int"),
                    "throughput": _opt("int"),
                    "encrypted": _opt("bool", default=True),
                    "deletion_policy": _opt("str", choices=["Delete", "Retain", "Snapshot"]),
                },
            ),
        }
    ),
    "slurm": _section(
        {
            "scaledown_idletime": _opt("int", default=10),
            "queue_update_strategy": _opt(
                "str", default="DRAIN", choices=list(QUEUE_UPDATE_STRATEGIES)
            ),
            "enable_memory_based_scheduling": _opt("bool", default=False),
            "custom_slurm_settings": _opt("list", elements="dict", default=[]),
            "database": _opt(
                "dict",
                options={
                    "uri": _opt("str", required=True),
                    "user_name": _opt("str", required=True),
                    "password_secret_arn": _opt("str", required=True, no_log=False),
                    "database_name": _opt("str"),
                },
            ),
        }
    ),
    "monitoring": _section(
        {
            "cloudwatch_logs": _opt("bool", default=True),
            "log_retention_days": _opt("int", default=14, choices=list(LOG_RETENTION_DAYS)),
            "cloudwatch_dashboards": _opt("bool", default=True),
            "detailed_monitoring": _opt("bool", default=False),
            "prometheus_remote_write": _opt("bool"),
        }
    ),
    "bootstrap": _section(
        {
            "enabled": _opt("bool", default=True),
            "script": _opt("str"),
            "args": _opt("list", elements="str", default=[]),
            "components": _opt(
                "list",
                elements="str",
                default=list(DEFAULT_BOOTSTRAP_COMPONENTS),
                choices=list(BOOTSTRAP_COMPONENTS),
            ),
            "head_node_timeout": _opt("int"),
            "compute_node_timeout": _opt("int"),
        }
    ),
    "tags": _opt("dict", default={}),
    "iam": _section(
        {
            "additional_policies": _opt("list", elements="str", default=[]),
            "permissions_boundary": _opt("str"),
        }
    ),
    "directory_service": _opt(
        "dict",
        options={
            "domain_name": _opt("str", required=True),
            "domain_addr": _opt("str", required=True),
            "domain_read_only_user": _opt("str", required=True),
            "password_secret_arn": _opt("str", required=True, no_log=False),
            "ldap_tls_ca_cert": _opt("str"),
            "ldap_tls_req_cert": _opt("str", choices=["never", "allow", "try", "demand", "hard"]),
            "generate_ssh_keys_for_users": _opt("bool"),
        },
    ),
    "proxy": _opt("dict", options={"http_proxy_address": _opt("str", required=True)}),
}

# Fields users reach for that the spec deliberately does not have, and what to use instead.
FIELD_HINTS = {
    "login_pools[].ssh_key_name": (
        "ParallelCluster 3.15 removed KeyName for login nodes; users log in with their cluster "
        "account (the head node's key pair or the directory service), so remove it"
    ),
    "login_pools[].key_name": (
        "ParallelCluster 3.15 removed KeyName for login nodes; remove it (see ssh_key_name)"
    ),
    "queues[].instance_type": "put instance_type on each entry of compute_resources",
    "queues[].efa": "set efa on each entry of compute_resources",
    "queues[].placement_group": "set placement_group on each entry of compute_resources",
    "queues[].min_count": "set min_count on each entry of compute_resources",
    "queues[].max_count": "set max_count on each entry of compute_resources",
    "head_node.key_name": "the field is head_node.ssh_key_name",
    "slurm.resume_timeout": "set bootstrap.compute_node_timeout (it becomes ResumeTimeout)",
}


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issue:
    """One problem in the spec: where, what, and what to change."""

    path: str
    problem: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.path}: {self.problem}" if self.path else self.problem
        return f"{text}; {self.fix}" if self.fix else text


class SpecError(ValueError):
    """The spec has problems; ``issues`` lists every one of them."""

    def __init__(self, issues: list[Issue]):
        self.issues = list(issues)
        lines = "\n".join(f"- {i}" for i in self.issues)
        count = len(self.issues)
        super().__init__(f"the cluster spec has {count} problem{'s' * (count != 1)}:\n{lines}")


def _did_you_mean(value: str, candidates: list[str] | tuple[str, ...]) -> str:
    if not isinstance(value, str):
        return ""
    words = [str(c) for c in candidates]
    lower = {w.lower(): w for w in words}
    close = difflib.get_close_matches(value.lower(), list(lower), n=1, cutoff=0.5)
    return f"did you mean '{lower[close[0]]}'?" if close else ""


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _generic(path: str) -> str:
    """``queues[3].compute_resources[0].x`` -> ``queues[].compute_resources[].x``."""
    return re.sub(r"\[\d+\]", "[]", path)


# ---------------------------------------------------------------------------------------------
# Normalisation: types, defaults, choices, unknown fields
# ---------------------------------------------------------------------------------------------

_CHECKERS = {
    "str": check_type_str,
    "int": check_type_int,
    "bool": check_type_bool,
    "float": check_type_float,
    "list": check_type_list,
    "dict": check_type_dict,
}
_TYPE_WORDS = {
    "str": "a string",
    "int": "an integer",
    "bool": "a boolean",
    "float": "a number",
    "list": "a list",
    "dict": "a mapping",
}


def _convert_scalar(type_: str, value: Any, path: str, issues: list[Issue]) -> Any:
    if type_ == "raw":
        return value
    if type_ in ("int", "float") and isinstance(value, bool):
        issues.append(
            Issue(
                path, f"expected {_TYPE_WORDS[type_]}, got {value!r}", f"write {_TYPE_WORDS[type_]}"
            )
        )
        return None
    try:
        if type_ == "str":
            if isinstance(value, (dict, list)):
                raise TypeError("not a scalar")
            return check_type_str(value, allow_conversion=True)
        return _CHECKERS[type_](value)
    except (TypeError, ValueError):
        issues.append(
            Issue(
                path,
                f"expected {_TYPE_WORDS[type_]}, got {type(value).__name__} {value!r}",
                f"write {_TYPE_WORDS[type_]}",
            )
        )
        return None


def _convert(option: Mapping[str, Any], value: Any, path: str, issues: list[Issue]) -> Any:
    type_ = option.get("type", "str")
    if type_ == "list":
        items = _convert_scalar("list", value, path, issues)
        if items is None:
            return None
        elements = option.get("elements", "raw")
        out = []
        for index, item in enumerate(items):
            item_path = f"{path}[{index}]"
            if elements == "dict" and "options" in option:
                out.append(_check_options(option["options"], item, item_path, issues))
            else:
                converted = _convert_scalar(elements, item, item_path, issues)
                if "choices" in option and converted is not None:
                    _check_choice(option["choices"], converted, item_path, issues)
                out.append(converted)
        return out
    if type_ == "dict":
        if "options" in option:
            return _check_options(option["options"], value, path, issues)
        return _convert_scalar("dict", value, path, issues)
    converted = _convert_scalar(type_, value, path, issues)
    if converted is not None and "choices" in option:
        _check_choice(option["choices"], converted, path, issues)
    return converted


def _check_choice(choices: list[Any], value: Any, path: str, issues: list[Issue]) -> None:
    if value in choices:
        return
    listed = ", ".join(str(c) for c in choices)
    hint = _did_you_mean(value, [str(c) for c in choices]) if isinstance(value, str) else ""
    issues.append(
        Issue(path, f"{value!r} is not one of {listed}", hint or f"choose one of {listed}")
    )


def _check_options(
    options: Mapping[str, Mapping[str, Any]], value: Any, path: str, issues: list[Issue]
) -> dict[str, Any] | None:
    if not isinstance(value, Mapping):
        issues.append(
            Issue(
                path or "spec",
                f"expected a mapping, got {type(value).__name__} {value!r}",
                "write key: value pairs",
            )
        )
        return None
    out: dict[str, Any] = {}
    for key in value:
        if key not in options:
            key_path = _join(path, str(key))
            hint = FIELD_HINTS.get(_generic(key_path)) or _did_you_mean(str(key), list(options))
            issues.append(
                Issue(
                    key_path,
                    "unknown field",
                    hint or "remove it (the fields of this section: " + ", ".join(options) + ")",
                )
            )
    for key, option in options.items():
        key_path = _join(path, key)
        raw = value.get(key)
        if raw is None:
            if option.get("required"):
                issues.append(Issue(key_path, "is required", f"set {key}"))
                out[key] = None
                continue
            if option.get("default") is not None:
                raw = copy.deepcopy(option["default"])
            elif option.get("type") == "dict" and option.get("apply_defaults"):
                raw = {}
            else:
                out[key] = None
                continue
        out[key] = _convert(option, raw, key_path, issues)
    return out


def normalize(raw: Any) -> dict[str, Any]:
    """Check ``raw`` against :data:`OPTIONS`; return it with types converted and defaults set."""
    issues: list[Issue] = []
    result = _check_options(OPTIONS, raw, "", issues)
    if issues:
        raise SpecError(issues)
    return result or {}


# ---------------------------------------------------------------------------------------------
# The typed spec
# ---------------------------------------------------------------------------------------------


def _of(cls: type, many: bool = False) -> dict[str, Any]:
    """Field metadata: the dataclass that builds this field's value (a list of them if many)."""
    return {"cls": cls, "many": many}


def _build(cls: type, data: Mapping[str, Any] | None) -> Any:
    if data is None:
        return None
    values = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        sub = f.metadata.get("cls")
        if sub is not None and value is not None:
            value = [_build(sub, v) for v in value] if f.metadata["many"] else _build(sub, value)
        values[f.name] = value
    return cls(**values)


@dataclass
class Dcv:
    enabled: bool = False
    allowed_cidr: str | None = None
    port: int = 8443


@dataclass
class HeadNode:
    instance_type: str = "m6i.2xlarge"
    subnet_id: str | None = None
    root_volume_size: int = 200
    root_volume_encrypted: bool = True
    ssh_key_name: str | None = None
    allowed_ssh_cidr: str | None = None
    imds_secured: bool = True
    additional_iam_policies: list[str] = field(default_factory=list)
    dcv: Dcv = field(default_factory=Dcv, metadata=_of(Dcv))


@dataclass
class LoginPool:
    name: str
    allowed_ssh_cidr: str | None = None
    instance_type: str = "m6i.xlarge"
    count: int = 1
    subnet_id: str | None = None
    gracetime_period: int | None = None
    additional_iam_policies: list[str] = field(default_factory=list)
    bootstrap: bool = False


@dataclass
class ComputeResource:
    name: str
    instance_type: str
    max_count: int
    min_count: int | None = None
    # None until parse() derives them from the catalog and the queue.
    efa: bool | None = None
    placement_group: bool | None = None
    placement_group_name: str | None = None
    reservation_id: str | None = None
    disable_simultaneous_multithreading: bool | None = None
    spot_price: float | None = None

    @property
    def instance(self) -> catalog.InstanceType:
        return catalog.lookup(self.instance_type)


@dataclass
class Queue:
    name: str
    compute_resources: list[ComputeResource] = field(metadata=_of(ComputeResource, many=True))
    capacity_type: str = "ONDEMAND"
    reservation_id: str | None = None
    allocation_strategy: str | None = None
    subnet_ids: list[str] | None = None
    multi_az: bool = False
    root_volume_size: int | None = None
    root_volume_encrypted: bool = True
    ephemeral_mount_dir: str = "/scratch"
    job_exclusive_allocation: bool | None = None
    gpu_health_check: bool = False
    custom_slurm_settings: dict[str, Any] = field(default_factory=dict)
    additional_iam_policies: list[str] = field(default_factory=list)

    @property
    def is_multi_subnet(self) -> bool:
        return self.multi_az or len(self.subnet_ids or []) > 1

    @property
    def pcluster_capacity_type(self) -> str:
        """ParallelCluster's CapacityType: an ODCR is ONDEMAND plus a CapacityReservationTarget."""
        return "ONDEMAND" if self.capacity_type == "ODCR" else self.capacity_type


@dataclass
class Fsx:
    enabled: bool = True
    name: str = "fsx"
    mount_dir: str = "/fsx"
    file_system_id: str | None = None


@dataclass
class Efs:
    name: str
    mount_dir: str
    file_system_id: str | None = None
    encrypted: bool = True
    performance_mode: str | None = None
    throughput_mode: str | None = None
    provisioned_throughput: int | None = None
    deletion_policy: str | None = None


@dataclass
class Ebs:
    name: str
    mount_dir: str
    volume_id: str | None = None
    snapshot_id: str | None = None
    size: int | None = None
    volume_type: str = "gp3"
    iops: int | None = None
    throughput: int | None = None
    encrypted: bool = True
    deletion_policy: str | None = None


@dataclass
class SharedStorage:
    fsx: Fsx = field(default_factory=Fsx, metadata=_of(Fsx))
    efs: list[Efs] = field(default_factory=list, metadata=_of(Efs, many=True))
    ebs: list[Ebs] = field(default_factory=list, metadata=_of(Ebs, many=True))


@dataclass
class Database:
    uri: str
    user_name: str
    password_secret_arn: str
    database_name: str | None = None


@dataclass
class Slurm:
    scaledown_idletime: int = 10
    queue_update_strategy: str = "DRAIN"
    enable_memory_based_scheduling: bool = False
    custom_slurm_settings: list[dict[str, Any]] = field(default_factory=list)
    database: Database | None = field(default=None, metadata=_of(Database))


@dataclass
class Monitoring:
    cloudwatch_logs: bool = True
    log_retention_days: int = 14
    cloudwatch_dashboards: bool = True
    detailed_monitoring: bool = False
    # None: on when the infrastructure stack outputs an AMP remote-write policy.
    prometheus_remote_write: bool | None = None


@dataclass
class Bootstrap:
    enabled: bool = True
    script: str | None = None
    args: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=lambda: list(DEFAULT_BOOTSTRAP_COMPONENTS))
    head_node_timeout: int | None = None
    compute_node_timeout: int | None = None


@dataclass
class Iam:
    additional_policies: list[str] = field(default_factory=list)
    permissions_boundary: str | None = None


@dataclass
class DirectoryService:
    domain_name: str
    domain_addr: str
    domain_read_only_user: str
    password_secret_arn: str
    ldap_tls_ca_cert: str | None = None
    ldap_tls_req_cert: str | None = None
    generate_ssh_keys_for_users: bool | None = None


@dataclass
class Proxy:
    http_proxy_address: str


@dataclass
class ClusterSpec:
    name: str
    region: str
    queues: list[Queue] = field(metadata=_of(Queue, many=True))
    os: str = "alinux2023"
    custom_ami: str | None = None
    head_node: HeadNode = field(default_factory=HeadNode, metadata=_of(HeadNode))
    login_pools: list[LoginPool] = field(default_factory=list, metadata=_of(LoginPool, many=True))
    shared_storage: SharedStorage = field(
        default_factory=SharedStorage, metadata=_of(SharedStorage)
    )
    slurm: Slurm = field(default_factory=Slurm, metadata=_of(Slurm))
    monitoring: Monitoring = field(default_factory=Monitoring, metadata=_of(Monitoring))
    bootstrap: Bootstrap = field(default_factory=Bootstrap, metadata=_of(Bootstrap))
    tags: dict[str, str] = field(default_factory=dict)
    iam: Iam = field(default_factory=Iam, metadata=_of(Iam))
    directory_service: DirectoryService | None = field(default=None, metadata=_of(DirectoryService))
    proxy: Proxy | None = field(default=None, metadata=_of(Proxy))


@dataclass
class ParsedSpec:
    """A valid spec with everything derived, plus what the derivation decided."""

    spec: ClusterSpec
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Domain rules
# ---------------------------------------------------------------------------------------------


class _Checker:
    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self.notes: list[str] = []
        self.warnings: list[str] = []

    def error(self, path: str, problem: str, fix: str = "") -> None:
        self.issues.append(Issue(path, problem, fix))

    def instance(self, path: str, name: str) -> catalog.InstanceType | None:
        try:
            return catalog.lookup(name)
        except catalog.UnknownInstanceTypeError as exc:
            self.issues.append(Issue(path, exc.problem, exc.hint))
            return None


def _check_cidr(chk: _Checker, path: str, value: str | None, what: str) -> None:
    if value is None:
        return
    if PREFIX_LIST_RE.match(value):
        return
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        chk.error(
            path,
            f"{value!r} is neither an IPv4 CIDR nor a prefix list id",
            "write it as a.b.c.d/n (for example 10.0.0.0/16) or pl-...",
        )
        return
    if network.version != 4:
        chk.error(path, f"{value!r} is IPv6", "ParallelCluster takes an IPv4 CIDR or pl-... here")
    elif value in WORLD_CIDRS or network.prefixlen == 0:
        chk.error(
            path,
            f"{what} open to the whole internet ({value})",
            "give the CIDR of your VPN or office network, or a managed prefix list (pl-...)",
        )


def _check_policies(chk: _Checker, path: str, arns: list[str]) -> None:
    for index, arn in enumerate(arns):
        if not POLICY_ARN_RE.match(arn):
            chk.error(
                f"{path}[{index}]",
                f"{arn!r} is not an IAM policy ARN",
                "use arn:aws:iam::<account>:policy/<name> or arn:aws:iam::aws:policy/<name>",
            )


def _check_resource_name(chk: _Checker, path: str, name: str, what: str) -> None:
    if not RESOURCE_NAME_RE.match(name):
        fixed = re.sub(r"[^a-z0-9-]", "-", name.lower()).lstrip("-0123456789") or "q"
        chk.error(
            path,
            f"{what} name {name!r} must start with a lowercase letter and hold only lowercase "
            "letters, digits and hyphens",
            f"for example {fixed[:RESOURCE_NAME_MAX]!r}",
        )
    elif len(name) > RESOURCE_NAME_MAX:
        chk.error(
            path,
            f"{what} name {name!r} is {len(name)} characters long",
            f"shorten it to {RESOURCE_NAME_MAX} characters or fewer",
        )
    elif name == "default":
        chk.error(path, f"{what} name 'default' is reserved by ParallelCluster", "pick another")


def _check_cluster(chk: _Checker, spec: ClusterSpec) -> None:
    max_len = CLUSTER_NAME_MAX_WITH_ACCOUNTING if spec.slurm.database else CLUSTER_NAME_MAX
    if not CLUSTER_NAME_RE.match(spec.name):
        chk.error(
            "name",
            f"cluster name {spec.name!r} must start with a letter and hold only letters, digits "
            "and hyphens",
            "for example " + repr(re.sub(r"[^a-zA-Z0-9-]", "-", spec.name).lstrip("-0123456789")),
        )
    elif len(spec.name) > max_len:
        why = " when Slurm accounting (slurm.database) is on" if spec.slurm.database else ""
        chk.error(
            "name",
            f"cluster name is {len(spec.name)} characters long; the limit is {max_len}{why}",
            f"shorten it to {max_len} characters or fewer",
        )
    if not REGION_RE.match(spec.region):
        chk.error(
            "region",
            f"{spec.region!r} is not an AWS region name",
            "use a region code such as us-east-1 or eu-west-1",
        )
    if spec.custom_ami is not None and not AMI_RE.match(spec.custom_ami):
        chk.error("custom_ami", f"{spec.custom_ami!r} is not an AMI id", "use ami-<8 or 17 hex>")
    if spec.os in OS_WITHOUT_PUBLIC_AMI and not spec.custom_ami:
        chk.error(
            "custom_ami",
            f"ParallelCluster publishes no AMI for os {spec.os}",
            "build one with `pcluster build-image` and set custom_ami, or choose os alinux2023, "
            "ubuntu2204, ubuntu2404, rhel8 or rhel9",
        )


def _check_head_node(chk: _Checker, spec: ClusterSpec) -> catalog.InstanceType | None:
    head = spec.head_node
    head_type = chk.instance("head_node.instance_type", head.instance_type)
    if head.subnet_id is not None and not SUBNET_RE.match(head.subnet_id):
        chk.error("head_node.subnet_id", f"{head.subnet_id!r} is not a subnet id", "use subnet-...")
    if head.root_volume_size < 40:
        chk.error(
            "head_node.root_volume_size",
            f"{head.root_volume_size} GiB is smaller than the ParallelCluster AMIs (about 40 GiB)",
            "use 40 or more (200 is the default)",
        )
    _check_cidr(chk, "head_node.allowed_ssh_cidr", head.allowed_ssh_cidr, "SSH to the head node")
    if not head.imds_secured:
        chk.warnings.append(
            "head_node.imds_secured is false: any process on the head node can read the instance "
            "role's credentials from IMDS"
        )
    _check_policies(chk, "head_node.additional_iam_policies", head.additional_iam_policies)
    if head.dcv.enabled:
        if head.dcv.allowed_cidr is None:
            chk.error(
                "head_node.dcv.allowed_cidr",
                "is required when head_node.dcv.enabled is true (ParallelCluster would open DCV "
                "to 0.0.0.0/0)",
                "set the CIDR your users connect from",
            )
        _check_cidr(chk, "head_node.dcv.allowed_cidr", head.dcv.allowed_cidr, "DCV")
    return head_type


def _check_login_pools(chk: _Checker, spec: ClusterSpec) -> list[catalog.InstanceType]:
    types = []
    if len(spec.login_pools) > MAX_LOGIN_POOLS:
        chk.error("login_pools", f"{len(spec.login_pools)} pools", f"use at most {MAX_LOGIN_POOLS}")
    seen: set[str] = set()
    for index, pool in enumerate(spec.login_pools):
        path = f"login_pools[{index}]"
        _check_resource_name(chk, f"{path}.name", pool.name, "login pool")
        if pool.name in seen:
            chk.error(f"{path}.name", f"login pool {pool.name!r} is defined twice", "rename one")
        seen.add(pool.name)
        pool_type = chk.instance(f"{path}.instance_type", pool.instance_type)
        if pool_type:
            types.append(pool_type)
        if pool.count < 0:
            chk.error(f"{path}.count", f"{pool.count} login nodes", "use 0 or more")
        if pool.subnet_id is not None and not SUBNET_RE.match(pool.subnet_id):
            chk.error(
                f"{path}.subnet_id", f"{pool.subnet_id!r} is not a subnet id", "use subnet-..."
            )
        if pool.gracetime_period is not None and not 3 <= pool.gracetime_period <= 120:
            chk.error(
                f"{path}.gracetime_period",
                f"{pool.gracetime_period} minutes is outside ParallelCluster's 3-120",
                "use a value from 3 to 120",
            )
        _check_cidr(
            chk, f"{path}.allowed_ssh_cidr", pool.allowed_ssh_cidr, "SSH to the login nodes"
        )
        _check_policies(chk, f"{path}.additional_iam_policies", pool.additional_iam_policies)
        if (
            pool.bootstrap
            and spec.bootstrap.enabled
            and not (pool.additional_iam_policies or spec.iam.additional_policies)
        ):
            chk.error(
                f"{path}.bootstrap",
                "login nodes cannot be given S3Access in ParallelCluster, so they could not read "
                "the bootstrap script",
                f"add a policy that reads the stack bucket's bootstrap/ prefix to "
                f"{path}.additional_iam_policies, or configure login nodes with the configure "
                "playbook (bootstrap: false)",
            )
    return types


def _check_custom_slurm(chk: _Checker, spec: ClusterSpec) -> None:
    deny = set(SLURM_DENY_GLOBAL)
    if spec.slurm.database:
        deny |= SLURM_DENY_ACCOUNTING
    for index, setting in enumerate(spec.slurm.custom_slurm_settings):
        path = f"slurm.custom_slurm_settings[{index}]"
        if not isinstance(setting, Mapping) or not setting:
            chk.error(path, "each entry must be a one-key mapping", "write it as {Name: value}")
            continue
        for key, value in setting.items():
            if str(key).lower() in deny:
                chk.error(
                    f"{path}.{key}",
                    "ParallelCluster manages this Slurm setting itself",
                    SLURM_SETTING_FIX.get(str(key).lower(), "remove it"),
                )
            if isinstance(value, (dict, list)) or value is None:
                chk.error(f"{path}.{key}", "needs a scalar value", "write a string or a number")
    if spec.slurm.scaledown_idletime < -1:
        chk.error(
            "slurm.scaledown_idletime",
            f"{spec.slurm.scaledown_idletime} minutes",
            "use -1 (never scale down) or a positive number of minutes",
        )
    database = spec.slurm.database
    if database:
        if not SECRET_ARN_RE.match(database.password_secret_arn):
            chk.error(
                "slurm.database.password_secret_arn",
                f"{database.password_secret_arn!r} is not a Secrets Manager secret ARN",
                "use arn:aws:secretsmanager:<region>:<account>:secret:<name>",
            )
        if database.database_name is not None and not re.match(
            r"^[0-9a-z_]{1,64}$", database.database_name
        ):
            chk.error(
                "slurm.database.database_name",
                f"{database.database_name!r} must be 1-64 of [0-9a-z_]",
                "use lowercase letters, digits and underscores",
            )


def _derive_compute_resource(
    chk: _Checker,
    path: str,
    queue: Queue,
    cr: ComputeResource,
    itype: catalog.InstanceType,
) -> None:
    """Check one compute resource and fill in efa, placement_group and min_count."""
    reserved = queue.capacity_type in RESERVED_CAPACITY_TYPES
    # Counts.
    if cr.max_count < 1:
        chk.error(f"{path}.max_count", f"{cr.max_count}", "use 1 or more")
    if cr.min_count is None:
        cr.min_count = cr.max_count if queue.capacity_type == "CAPACITY_BLOCK" else 0
        if queue.capacity_type == "CAPACITY_BLOCK":
            chk.notes.append(
                f"{path}.min_count: {cr.max_count} (a Capacity Block's nodes are static: "
                "min_count = max_count)"
            )
    if cr.min_count < 0:
        chk.error(f"{path}.min_count", f"{cr.min_count}", "use 0 or more")
    elif cr.min_count > cr.max_count:
        chk.error(
            f"{path}.min_count",
            f"min_count {cr.min_count} is above max_count {cr.max_count}",
            f"lower min_count or raise max_count to at least {cr.min_count}",
        )
    elif queue.capacity_type == "CAPACITY_BLOCK" and cr.min_count != cr.max_count:
        chk.error(
            f"{path}.min_count",
            f"a Capacity Block queue needs min_count = max_count (got {cr.min_count} and "
            f"{cr.max_count})",
            f"set min_count to {cr.max_count} or leave it unset",
        )
    # Reservations.
    reservation = cr.reservation_id or queue.reservation_id
    if cr.reservation_id is not None and not reserved:
        chk.error(
            f"{path}.reservation_id",
            f"a reservation only applies to CAPACITY_BLOCK or ODCR queues (this one is "
            f"{queue.capacity_type})",
            "set the queue's capacity_type to ODCR or CAPACITY_BLOCK, or remove reservation_id",
        )
    if cr.reservation_id is not None and not RESERVATION_RE.match(cr.reservation_id):
        chk.error(
            f"{path}.reservation_id",
            f"{cr.reservation_id!r} is not a capacity reservation id",
            "use the cr-... id EC2 shows for the reservation",
        )
    if reserved and reservation is None:
        chk.error(
            f"{path}.reservation_id",
            f"a {queue.capacity_type} queue needs the reservation's id",
            f"set reservation_id: cr-... on the queue or on {path}",
        )
    # EFA: exactly where the instance type supports it.
    if cr.efa is True and not itype.efa_supported:
        chk.error(
            f"{path}.efa",
            f"{itype.name} has no EFA interface",
            "remove efa (it defaults from the catalog) or pick an EFA type such as "
            + _efa_alternative(itype),
        )
    if cr.efa is None:
        cr.efa = itype.efa_supported
        if cr.efa and queue.is_multi_subnet:
            chk.error(
                f"{path}.efa",
                f"EFA (on by default for {itype.name}) does not work across Availability Zones and "
                f"queue {queue.name!r} spans several subnets",
                f"give the queue one subnet (multi_az: false), or set efa: false on {path}",
            )
    elif cr.efa and queue.is_multi_subnet:
        chk.error(
            f"{path}.efa",
            f"EFA does not work across Availability Zones and queue {queue.name!r} spans several "
            "subnets",
            "give the queue one subnet (multi_az: false, one subnet_ids entry)",
        )
    if itype.efa_supported and not cr.efa and cr.max_count > 1:
        chk.warnings.append(
            f"{path}.efa is false on {itype.name}: multi-node jobs fall back to TCP "
            f"(at most {itype.network_gbps:g} Gbps without OS bypass)"
        )
    # Placement group.
    if cr.placement_group_name is not None and cr.placement_group is False:
        chk.error(
            f"{path}.placement_group_name",
            "names a placement group while placement_group is false",
            "remove one of them",
        )
    wanted = cr.placement_group
    if cr.placement_group_name is not None and wanted is None:
        wanted = True
    if wanted:
        if queue.capacity_type == "CAPACITY_BLOCK":
            chk.error(
                f"{path}.placement_group",
                "Capacity Blocks cannot be combined with a placement group (the block already "
                "places its instances)",
                "remove placement_group / placement_group_name (it defaults to false here)",
            )
        if queue.is_multi_subnet:
            chk.error(
                f"{path}.placement_group",
                f"a placement group lives in one Availability Zone and queue {queue.name!r} spans "
                "several subnets",
                "give the queue one subnet, or set placement_group: false",
            )
        if not itype.placement_group:
            chk.error(
                f"{path}.placement_group",
                f"{itype.name} cannot join a cluster placement group",
                "set placement_group: false or use a non-burstable type",
            )
        cr.placement_group = True
    elif wanted is None:
        if queue.capacity_type == "CAPACITY_BLOCK":
            cr.placement_group = False
            if cr.efa:
                chk.notes.append(
                    f"{path}.placement_group: false (Capacity Blocks cannot use a placement group)"
                )
        elif queue.capacity_type == "ODCR":
            cr.placement_group = False
            if cr.efa and cr.max_count > 1:
                chk.notes.append(
                    f"{path}.placement_group: false (a targeted ODCR keeps its own placement; "
                    "set placement_group_name if the reservation was made in a cluster "
                    "placement group)"
                )
        else:
            cr.placement_group = bool(
                cr.efa and cr.max_count > 1 and not queue.is_multi_subnet and itype.placement_group
            )
            if cr.placement_group:
                chk.notes.append(f"{path}.placement_group: true (multi-node EFA compute resource)")
    # Spot price.
    if cr.spot_price is not None:
        if queue.capacity_type != "SPOT":
            chk.error(
                f"{path}.spot_price",
                f"only applies to SPOT queues (queue {queue.name!r} is {queue.capacity_type})",
                "remove spot_price or set capacity_type: SPOT",
            )
        elif cr.spot_price <= 0:
            chk.error(f"{path}.spot_price", f"{cr.spot_price}", "use a positive USD price")
    if itype.name.startswith("p6e-gb200"):
        if queue.capacity_type != "CAPACITY_BLOCK":
            chk.error(
                f"{path}.instance_type",
                "p6e-gb200 is only sold as UltraServer Capacity Blocks",
                f"set queue {queue.name!r} capacity_type: CAPACITY_BLOCK with the block's "
                "reservation_id",
            )
        elif cr.max_count not in (9, 18):
            chk.warnings.append(
                f"{path}.max_count is {cr.max_count}: p6e-gb200 UltraServer Capacity Blocks hold "
                "9 or 18 instances"
            )


def _efa_alternative(itype: catalog.InstanceType) -> str:
    same_family = sorted(
        (t for t in catalog.CATALOG.values() if t.family == itype.family and t.efa_supported),
        key=lambda t: t.vcpus,
    )
    if same_family:
        return same_family[0].name
    return "c7i.48xlarge" if not itype.is_gpu else "g6e.12xlarge"


def _check_queues(chk: _Checker, spec: ClusterSpec) -> list[catalog.InstanceType]:
    types: list[catalog.InstanceType] = []
    if not spec.queues:
        chk.error("queues", "no queue is defined", "define at least one queue")
        return types
    if len(spec.queues) > MAX_QUEUES:
        chk.error("queues", f"{len(spec.queues)} queues", f"use at most {MAX_QUEUES}")
    total = sum(len(q.compute_resources) for q in spec.queues)
    if total > MAX_COMPUTE_RESOURCES:
        chk.error(
            "queues",
            f"{total} compute resources in all",
            f"use at most {MAX_COMPUTE_RESOURCES} across all queues",
        )
    names: set[str] = set()
    for qi, queue in enumerate(spec.queues):
        qpath = f"queues[{qi}]"
        _check_resource_name(chk, f"{qpath}.name", queue.name, "queue")
        if queue.name in names:
            chk.error(f"{qpath}.name", f"queue {queue.name!r} is defined twice", "rename one")
        names.add(queue.name)
        if queue.reservation_id is not None:
            if queue.capacity_type not in RESERVED_CAPACITY_TYPES:
                chk.error(
                    f"{qpath}.reservation_id",
                    f"a reservation only applies to CAPACITY_BLOCK or ODCR queues (this one is "
                    f"{queue.capacity_type})",
                    "set capacity_type: ODCR for an On-Demand Capacity Reservation or "
                    "CAPACITY_BLOCK for a Capacity Block, or remove reservation_id",
                )
            if not RESERVATION_RE.match(queue.reservation_id):
                chk.error(
                    f"{qpath}.reservation_id",
                    f"{queue.reservation_id!r} is not a capacity reservation id",
                    "use the cr-... id EC2 shows for the reservation",
                )
        for si, subnet in enumerate(queue.subnet_ids or []):
            if not SUBNET_RE.match(subnet):
                chk.error(
                    f"{qpath}.subnet_ids[{si}]", f"{subnet!r} is not a subnet id", "use subnet-..."
                )
        if queue.subnet_ids is not None and not queue.subnet_ids:
            chk.error(
                f"{qpath}.subnet_ids",
                "is empty",
                "remove it (defaults from the stack) or list subnets",
            )
        if queue.multi_az and queue.subnet_ids:
            chk.error(
                f"{qpath}.multi_az",
                "multi_az takes the stack's private subnets and cannot be combined with subnet_ids",
                "remove one of them",
            )
        if queue.capacity_type in RESERVED_CAPACITY_TYPES and queue.is_multi_subnet:
            chk.error(
                f"{qpath}.subnet_ids",
                "a capacity reservation lives in one Availability Zone",
                "give the queue the one subnet in the reservation's Availability Zone",
            )
        if queue.allocation_strategy is not None and queue.capacity_type in RESERVED_CAPACITY_TYPES:
            chk.error(
                f"{qpath}.allocation_strategy",
                f"does not apply to {queue.capacity_type} queues",
                "remove it",
            )
        if queue.root_volume_size is not None and queue.root_volume_size < 40:
            chk.error(
                f"{qpath}.root_volume_size",
                f"{queue.root_volume_size} GiB is smaller than the ParallelCluster AMIs",
                "use 40 or more",
            )
        if not queue.ephemeral_mount_dir.startswith("/"):
            chk.error(
                f"{qpath}.ephemeral_mount_dir",
                f"{queue.ephemeral_mount_dir!r} is not an absolute path",
                "use for example /scratch",
            )
        for key in queue.custom_slurm_settings:
            if str(key).lower() in SLURM_DENY_QUEUE:
                chk.error(
                    f"{qpath}.custom_slurm_settings.{key}",
                    "ParallelCluster manages this partition setting itself",
                    SLURM_SETTING_FIX.get(str(key).lower(), "remove it"),
                )
        _check_policies(chk, f"{qpath}.additional_iam_policies", queue.additional_iam_policies)
        if not queue.compute_resources:
            chk.error(
                f"{qpath}.compute_resources", "is empty", "define at least one compute resource"
            )
        cr_names: set[str] = set()
        queue_types = []
        for ci, cr in enumerate(queue.compute_resources):
            cpath = f"{qpath}.compute_resources[{ci}]"
            _check_resource_name(chk, f"{cpath}.name", cr.name, "compute resource")
            if cr.name in cr_names:
                chk.error(
                    f"{cpath}.name",
                    f"compute resource {cr.name!r} is defined twice in queue {queue.name!r}",
                    "rename one",
                )
            cr_names.add(cr.name)
            itype = chk.instance(f"{cpath}.instance_type", cr.instance_type)
            if itype is None:
                continue
            types.append(itype)
            queue_types.append(itype)
            _derive_compute_resource(chk, cpath, queue, cr, itype)
        if queue.gpu_health_check and not any(t.is_gpu for t in queue_types):
            chk.error(
                f"{qpath}.gpu_health_check",
                f"queue {queue.name!r} has no NVIDIA GPU type",
                "remove gpu_health_check",
            )
        if queue.gpu_health_check:
            chk.warnings.append(
                f"{qpath}.gpu_health_check runs `dcgmi diag -r 2` in every job prolog; it has hung "
                "on p4d/p5 (aws-parallelcluster #6777)"
            )
    return types


def _check_architectures(
    chk: _Checker,
    spec: ClusterSpec,
    head: catalog.InstanceType | None,
) -> None:
    if head is None:
        return
    for qi, queue in enumerate(spec.queues):
        for ci, cr in enumerate(queue.compute_resources):
            itype = catalog.CATALOG.get(cr.instance_type)
            if itype and itype.arch != head.arch:
                fix = "m7g.2xlarge" if itype.arch == "arm64" else "m6i.2xlarge"
                chk.error(
                    f"queues[{qi}].compute_resources[{ci}].instance_type",
                    f"{itype.name} is {itype.arch} but the head node ({head.name}) is {head.arch}; "
                    "a cluster runs one architecture",
                    f"set head_node.instance_type to an {itype.arch} type such as {fix}",
                )
            if (
                itype
                and itype.name.startswith("p6e-gb200")
                and spec.os in OS_UNSUPPORTED_FOR_P6E_GB200
            ):
                chk.error(
                    "os",
                    f"ParallelCluster does not support {spec.os} on p6e-gb200",
                    "use alinux2023, ubuntu2204, ubuntu2404 or rocky9 (with custom_ami)",
                )
    for index, pool in enumerate(spec.login_pools):
        itype = catalog.CATALOG.get(pool.instance_type)
        if itype and itype.arch != head.arch:
            chk.error(
                f"login_pools[{index}].instance_type",
                f"{itype.name} is {itype.arch} but the head node is {head.arch}",
                f"pick an {head.arch} login type",
            )


def _check_storage(chk: _Checker, spec: ClusterSpec) -> None:
    storage = spec.shared_storage
    mounts: dict[str, str] = {}
    names: dict[str, str] = {}

    def claim(path: str, name: str, mount_dir: str) -> None:
        if not re.match(r"^/[^\s]*$", mount_dir):
            chk.error(f"{path}.mount_dir", f"{mount_dir!r} is not an absolute path", "use /name")
        elif mount_dir.rstrip("/") in RESERVED_MOUNT_DIRS:
            chk.error(
                f"{path}.mount_dir",
                f"{mount_dir} is a system directory ParallelCluster reserves",
                "mount it elsewhere, for example /shared",
            )
        elif mount_dir in mounts:
            chk.error(
                f"{path}.mount_dir",
                f"{mount_dir} is already used by {mounts[mount_dir]}",
                "give each file system its own mount_dir",
            )
        mounts.setdefault(mount_dir, path)
        if len(name) > STORAGE_NAME_MAX or not TAG_VALUE_RE.match(name) or name == "default":
            chk.error(
                f"{path}.name",
                f"{name!r} is not a valid storage name",
                f"use up to {STORAGE_NAME_MAX} letters, digits and + - = . _ : /",
            )
        elif name in names:
            chk.error(f"{path}.name", f"{name!r} is already used by {names[name]}", "rename one")
        names.setdefault(name, path)

    if storage.fsx.enabled:
        claim("shared_storage.fsx", storage.fsx.name, storage.fsx.mount_dir)
        fsx_id = storage.fsx.file_system_id
        if fsx_id is not None and not FSX_ID_RE.match(fsx_id):
            chk.error(
                "shared_storage.fsx.file_system_id",
                f"{fsx_id!r} is not an FSx file system id",
                "use fs-<17 characters>",
            )
    new_efs = 0
    for index, efs in enumerate(storage.efs):
        path = f"shared_storage.efs[{index}]"
        claim(path, efs.name, efs.mount_dir)
        if efs.file_system_id is not None:
            if not EFS_ID_RE.match(efs.file_system_id):
                chk.error(
                    f"{path}.file_system_id",
                    f"{efs.file_system_id!r} is not an EFS id",
                    "use fs-...",
                )
            ignored = [
                k
                for k in ("performance_mode", "throughput_mode", "provisioned_throughput")
                if getattr(efs, k) is not None
            ]
            if ignored:
                chk.error(
                    f"{path}.{ignored[0]}",
                    "ParallelCluster ignores creation settings of an existing file system",
                    "remove " + ", ".join(ignored) + " or file_system_id",
                )
        else:
            new_efs += 1
        if (efs.throughput_mode == "provisioned") != (efs.provisioned_throughput is not None):
            chk.error(
                f"{path}.provisioned_throughput",
                "throughput_mode provisioned and provisioned_throughput go together",
                "set both (throughput_mode: provisioned, provisioned_throughput: 1-1024 MiB/s) "
                "or neither",
            )
        elif efs.provisioned_throughput is not None and not 1 <= efs.provisioned_throughput <= 1024:
            chk.error(
                f"{path}.provisioned_throughput", f"{efs.provisioned_throughput}", "use 1-1024"
            )
    if new_efs > 1:
        chk.error(
            "shared_storage.efs",
            f"{new_efs} new EFS file systems; ParallelCluster creates at most one",
            "create the others beforehand and give their file_system_id",
        )
    if len(storage.ebs) > MAX_EBS:
        chk.error("shared_storage.ebs", f"{len(storage.ebs)} volumes", f"use at most {MAX_EBS}")
    for index, ebs in enumerate(storage.ebs):
        path = f"shared_storage.ebs[{index}]"
        claim(path, ebs.name, ebs.mount_dir)
        if ebs.volume_id is not None:
            if not EBS_VOLUME_RE.match(ebs.volume_id):
                chk.error(
                    f"{path}.volume_id", f"{ebs.volume_id!r} is not a volume id", "use vol-..."
                )
            if ebs.size is not None or ebs.snapshot_id is not None:
                chk.error(
                    f"{path}.volume_id",
                    "an existing volume keeps its size and contents",
                    "remove size and snapshot_id, or volume_id",
                )
        if ebs.snapshot_id is not None and not SNAPSHOT_RE.match(ebs.snapshot_id):
            chk.error(
                f"{path}.snapshot_id", f"{ebs.snapshot_id!r} is not a snapshot id", "use snap-..."
            )
        if ebs.iops is not None and ebs.volume_type not in ("gp3", "io1", "io2"):
            chk.error(
                f"{path}.iops", f"{ebs.volume_type} volumes take no iops", "use gp3, io1 or io2"
            )
        if ebs.throughput is not None and ebs.volume_type != "gp3":
            chk.error(
                f"{path}.throughput", f"{ebs.volume_type} volumes take no throughput", "use gp3"
            )


def _check_bootstrap(chk: _Checker, spec: ClusterSpec) -> None:
    boot = spec.bootstrap
    if boot.script is not None and not re.match(r"^(s3|https)://\S+$", boot.script):
        chk.error(
            "bootstrap.script",
            f"{boot.script!r} is not an s3:// or https:// URL",
            "leave it unset (s3://<NodeAssetsBucketName>/bootstrap/node-bootstrap.sh) or give a "
            "full URL",
        )
    if len(set(boot.components)) != len(boot.components):
        chk.error("bootstrap.components", "lists a component twice", "list each component once")
    for key in ("head_node_timeout", "compute_node_timeout"):
        value = getattr(boot, key)
        if (
            value is not None
            and not BOOTSTRAP_MIN_SECONDS <= value <= BOOTSTRAP_OVERRIDE_MAX_SECONDS
        ):
            chk.error(
                f"bootstrap.{key}",
                f"{value} s is outside {BOOTSTRAP_MIN_SECONDS}-{BOOTSTRAP_OVERRIDE_MAX_SECONDS} s",
                "leave it unset to derive it from bootstrap.components, or pick a value in range",
            )


def _check_misc(chk: _Checker, spec: ClusterSpec) -> None:
    reserved_prefixes = ("parallelcluster:", "aws:", "xpu:")
    for key, value in spec.tags.items():
        path = f"tags.{key}"
        if str(key).lower().startswith(reserved_prefixes):
            chk.error(
                path,
                f"tag key {key!r} uses a reserved prefix (parallelcluster:, aws: or xpu:)",
                "rename the key; the collection adds xpu:cluster-name itself",
            )
        if len(str(key)) > 128 or len(str(value)) > 256:
            chk.error(path, "tag key over 128 or value over 256 characters", "shorten it")
        if value is None or isinstance(value, (dict, list)):
            chk.error(path, "needs a string value", "write the value as a string")
    if len(spec.tags) + 2 > MAX_TAGS:
        chk.error("tags", f"{len(spec.tags)} tags", f"use at most {MAX_TAGS - 2}")
    _check_policies(chk, "iam.additional_policies", spec.iam.additional_policies)
    boundary = spec.iam.permissions_boundary
    if boundary is not None and not POLICY_ARN_RE.match(boundary):
        chk.error(
            "iam.permissions_boundary",
            f"{boundary!r} is not an IAM policy ARN",
            "use arn:aws:iam::...",
        )
    ds = spec.directory_service
    if ds is not None:
        if not DS_SECRET_ARN_RE.match(ds.password_secret_arn):
            chk.error(
                "directory_service.password_secret_arn",
                f"{ds.password_secret_arn!r} is not a Secrets Manager secret or SSM parameter ARN",
                "use arn:aws:secretsmanager:...:secret:... or arn:aws:ssm:...:parameter/...",
            )
        if not DOMAIN_RE.match(ds.domain_name):
            chk.error(
                "directory_service.domain_name",
                f"{ds.domain_name!r} is neither an FQDN nor an LDAP DN",
                "use corp.example.com or DC=corp,DC=example,DC=com",
            )
    if spec.proxy is not None and not re.match(
        r"^https?://\S+:\d+$", spec.proxy.http_proxy_address
    ):
        chk.error(
            "proxy.http_proxy_address",
            f"{spec.proxy.http_proxy_address!r} is not a proxy URL with a port",
            "use http://proxy.example.com:8080",
        )
    if not spec.monitoring.cloudwatch_logs:
        chk.warnings.append(
            "monitoring.cloudwatch_logs is false: a failed node leaves no log in CloudWatch and "
            "pcluster_cluster cannot show why it failed"
        )


def parse(raw: Any) -> ParsedSpec:
    """Normalize ``raw``, check every rule, derive what is unset; raise :class:`SpecError`."""
    data = normalize(raw)
    spec: ClusterSpec = _build(ClusterSpec, data)
    chk = _Checker()
    _check_cluster(chk, spec)
    head_type = _check_head_node(chk, spec)
    _check_login_pools(chk, spec)
    _check_queues(chk, spec)
    _check_architectures(chk, spec, head_type)
    _check_custom_slurm(chk, spec)
    _check_storage(chk, spec)
    _check_bootstrap(chk, spec)
    _check_misc(chk, spec)
    if chk.issues:
        raise SpecError(chk.issues)
    return ParsedSpec(spec=spec, notes=chk.notes, warnings=chk.warnings)
