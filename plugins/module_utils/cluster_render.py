# Copyright: (c) 2026, xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)
"""Cluster spec + infrastructure outputs + instance catalog -> ParallelCluster v3 configuration.

The configuration is built as Python data (never spliced text) and written with
``yaml.safe_dump``; nothing in it is ever null. Rendering applies the rules that need the
infrastructure stack's outputs, each with a message naming the field and the fix:

- subnets, security groups and the FSx file system come from the stack (spec fields override);
- S3 access is read-only and on the stack's bucket only (``Iam/S3Access``, head and compute);
- the AMP remote-write policy goes on the head node only (the node that runs Prometheus);
- IMDSv2 everywhere (``Imds/ImdsSupport: v2.0``) and secured on the head node;
- every node runs the node bootstrap script from ``CustomActions/OnNodeConfigured`` with its role,
  queue and components; the bootstrap timeouts are estimated from those components, bounded, and
  put under ``DevSettings/Timeouts``;
- CloudWatch logs on, tags that carry the cluster name.

:func:`validate_offline` then loads the result through aws-parallelcluster's own
``ClusterSchema`` (no AWS call: see its docstring), so a configuration that would be refused is
caught before ``pcluster`` runs.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

try:
    import yaml

    HAS_YAML = True
except ImportError:  # pragma: no cover - ansible-core depends on PyYAML
    HAS_YAML = False

from ansible_collections.xpu.parallelcluster.plugins.module_utils import catalog
from ansible_collections.xpu.parallelcluster.plugins.module_utils.cluster_spec import (
    BOOTSTRAP_BASE_SECONDS,
    BOOTSTRAP_COMPONENTS,
    BOOTSTRAP_MAX_SECONDS,
    BOOTSTRAP_MIN_SECONDS,
    FSX_ID_RE,
    NO_SSH_CIDR,
    POLICY_ARN_RE,
    SUBNET_RE,
    ClusterSpec,
    Issue,
    ParsedSpec,
    Queue,
    parse,
)

PCLUSTER_VERSION = "3.16.1"
PCLUSTER_PIP_HINT = f"pip install aws-parallelcluster=={PCLUSTER_VERSION}"
BOOTSTRAP_KEY = "bootstrap/node-bootstrap.sh"
SECURITY_GROUP_RE = re.compile(r"^sg-[0-9a-z]{8}$|^sg-[0-9a-z]{17}$")
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
YAML_HEADER = (
    "# AWS ParallelCluster {version} cluster configuration for {name}, rendered by\n"
    "# xpu.parallelcluster.cluster_config from the cluster spec: change the spec, not this file.\n"
)
MANAGED_BY = "xpu.parallelcluster"


class RenderError(ValueError):
    """The spec and the infrastructure outputs do not make a valid configuration."""

    def __init__(self, issues: list[Issue], headline: str = "cannot render the cluster config"):
        self.issues = list(issues)
        lines = "\n".join(f"- {i}" for i in self.issues)
        super().__init__(f"{headline}:\n{lines}")


class PclusterMissingError(RuntimeError):
    """aws-parallelcluster is not importable on the controller."""


@dataclass
class Rendered:
    """The rendered configuration and everything the module reports about it."""

    config: dict[str, Any]
    config_yaml: str
    summary: dict[str, Any]
    bootstrap_timeouts: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Infrastructure outputs
# ---------------------------------------------------------------------------------------------


@dataclass
class Infra:
    """The infrastructure stack outputs this renderer uses, checked."""

    head_subnet: str | None
    private_subnets: list[str]
    public_subnets: list[str]
    head_sg: str | None
    login_sg: str | None
    compute_sg: str | None
    fsx_id: str | None
    bucket: str | None
    amp_remote_write_policy: str | None


def _split(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def _infra(outputs: Mapping[str, Any], issues: list[Issue]) -> Infra:
    def one(key: str, pattern: re.Pattern[str], what: str) -> str | None:
        value = outputs.get(key)
        if value in (None, ""):
            return None
        value = str(value).strip()
        if not pattern.match(value):
            issues.append(
                Issue(
                    f"infra_outputs.{key}",
                    f"{value!r} is not {what}",
                    "pass the infrastructure stack's outputs unchanged",
                )
            )
            return None
        return value

    def subnets(key: str) -> list[str]:
        found = []
        for subnet in _split(outputs.get(key)):
            if SUBNET_RE.match(subnet):
                found.append(subnet)
            else:
                issues.append(
                    Issue(
                        f"infra_outputs.{key}",
                        f"{subnet!r} is not a subnet id",
                        "pass the comma-joined subnet ids the stack outputs",
                    )
                )
        return found

    private = subnets("PrivateSubnetIds")
    public = subnets("PublicSubnetIds")
    return Infra(
        head_subnet=one("HeadNodeSubnetId", SUBNET_RE, "a subnet id"),
        private_subnets=private,
        public_subnets=public,
        head_sg=one("HeadNodeSecurityGroupId", SECURITY_GROUP_RE, "a security group id"),
        login_sg=one("LoginNodeSecurityGroupId", SECURITY_GROUP_RE, "a security group id"),
        compute_sg=one("ComputeSecurityGroupId", SECURITY_GROUP_RE, "a security group id"),
        fsx_id=one("FsxFileSystemId", FSX_ID_RE, "an FSx file system id"),
        bucket=one("NodeAssetsBucketName", BUCKET_RE, "an S3 bucket name"),
        amp_remote_write_policy=one("AmpRemoteWritePolicyArn", POLICY_ARN_RE, "an IAM policy ARN"),
    )


# ---------------------------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------------------------


def _queue_needs(queue: Queue) -> set[str]:
    needs = {""}
    for cr in queue.compute_resources:
        itype = catalog.lookup(cr.instance_type)
        if cr.efa:
            needs.add("efa")
        if itype.is_gpu:
            needs.add("gpu")
    return needs


def components_for(spec: ClusterSpec, role: str, queue: Queue | None = None) -> list[str]:
    """The bootstrap components a node of ``role`` (and ``queue``) runs, in spec order."""
    if role == "compute":
        queues = [queue] if queue is not None else spec.queues
        needs = set().union(*(_queue_needs(q) for q in queues)) if queues else {""}
    else:
        needs = {""}
    chosen = []
    for name in spec.bootstrap.components:
        _seconds, roles, need = BOOTSTRAP_COMPONENTS[name]
        if role in roles and need in needs:
            chosen.append(name)
    return chosen


def bootstrap_timeouts(spec: ClusterSpec) -> dict[str, Any]:
    """Head and compute bootstrap timeouts: estimated from the components, bounded, overridable.

    estimate = BOOTSTRAP_BASE_SECONDS + the seconds of each component the role runs, clamped to
    [BOOTSTRAP_MIN_SECONDS, BOOTSTRAP_MAX_SECONDS]; an override in the spec wins.
    """
    result = {}
    for role, key, override in (
        ("head", "head_node", spec.bootstrap.head_node_timeout),
        ("compute", "compute_node", spec.bootstrap.compute_node_timeout),
    ):
        components = components_for(spec, role) if spec.bootstrap.enabled else []
        raw = BOOTSTRAP_BASE_SECONDS + sum(BOOTSTRAP_COMPONENTS[c][0] for c in components)
        estimate = max(BOOTSTRAP_MIN_SECONDS, min(BOOTSTRAP_MAX_SECONDS, raw))
        result[key] = {
            "seconds": override if override is not None else estimate,
            "estimate": estimate,
            "source": "override" if override is not None else "estimate",
            "components": components,
        }
    return result


def _script_args(spec: ClusterSpec, role: str, queue: Queue | None = None) -> list[str]:
    args = ["--cluster-name", spec.name, "--role", role]
    if queue is not None:
        args += ["--queue", queue.name]
    components = components_for(spec, role, queue)
    args += ["--components", ",".join(components) if components else "none"]
    return args + [str(a) for a in spec.bootstrap.args]


def _custom_actions(script: str | None, args: list[str]) -> dict[str, Any] | None:
    if script is None:
        return None
    if script.startswith("s3://") and "--assets" not in args:
        # Where the script finds what it installs (the collection artifact, its requirements):
        # the S3 folder it was uploaded to, which the nodes may read.
        args = [*args, "--assets", script.rsplit("/", 1)[0]]
    return {"OnNodeConfigured": {"Script": script, "Args": args}}


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def _policies(*lists: list[str]) -> list[dict[str, str]]:
    seen: list[str] = []
    for arns in lists:
        for arn in arns:
            if arn not in seen:
                seen.append(arn)
    return [{"Policy": arn} for arn in seen]


def _put(target: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` unless ``value`` is None or an empty mapping/list (the config holds no nulls)."""
    if value is None or (isinstance(value, (dict, list)) and not value):
        return
    target[key] = value


def _s3_bucket(url: str) -> str | None:
    match = re.match(r"^s3://([^/]+)/", url)
    return match.group(1) if match else None


class _Renderer:
    def __init__(self, parsed: ParsedSpec, outputs: Mapping[str, Any]):
        self.spec = parsed.spec
        self.notes = list(parsed.notes)
        self.warnings = list(parsed.warnings)
        self.issues: list[Issue] = []
        self.infra = _infra(outputs, self.issues)

    def error(self, path: str, problem: str, fix: str = "") -> None:
        self.issues.append(Issue(path, problem, fix))

    # --- shared pieces -----------------------------------------------------------------------

    def head_subnet(self) -> str | None:
        spec, infra = self.spec, self.infra
        subnet = spec.head_node.subnet_id or infra.head_subnet
        if subnet is None and infra.private_subnets:
            subnet = infra.private_subnets[0]
        if subnet is None:
            self.error(
                "head_node.subnet_id",
                "no subnet: the infrastructure outputs have neither HeadNodeSubnetId nor "
                "PrivateSubnetIds",
                "pass the infra stage's outputs as infra_outputs, or set head_node.subnet_id",
            )
        return subnet

    def queue_subnets(self, index: int, queue: Queue) -> list[str]:
        infra = self.infra
        if queue.subnet_ids:
            return list(queue.subnet_ids)
        if queue.multi_az:
            if len(infra.private_subnets) < 2:
                self.warnings.append(
                    f"queues[{index}].multi_az: the stack has {len(infra.private_subnets)} private "
                    "subnet(s); the queue stays in one Availability Zone"
                )
            if infra.private_subnets:
                return list(infra.private_subnets)
        if infra.private_subnets:
            return [infra.private_subnets[0]]
        if infra.head_subnet:
            return [infra.head_subnet]
        self.error(
            f"queues[{index}].subnet_ids",
            "no subnet: the infrastructure outputs have no PrivateSubnetIds or HeadNodeSubnetId",
            "pass the infra stage's outputs as infra_outputs, or set subnet_ids",
        )
        return []

    def bootstrap_script(self) -> str | None:
        boot, bucket = self.spec.bootstrap, self.infra.bucket
        if not boot.enabled:
            self.warnings.append(
                "bootstrap.enabled is false: nodes start without the node bootstrap (EFA check, "
                "container runtime, shared NCCL); configure them with the configure playbook"
            )
            return None
        if boot.script is None:
            if bucket is None:
                self.error(
                    "bootstrap.script",
                    "no script: the infrastructure outputs have no NodeAssetsBucketName",
                    "pass the infra stage's outputs as infra_outputs, or set bootstrap.script",
                )
                return None
            return f"s3://{bucket}/{BOOTSTRAP_KEY}"
        script_bucket = _s3_bucket(boot.script)
        if script_bucket is not None and script_bucket != bucket:
            where = f"the stack's bucket {bucket}" if bucket else "no bucket (NodeAssetsBucketName)"
            self.error(
                "bootstrap.script",
                f"{boot.script} is outside the stack's bucket: nodes get read access to {where} "
                "only",
                f"upload the script to s3://{bucket or '<NodeAssetsBucketName>'}/bootstrap/ "
                "and point bootstrap.script there (or leave it unset)",
            )
        return boot.script

    def s3_access(self) -> list[dict[str, Any]]:
        if self.infra.bucket is None:
            return []
        return [{"BucketName": self.infra.bucket, "EnableWriteAccess": False}]

    def proxy(self) -> dict[str, str] | None:
        if self.spec.proxy is None:
            return None
        return {"HttpProxyAddress": self.spec.proxy.http_proxy_address}

    def remote_write_policy(self) -> str | None:
        wanted = self.spec.monitoring.prometheus_remote_write
        arn = self.infra.amp_remote_write_policy
        if wanted is None:
            if arn:
                self.notes.append(
                    "monitoring.prometheus_remote_write: true (the stack outputs "
                    "AmpRemoteWritePolicyArn); the policy goes on the head node only"
                )
            return arn
        if wanted and not arn:
            self.error(
                "monitoring.prometheus_remote_write",
                "the infrastructure outputs have no AmpRemoteWritePolicyArn",
                "deploy the infra stack with MonitoringType amp-only or amp+amg, or set "
                "prometheus_remote_write: false",
            )
            return None
        return arn if wanted else None

    # --- sections ------------------------------------------------------------------------------

    def head_node(self, script: str | None) -> dict[str, Any]:
        spec, head = self.spec, self.spec.head_node
        networking: dict[str, Any] = {}
        _put(networking, "SubnetId", self.head_subnet())
        ssh: dict[str, Any] = {}
        _put(ssh, "KeyName", head.ssh_key_name)
        if self.infra.head_sg:
            # The stack's group replaces ParallelCluster's managed one (docs/infra.md): it admits
            # SSH from the login group only, and Ssh/AllowedIps no longer opens anything.
            networking["SecurityGroups"] = [self.infra.head_sg]
            if head.allowed_ssh_cidr is not None:
                self.error(
                    "head_node.allowed_ssh_cidr",
                    "has no effect: the stack's HeadNodeSecurityGroupId decides who reaches the "
                    "head node (SSH from the login nodes only)",
                    "remove it and go through a login node or SSM Session Manager, or open SSH "
                    "in the infrastructure stack",
                )
            if head.dcv.enabled:
                self.warnings.append(
                    "head_node.dcv: the stack's head node security group does not open DCV port "
                    f"{head.dcv.port}; add that rule in the infrastructure stack"
                )
            self.notes.append(
                "head node: ingress from the stack's HeadNodeSecurityGroupId (SSH from the login "
                f"nodes only); Ssh/AllowedIps is rendered as {NO_SSH_CIDR}"
            )
            ssh["AllowedIps"] = NO_SSH_CIDR
        else:
            if head.allowed_ssh_cidr is None:
                self.notes.append(
                    "head_node.allowed_ssh_cidr is unset: the head node accepts no SSH from the "
                    f"network (AllowedIps {NO_SSH_CIDR}); use SSM Session Manager or set it"
                )
            ssh["AllowedIps"] = head.allowed_ssh_cidr or NO_SSH_CIDR
        _put(networking, "Proxy", self.proxy())
        iam: dict[str, Any] = {}
        _put(iam, "S3Access", self.s3_access())
        amp = self.remote_write_policy()
        _put(
            iam,
            "AdditionalIamPolicies",
            _policies(
                spec.iam.additional_policies,
                head.additional_iam_policies,
                [amp] if amp else [],
            ),
        )
        node: dict[str, Any] = {
            "InstanceType": head.instance_type,
            "Networking": networking,
            "Ssh": ssh,
            "LocalStorage": {
                "RootVolume": {
                    "Size": head.root_volume_size,
                    "Encrypted": head.root_volume_encrypted,
                    "VolumeType": "gp3",
                }
            },
        }
        if head.dcv.enabled:
            node["Dcv"] = {
                "Enabled": True,
                "Port": head.dcv.port,
                "AllowedIps": head.dcv.allowed_cidr,
            }
        _put(node, "CustomActions", _custom_actions(script, _script_args(spec, "head")))
        _put(node, "Iam", iam)
        node["Imds"] = {"Secured": head.imds_secured}
        return node

    def login_nodes(self, script: str | None) -> dict[str, Any] | None:
        spec = self.spec
        pools = []
        for index, pool in enumerate(spec.login_pools):
            # Login nodes are where users come in (the stack's login group admits SSH from its
            # SshAllowedCidr): a public subnet, so the pool's load balancer faces the internet.
            subnet = pool.subnet_id or next(iter(self.infra.public_subnets), None)
            subnet = subnet or self.infra.head_subnet
            if subnet is None and self.infra.private_subnets:
                subnet = self.infra.private_subnets[0]
            if subnet is None:
                self.error(
                    f"login_pools[{index}].subnet_id",
                    "no subnet: the infrastructure outputs have no PublicSubnetIds or "
                    "HeadNodeSubnetId",
                    "pass the infra stage's outputs as infra_outputs, or set subnet_id",
                )
                continue
            networking: dict[str, Any] = {"SubnetIds": [subnet]}
            ssh: dict[str, Any] = {}
            if self.infra.login_sg:
                # The stack's login group (SSH from its SshAllowedCidr) replaces the managed one;
                # ParallelCluster gives the pool's load balancer the same group.
                networking["SecurityGroups"] = [self.infra.login_sg]
                if pool.allowed_ssh_cidr is not None:
                    self.error(
                        f"login_pools[{index}].allowed_ssh_cidr",
                        "has no effect: the stack's LoginNodeSecurityGroupId decides who may SSH "
                        "to the login nodes",
                        "remove it and set SshAllowedCidr on the infrastructure stack",
                    )
            elif pool.allowed_ssh_cidr is None:
                self.error(
                    f"login_pools[{index}].allowed_ssh_cidr",
                    "is required when the infrastructure outputs have no LoginNodeSecurityGroupId "
                    "(ParallelCluster would open SSH to the head node's AllowedIps)",
                    "set the CIDR your users connect from (a VPN or office range)",
                )
            else:
                ssh["AllowedIps"] = pool.allowed_ssh_cidr
            _put(networking, "Proxy", self.proxy())
            entry: dict[str, Any] = {
                "Name": pool.name,
                "InstanceType": pool.instance_type,
                "Count": pool.count,
                "Networking": networking,
            }
            _put(entry, "Ssh", ssh)
            _put(entry, "GracetimePeriod", pool.gracetime_period)
            if pool.bootstrap:
                _put(entry, "CustomActions", _custom_actions(script, _script_args(spec, "login")))
            policies = _policies(spec.iam.additional_policies, pool.additional_iam_policies)
            if policies:
                entry["Iam"] = {"AdditionalIamPolicies": policies}
            pools.append(entry)
        return {"Pools": pools} if pools else None

    def compute_resource(self, queue: Queue, cr: Any) -> dict[str, Any]:
        itype = catalog.lookup(cr.instance_type)
        entry: dict[str, Any] = {
            "Name": cr.name,
            "InstanceType": cr.instance_type,
            "MinCount": cr.min_count,
            "MaxCount": cr.max_count,
        }
        _put(entry, "DisableSimultaneousMultithreading", cr.disable_simultaneous_multithreading)
        _put(entry, "SpotPrice", cr.spot_price)
        if itype.efa_supported:
            efa: dict[str, Any] = {"Enabled": bool(cr.efa)}
            if cr.efa and itype.gdr_support:
                efa["GdrSupport"] = True
            entry["Efa"] = efa
        placement: dict[str, Any] = {"Enabled": bool(cr.placement_group)}
        _put(placement, "Name", cr.placement_group_name)
        entry["Networking"] = {"PlacementGroup": placement}
        reservation = cr.reservation_id or queue.reservation_id
        if queue.capacity_type in ("CAPACITY_BLOCK", "ODCR") and reservation:
            entry["CapacityReservationTarget"] = {"CapacityReservationId": reservation}
        return entry

    def queue(self, index: int, queue: Queue, script: str | None) -> dict[str, Any]:
        spec = self.spec
        networking: dict[str, Any] = {"SubnetIds": self.queue_subnets(index, queue)}
        # The stack's compute group (all traffic within itself, as EFA needs) replaces the managed
        # one.
        _put(
            networking, "SecurityGroups", [self.infra.compute_sg] if self.infra.compute_sg else None
        )
        _put(networking, "Proxy", self.proxy())
        root: dict[str, Any] = {}
        _put(root, "Size", queue.root_volume_size)
        root["Encrypted"] = queue.root_volume_encrypted
        entry: dict[str, Any] = {
            "Name": queue.name,
            "CapacityType": queue.pcluster_capacity_type,
        }
        _put(entry, "AllocationStrategy", queue.allocation_strategy)
        entry["Networking"] = networking
        entry["ComputeSettings"] = {
            "LocalStorage": {
                "RootVolume": root,
                "EphemeralVolume": {"MountDir": queue.ephemeral_mount_dir},
            }
        }
        _put(entry, "JobExclusiveAllocation", queue.job_exclusive_allocation)
        if any(catalog.lookup(cr.instance_type).is_gpu for cr in queue.compute_resources):
            entry["HealthChecks"] = {"Gpu": {"Enabled": queue.gpu_health_check}}
        _put(entry, "CustomSlurmSettings", dict(queue.custom_slurm_settings))
        _put(entry, "CustomActions", _custom_actions(script, _script_args(spec, "compute", queue)))
        iam: dict[str, Any] = {}
        _put(iam, "S3Access", self.s3_access())
        _put(
            iam,
            "AdditionalIamPolicies",
            _policies(spec.iam.additional_policies, queue.additional_iam_policies),
        )
        _put(entry, "Iam", iam)
        entry["ComputeResources"] = [
            self.compute_resource(queue, cr) for cr in queue.compute_resources
        ]
        return entry

    def scheduling(self, script: str | None) -> dict[str, Any]:
        slurm = self.spec.slurm
        settings: dict[str, Any] = {
            "ScaledownIdletime": slurm.scaledown_idletime,
            "QueueUpdateStrategy": slurm.queue_update_strategy,
            "EnableMemoryBasedScheduling": slurm.enable_memory_based_scheduling,
        }
        _put(settings, "CustomSlurmSettings", [dict(s) for s in slurm.custom_slurm_settings])
        if slurm.database is not None:
            database = {
                "Uri": slurm.database.uri,
                "UserName": slurm.database.user_name,
                "PasswordSecretArn": slurm.database.password_secret_arn,
            }
            _put(database, "DatabaseName", slurm.database.database_name)
            settings["Database"] = database
        return {
            "Scheduler": "slurm",
            "SlurmSettings": settings,
            "SlurmQueues": [self.queue(i, q, script) for i, q in enumerate(self.spec.queues)],
        }

    def shared_storage(self) -> list[dict[str, Any]]:
        storage = self.spec.shared_storage
        entries = []
        if storage.fsx.enabled:
            fsx_id = storage.fsx.file_system_id or self.infra.fsx_id
            if fsx_id is None:
                self.error(
                    "shared_storage.fsx",
                    "the infrastructure outputs have no FsxFileSystemId",
                    "pass the infra stage's outputs, set shared_storage.fsx.file_system_id, or set "
                    "shared_storage.fsx.enabled: false",
                )
            else:
                entries.append(
                    {
                        "Name": storage.fsx.name,
                        "StorageType": "FsxLustre",
                        "MountDir": storage.fsx.mount_dir,
                        "FsxLustreSettings": {"FileSystemId": fsx_id},
                    }
                )
        for efs in storage.efs:
            settings: dict[str, Any] = {}
            if efs.file_system_id:
                settings["FileSystemId"] = efs.file_system_id
            else:
                settings["Encrypted"] = efs.encrypted
                _put(settings, "PerformanceMode", efs.performance_mode)
                _put(settings, "ThroughputMode", efs.throughput_mode)
                _put(settings, "ProvisionedThroughput", efs.provisioned_throughput)
                _put(settings, "DeletionPolicy", efs.deletion_policy)
            entries.append(
                {
                    "Name": efs.name,
                    "StorageType": "Efs",
                    "MountDir": efs.mount_dir,
                    "EfsSettings": settings,
                }
            )
        for ebs in storage.ebs:
            settings = {}
            if ebs.volume_id:
                settings["VolumeId"] = ebs.volume_id
            else:
                settings["VolumeType"] = ebs.volume_type
                settings["Encrypted"] = ebs.encrypted
                _put(settings, "Size", ebs.size)
                _put(settings, "Iops", ebs.iops)
                _put(settings, "Throughput", ebs.throughput)
                _put(settings, "SnapshotId", ebs.snapshot_id)
                _put(settings, "DeletionPolicy", ebs.deletion_policy)
            entries.append(
                {
                    "Name": ebs.name,
                    "StorageType": "Ebs",
                    "MountDir": ebs.mount_dir,
                    "EbsSettings": settings,
                }
            )
        return entries

    def monitoring(self) -> dict[str, Any]:
        mon = self.spec.monitoring
        return {
            "DetailedMonitoring": mon.detailed_monitoring,
            "Logs": {
                "CloudWatch": {
                    "Enabled": mon.cloudwatch_logs,
                    "RetentionInDays": mon.log_retention_days,
                }
            },
            "Dashboards": {"CloudWatch": {"Enabled": mon.cloudwatch_dashboards}},
        }

    def directory_service(self) -> dict[str, Any] | None:
        ds = self.spec.directory_service
        if ds is None:
            return None
        entry: dict[str, Any] = {
            "DomainName": ds.domain_name,
            "DomainAddr": ds.domain_addr,
            "PasswordSecretArn": ds.password_secret_arn,
            "DomainReadOnlyUser": ds.domain_read_only_user,
        }
        _put(entry, "LdapTlsCaCert", ds.ldap_tls_ca_cert)
        _put(entry, "LdapTlsReqCert", ds.ldap_tls_req_cert)
        _put(entry, "GenerateSshKeysForUsers", ds.generate_ssh_keys_for_users)
        return entry

    def tags(self) -> list[dict[str, str]]:
        tags = [
            {"Key": "xpu:cluster-name", "Value": self.spec.name},
            {"Key": "xpu:managed-by", "Value": MANAGED_BY},
        ]
        for key in sorted(self.spec.tags):
            tags.append({"Key": str(key), "Value": str(self.spec.tags[key])})
        return tags

    def config(self, timeouts: dict[str, Any]) -> dict[str, Any]:
        spec = self.spec
        script = self.bootstrap_script()
        image: dict[str, Any] = {"Os": spec.os}
        _put(image, "CustomAmi", spec.custom_ami)
        config: dict[str, Any] = {
            "Region": spec.region,
            "Image": image,
            "Imds": {"ImdsSupport": "v2.0"},
            "HeadNode": self.head_node(script),
        }
        _put(config, "LoginNodes", self.login_nodes(script))
        config["Scheduling"] = self.scheduling(script)
        _put(config, "SharedStorage", self.shared_storage())
        config["Monitoring"] = self.monitoring()
        _put(config, "DirectoryService", self.directory_service())
        if spec.iam.permissions_boundary:
            config["Iam"] = {"PermissionsBoundary": spec.iam.permissions_boundary}
        if spec.bootstrap.enabled or any(
            v is not None
            for v in (spec.bootstrap.head_node_timeout, spec.bootstrap.compute_node_timeout)
        ):
            config["DevSettings"] = {
                "Timeouts": {
                    "HeadNodeBootstrapTimeout": timeouts["head_node"]["seconds"],
                    "ComputeNodeBootstrapTimeout": timeouts["compute_node"]["seconds"],
                }
            }
        config["Tags"] = self.tags()
        return config


def _timeout_messages(spec: ClusterSpec, timeouts: dict[str, Any]) -> tuple[list[str], list[str]]:
    notes, warnings = [], []
    for key, label in (("head_node", "head node"), ("compute_node", "compute node")):
        t = timeouts[key]
        if t["source"] == "override":
            if t["seconds"] < t["estimate"]:
                warnings.append(
                    f"bootstrap.{key}_timeout is {t['seconds']} s, below the {t['estimate']} s "
                    f"estimated for {', '.join(t['components']) or 'the base bootstrap'}: "
                    f"{label}s may be killed before they finish"
                )
        elif spec.bootstrap.enabled:
            notes.append(
                f"{label} bootstrap timeout {t['seconds']} s = {BOOTSTRAP_BASE_SECONDS} s base + "
                + (
                    " + ".join(f"{c} {BOOTSTRAP_COMPONENTS[c][0]} s" for c in t["components"])
                    or "nothing"
                )
                + f", bounded to {BOOTSTRAP_MIN_SECONDS}-{BOOTSTRAP_MAX_SECONDS} s"
            )
    return notes, warnings


def summarize(spec: ClusterSpec) -> dict[str, Any]:
    """Per-queue and per-node-type facts and an approximate cost from the dated price table."""

    def usd(name: str) -> tuple[float, str]:
        found = catalog.price(name)
        # Every catalog type has a price (tests/unit/.../test_catalog.py checks it).
        assert found is not None, name
        return found.usd_per_hour, found.note

    compute = []
    total_max = total_min = 0.0
    for queue in spec.queues:
        for cr in queue.compute_resources:
            itype = catalog.lookup(cr.instance_type)
            per_node, note = usd(itype.name)
            compute.append(
                {
                    "queue": queue.name,
                    "compute_resource": cr.name,
                    "instance_type": itype.name,
                    "accelerators": itype.accelerator_count,
                    "accelerator_model": itype.accelerator_model or "none",
                    "efa_interfaces": itype.efa_interfaces if cr.efa else 0,
                    "min_nodes": cr.min_count,
                    "max_nodes": cr.max_count,
                    "placement_group": bool(cr.placement_group),
                    "capacity_type": queue.capacity_type,
                    "usd_per_hour_per_node": per_node,
                    "usd_per_hour_at_max": round(per_node * cr.max_count, 2),
                    "price_note": note,
                }
            )
            total_max += per_node * cr.max_count
            total_min += per_node * (cr.min_count or 0)
    head_price, head_note = usd(spec.head_node.instance_type)
    login = []
    for pool in spec.login_pools:
        per_node, note = usd(pool.instance_type)
        login.append(
            {
                "pool": pool.name,
                "instance_type": pool.instance_type,
                "count": pool.count,
                "usd_per_hour_per_node": per_node,
                "usd_per_hour": round(per_node * pool.count, 4),
                "price_note": note,
            }
        )
        total_max += per_node * pool.count
        total_min += per_node * pool.count
    total_max += head_price
    total_min += head_price
    return {
        "compute": compute,
        "head_node": {
            "instance_type": spec.head_node.instance_type,
            "usd_per_hour": head_price,
            "price_note": head_note,
        },
        "login_pools": login,
        "usd_per_hour_at_max": round(total_max, 2),
        "usd_per_hour_at_min": round(total_min, 2),
        "prices_date": catalog.PRICES_DATE,
        "prices_region": catalog.PRICES_REGION,
        "prices_approximate": catalog.PRICES_APPROXIMATE,
    }


def find_nulls(value: Any, path: str = "") -> list[str]:
    """Paths of every None (and empty mapping) in ``value``: a rendered config has none."""
    found = []
    if value is None:
        return [path or "<root>"]
    if isinstance(value, Mapping):
        if not value:
            found.append(path or "<root>")
        for key, item in value.items():
            found += find_nulls(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += find_nulls(item, f"{path}[{index}]")
    return found


if HAS_YAML:

    class _IndentedDumper(yaml.SafeDumper):
        """SafeDumper that indents list items under their key (yamllint's indent-sequences)."""

        def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
            return super().increase_indent(flow, False)


def to_yaml(config: Mapping[str, Any], cluster_name: str) -> str:
    """The config as a YAML document: a header comment, ``---``, block style, sequences indented."""
    if not HAS_YAML:  # pragma: no cover
        raise RuntimeError("PyYAML is required to write the cluster configuration")
    body = yaml.dump(
        dict(config),
        Dumper=_IndentedDumper,
        sort_keys=False,
        default_flow_style=False,
        explicit_start=True,
        width=4096,
    )
    return YAML_HEADER.format(version=PCLUSTER_VERSION, name=cluster_name) + body


def render(
    spec: Mapping[str, Any] | ParsedSpec, infra_outputs: Mapping[str, Any] | None
) -> Rendered:
    """Render the ParallelCluster configuration; raise SpecError or RenderError on problems."""
    parsed = spec if isinstance(spec, ParsedSpec) else parse(spec)
    renderer = _Renderer(parsed, infra_outputs or {})
    timeouts = bootstrap_timeouts(parsed.spec)
    config = renderer.config(timeouts)
    if renderer.issues:
        raise RenderError(renderer.issues)
    nulls = find_nulls(config)
    if nulls:  # pragma: no cover - a renderer bug, never a user error
        raise RuntimeError(f"rendered config holds empty values at {', '.join(nulls)}")
    notes, warnings = _timeout_messages(parsed.spec, timeouts)
    if parsed.spec.region != catalog.PRICES_REGION:
        warnings.append(
            f"cost figures are {catalog.PRICES_REGION} on-demand list prices of "
            f"{catalog.PRICES_DATE}; {parsed.spec.region} prices differ"
        )
    return Rendered(
        config=config,
        config_yaml=to_yaml(config, parsed.spec.name),
        summary=summarize(parsed.spec),
        bootstrap_timeouts=timeouts,
        warnings=renderer.warnings + warnings,
        notes=renderer.notes + notes,
    )


# ---------------------------------------------------------------------------------------------
# Offline validation through aws-parallelcluster's own schema
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _offline_aws_env(region: str) -> Iterator[None]:
    """Give pcluster the region it needs and no way to look for credentials; restore after."""
    wanted = {"AWS_DEFAULT_REGION": region, "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _flatten(messages: Any, path: str = "") -> list[tuple[str, str]]:
    """marshmallow's nested error dict -> [(config path, message)]."""
    if isinstance(messages, Mapping):
        found = []
        for key, value in messages.items():
            if isinstance(key, int):
                sub = f"{path}[{key}]"
            elif key == "_schema":
                sub = path
            else:
                sub = f"{path}.{key}" if path else str(key)
            found += _flatten(value, sub)
        return found
    if isinstance(messages, (list, tuple)):
        found = []
        for item in messages:
            found += (
                _flatten(item, path) if isinstance(item, (Mapping, list)) else [(path, str(item))]
            )
        return found
    return [(path, str(messages))]


def load_cluster_schema() -> Any:
    """Import aws-parallelcluster's ClusterSchema; raise PclusterMissingError with the fix."""
    try:
        # pcluster's schema module trips marshmallow's deprecation warnings at import: not ours
        # to fix, and noise in every task that validates.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pcluster.schemas.cluster_schema import ClusterSchema
    except ImportError as exc:
        raise PclusterMissingError(
            f"aws-parallelcluster is not importable by {sys.executable} ({exc}); offline "
            f"validation needs it on the controller: {PCLUSTER_PIP_HINT} (or run the module with "
            "ansible_python_interpreter set to the Python that has it)"
        ) from exc
    return ClusterSchema


def validate_offline(config: Mapping[str, Any], cluster_name: str, region: str) -> None:
    """Check ``config`` against ParallelCluster's schema, offline; raise RenderError on errors.

    ``ClusterSchema.validate`` runs every field, nested schema and schema-level check, and skips
    the top-level post-load step: ``ClusterSchema.load`` would build a ``SlurmClusterConfig``,
    whose constructor calls EC2 DescribeCapacityReservations (and botocore would look for
    credentials). The schema still needs AWS_DEFAULT_REGION, set here for the call only.
    """
    schema_class = load_cluster_schema()
    with _offline_aws_env(region), contextlib.redirect_stdout(io.StringIO()):
        errors = schema_class(cluster_name=cluster_name).validate(dict(config))
    if errors:
        issues = [Issue(path or "<config>", message, "") for path, message in _flatten(errors)]
        raise RenderError(
            issues,
            headline=(
                f"ParallelCluster {PCLUSTER_VERSION}'s schema refuses the rendered config "
                "(paths are config paths; change the spec field that renders them)"
            ),
        )
