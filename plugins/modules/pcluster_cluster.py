#!/usr/bin/python
# Copyright: xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)

DOCUMENTATION = r"""
---
module: pcluster_cluster
short_description: Create, update or delete an AWS ParallelCluster v3 cluster with the pcluster CLI
version_added: 0.1.0
description:
  - Manages one AWS ParallelCluster v3 cluster through the C(pcluster) CLI (package
    C(aws-parallelcluster)) from a cluster configuration YAML, for example the file that
    M(xpu.parallelcluster.cluster_config) renders.
  - O(state=present) creates the cluster when it does not exist. When it exists, C(pcluster
    update-cluster --dryrun true) compares the deployed configuration with the requested one; its
    answer C(No changes found in your cluster configuration) means there is nothing to do
    (RV(changed=false)), otherwise its change set lists what differs and the cluster is updated.
  - Check mode runs the same dry runs (C(--dryrun true)) - ParallelCluster's validators run against
    AWS and the update's change set is returned - and changes nothing. A dry run that would succeed
    exits 1; the module reads its message (C(Request would have succeeded, but DryRun flag is
    set.)), never the exit status. Validation failures are reported with each validator's type,
    level and message. A deletion in check mode is predicted without calling pcluster.
  - An update that one of ParallelCluster's update policies allows only with the compute fleet
    stopped (for example a queue's instance type) is refused, listing those changes, unless
    O(allow_fleet_restart=true); then the module stops the fleet, waits for C(STOPPED), updates,
    waits for C(UPDATE_COMPLETE), starts the fleet and waits for C(RUNNING). Changes that no fleet
    state allows are refused in either case (O(force_update) overrides pcluster's checks).
  - Every wait has a deadline (O(wait_timeout) for each operation) and records progress lines in
    RV(progress).
  - When a creation, update or deletion fails, the result carries the C(describe-cluster) failures,
    the first failed stack resource (C(get-cluster-stack-events)) and the tail of the failing
    node's bootstrap log (C(list-cluster-log-streams), C(get-cluster-log-events)), and the message
    says what to do next.
  - The module runs where the C(pcluster) CLI is installed, normally the controller
    (C(delegate_to=localhost)). The AWS options below reach pcluster as the standard environment
    variables (endpoint, profile, credentials) and O(region) as C(--region).
options:
  name:
    description:
      - Name of the cluster (C(--cluster-name)); a letter, then letters, digits and hyphens, at most
        60 characters.
    type: str
    required: true
  state:
    description:
      - V(present) creates or updates the cluster; V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  config:
    description:
      - Path of the cluster configuration YAML on the host that runs the module.
      - One of O(config) and O(config_content) is required when O(state=present).
    type: path
  config_content:
    description:
      - The cluster configuration YAML as a string; written to a private temporary file for
        pcluster.
    type: str
  wait:
    description:
      - Wait until the creation, update or deletion has finished (or failed).
      - With V(false) the module returns once pcluster has accepted the request. An update that
        restarts the compute fleet always waits.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for each operation (creation, update, deletion, fleet stop, fleet start).
    type: int
    default: 3600
  poll_interval:
    description:
      - Seconds between two status polls while waiting.
    type: int
    default: 30
  suppress_validators:
    description:
      - ParallelCluster validators to suppress (C(--suppress-validators)), each V(ALL) or
        V(type:<ValidatorName>), for example V(type:InstanceTypeBaseAMICompatibleValidator).
      - Suppress only what cannot run where you are (the docs list the local emulator's gaps).
    type: list
    elements: str
    default: []
  rollback_on_failure:
    description:
      - Roll the cluster stack back when the creation fails (C(--rollback-on-failure)). V(false)
        keeps the failed head node for debugging.
    type: bool
    default: true
  allow_fleet_restart:
    description:
      - Allow an update that needs the compute fleet stopped - stop it, update, start it again.
        Running jobs on the compute nodes are terminated.
    type: bool
    default: false
  force_update:
    description:
      - Pass C(--force-update true) - apply the update even when pcluster's update checks refuse
        it. Unsafe; prefer restoring the refused values.
    type: bool
    default: false
  pcluster_path:
    description:
      - Path of the C(pcluster) executable. Default - the one next to the Python that runs the
        module, else the first on C(PATH).
    type: path
  log_tail_lines:
    description:
      - How many lines of the failing node's log to return when an operation fails (V(0) - none).
    type: int
    default: 50
author:
  - xpu.parallelcluster contributors
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    support: full
    description: >-
      Runs C(pcluster create-cluster|update-cluster --dryrun true) and reports its result.
  diff_mode:
    support: full
    description: >-
      The deployed and requested configuration YAML (when the deployed one can be read from S3)
      and the update's change set.
  platform:
    platforms: all
    description: Runs where the pcluster CLI is installed, usually the controller.
requirements:
  - aws-parallelcluster 3.16.1 (the C(pcluster) CLI)
  - boto3 (reads the deployed configuration for C(--diff))
notes:
  - The cluster configuration's C(Region), when set, must equal O(region).
  - A cluster whose creation failed (C(CREATE_FAILED)) cannot be updated; delete it with
    O(state=absent) and run again.
seealso:
  - module: xpu.parallelcluster.pcluster_cluster_info
  - name: pcluster CLI reference
    description: AWS ParallelCluster v3 commands.
    link: https://docs.aws.amazon.com/parallelcluster/latest/ug/pcluster-v3.html
"""

EXAMPLES = r"""
- name: Validate the cluster config against AWS without creating anything (dry run)
  xpu.parallelcluster.pcluster_cluster:
    name: ml1
    region: us-east-1
    config: /srv/clusters/ml1.yaml
  check_mode: true
  delegate_to: localhost
  register: plan

- name: Create or update the cluster, restarting the compute fleet when the update needs it
  xpu.parallelcluster.pcluster_cluster:
    name: ml1
    region: us-east-1
    config: /srv/clusters/ml1.yaml
    allow_fleet_restart: true
    wait_timeout: 5400
  delegate_to: localhost
  register: cluster

- name: Show the head node
  ansible.builtin.debug:
    msg: "{{ cluster.cluster.headNode.privateIpAddress }} ({{ cluster.status }})"

- name: Config given inline, one validator suppressed
  xpu.parallelcluster.pcluster_cluster:
    name: ml1
    config_content: "{{ lookup('ansible.builtin.file', 'ml1.yaml') }}"
    suppress_validators:
      - type:InstanceTypeBaseAMICompatibleValidator
  delegate_to: localhost

- name: Delete the cluster and wait until it is gone
  xpu.parallelcluster.pcluster_cluster:
    name: ml1
    region: us-east-1
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
changed:
  description: Whether the cluster was (or, in check mode, would be) created, updated or deleted.
  returned: always
  type: bool
cluster:
  description:
    - The last C(pcluster describe-cluster) answer, keys as pcluster prints them (camelCase).
    - Null when the cluster does not exist (or is deleted, or would only be created in check mode).
  returned: always
  type: dict
  sample:
    clusterName: ml1
    clusterStatus: CREATE_COMPLETE
    cloudFormationStackStatus: CREATE_COMPLETE
    computeFleetStatus: RUNNING
    version: 3.16.1
    headNode:
      instanceId: i-0123456789abcdef0
      instanceType: m6i.xlarge
      privateIpAddress: 10.0.0.10
status:
  description: The cluster status (C(clusterStatus)) after the task; null when there is no cluster.
  returned: always
  type: str
  sample: UPDATE_COMPLETE
change_set:
  description:
    - What an update changes (or would change), one row per parameter.
    - C(update_policy) is derived from pcluster's update check - V(SUPPORTED) (allowed now),
      V(COMPUTE_FLEET_STOP), V(LOGIN_NODES_STOP), V(HEAD_NODE_STOP) or V(UNSUPPORTED); C(message)
      is pcluster's reason and required action for a refused change.
  returned: always
  type: list
  elements: dict
  sample:
    - parameter: Scheduling.SlurmQueues[gpu].ComputeResources[p5].MaxCount
      current_value: "2"
      requested_value: "4"
      update_policy: SUPPORTED
      message: ""
    - parameter: Scheduling.SlurmQueues[gpu].ComputeResources[p5].InstanceType
      current_value: p5.48xlarge
      requested_value: p5en.48xlarge
      update_policy: COMPUTE_FLEET_STOP
      message: >-
        All compute nodes must be stopped. Stop the compute fleet with the pcluster
        update-compute-fleet command
validation_messages:
  description:
    - ParallelCluster validator messages - below the failure level on success (warnings), the
      failing ones when validation failed. Each has C(level), C(type) and C(message).
  returned: always
  type: list
  elements: dict
  sample:
    - level: WARNING
      type: AmiOsCompatibleValidator
      message: Could not check node AMI ami-0123 OS and cluster OS ubuntu2204 compatibility ...
fleet_restart:
  description: Whether the compute fleet was (or, in check mode, would be) stopped and restarted.
  returned: always
  type: bool
progress:
  description: Progress lines of this run (seconds since the start, then what happened).
  returned: always
  type: list
  elements: str
  sample:
    - "+0s cluster ml1: create-cluster accepted (CREATE_IN_PROGRESS)"
    - "+0s cluster ml1: CREATE_IN_PROGRESS, fleet UNKNOWN"
    - "+960s cluster ml1: CREATE_COMPLETE, fleet RUNNING"
failures:
  description: The C(failures) of C(describe-cluster) (C(failureCode), C(failureReason)).
  returned: always
  type: list
  elements: dict
  sample:
    - failureCode: HeadNodeBootstrapFailure
      failureReason: Failed to set up the head node.
failed_resource:
  description: The first failed resource among the cluster stack's events.
  returned: when an operation failed and the stack events could be read
  type: dict
  sample:
    logical_resource_id: HeadNodeWaitCondition
    resource_type: "AWS::CloudFormation::WaitCondition"
    resource_status: CREATE_FAILED
    reason: Failed to run chef recipe ...
diagnosis_notes:
  description: Parts of the failure diagnosis that could not be read, and why.
  returned: when an operation failed and part of its diagnosis was unavailable
  type: list
  elements: str
  sample:
    - "no bootstrap log stream found (CloudWatch logs disabled?)"
log_stream:
  description: The log stream whose tail is in RV(log_tail).
  returned: when an operation failed and a bootstrap log stream was found
  type: str
  sample: ip-10-0-0-10.i-0123456789abcdef0.cfn-init
log_tail:
  description: The last O(log_tail_lines) lines of the failing node's bootstrap log.
  returned: always
  type: list
  elements: str
diff:
  description: Deployed and requested configuration YAML, and the change set as text.
  returned: when run with C(--diff)
  type: list
  elements: dict
msg:
  description: What happened, in words.
  returned: always
  type: str
  sample: cluster ml1 is up to date
"""

import os
import re
from typing import Any

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.xpu.parallelcluster.plugins.module_utils import pcluster_cli as pc

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # AnsibleAWSModule reports a missing botocore
    BotoCoreError = ClientError = OSError  # type: ignore[assignment,misc]

NAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{0,59}$")
SUPPRESS_RE = re.compile(r"^(ALL|type:[A-Za-z0-9]+)$")


class Fail(Exception):
    """Ends the run through fail_json with ``msg`` and extra result keys."""

    def __init__(self, msg: str, **extra: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.extra = extra


class ClusterTask:
    """One run of the module: state present or absent for cluster ``name``."""

    def __init__(self, module: AnsibleAWSModule) -> None:
        self.module = module
        self.p = module.params
        self.name: str = self.p["name"]
        self.clock = pc.Clock()
        self.progress = pc.Progress(self.clock, started=self.clock.now())
        self.result: dict[str, Any] = {
            "changed": False,
            "cluster": None,
            "status": None,
            "change_set": [],
            "validation_messages": [],
            "fleet_restart": False,
            "progress": self.progress.lines,
            "failures": [],
            "log_tail": [],
        }
        executable = pc.find_pcluster(self.p["pcluster_path"])
        self.cli = pc.PclusterCli(
            executable, region=self.p["region"], env=pc.aws_environment(self.p)
        )
        self.config_path: str | None = None
        self.desired: str = ""

    # ---------------------------------------------------------------- helpers

    def load_config(self) -> None:
        if self.p["config_content"] is not None:
            path = os.path.join(self.module.tmpdir, f"{self.name}-cluster-config.yaml")
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                f.write(self.p["config_content"])
            self.config_path = path
            self.desired = self.p["config_content"]
            return
        path = self.p["config"]
        if not os.path.isfile(path):
            raise Fail(
                f"cluster {self.name}: config {path} is not a file; render it first "
                "(xpu.parallelcluster.cluster_config with dest) or pass config_content"
            )
        with open(path, encoding="utf-8") as f:
            self.desired = f.read()
        self.config_path = path

    def describe(self) -> dict[str, Any] | None:
        try:
            return self.cli.describe_cluster(self.name)
        except pc.PclusterNotFound:
            return None

    def wait(self, goal: str) -> dict[str, Any] | None:
        return pc.wait_for_cluster(
            self.cli,
            self.name,
            goal,
            timeout=self.p["wait_timeout"],
            poll_interval=self.p["poll_interval"],
            progress=self.progress,
            clock=self.clock,
        )

    def set_cluster(self, cluster: dict[str, Any] | None) -> None:
        self.result["cluster"] = cluster
        self.result["status"] = cluster.get("clusterStatus") if cluster else None
        if cluster and cluster.get("failures"):
            self.result["failures"] = list(cluster["failures"])

    def deployed_config(self, cluster: dict[str, Any]) -> str | None:
        """The deployed YAML from S3, for --diff only; a warning when it cannot be read."""
        url = (cluster.get("clusterConfiguration") or {}).get("url", "")
        try:
            return pc.fetch_deployed_config(self.module.client("s3"), url)
        except (ValueError, KeyError, UnicodeDecodeError, BotoCoreError, ClientError) as exc:
            self.module.warn(
                f"cluster {self.name}: deployed config not shown in the diff ({exc}); "
                "the change set below is pcluster's own comparison"
            )
            return None

    def diff(
        self, before: str | None, after: str, rows: list[dict[str, Any]], header: str
    ) -> list[dict[str, Any]]:
        diffs: list[dict[str, Any]] = []
        if before is not None or not after:
            diffs.append(
                {
                    "before": before or "",
                    "after": after,
                    "before_header": f"cluster {self.name} ({header})",
                    "after_header": self.p["config"] or "config_content",
                }
            )
        if rows:
            lines = [f"pcluster change set for cluster {self.name}:"]
            lines += [
                f"  {r['parameter']}: {r['current_value']} -> {r['requested_value']} "
                f"[{r['update_policy']}]"
                for r in rows
            ]
            diffs.append({"prepared": "\n".join(lines) + "\n"})
        return diffs

    def validation(self, messages: list[dict[str, Any]]) -> None:
        """Keep validator messages below the failure level; surface warnings as warnings."""
        self.result["validation_messages"] = list(messages)
        for message in messages:
            if message.get("level") == "WARNING":
                self.module.warn(
                    f"cluster {self.name}: {message.get('type')}: {message.get('message')}"
                )

    def failure(self, exc: pc.ClusterStateError, next_step: str) -> Fail:
        """A Fail that explains a failed or timed-out operation."""
        cluster = exc.cluster
        self.set_cluster(cluster)
        if isinstance(exc, pc.WaitTimeout):
            return Fail(
                f"{exc.message}; the operation goes on in AWS: re-run to keep waiting, or raise "
                "wait_timeout",
                **self.result,
            )
        report = pc.diagnose_failure(self.cli, self.name, cluster, self.p["log_tail_lines"])
        self.result["failures"] = report["failures"]
        self.result["failed_resource"] = report["failed_resource"]
        self.result["log_stream"] = report["log_stream"]
        self.result["log_tail"] = report["log_tail"]
        if report["notes"]:
            self.result["diagnosis_notes"] = report["notes"]
        return Fail(pc.failure_message(self.name, exc.status, report, next_step), **self.result)

    def validation_failure(self, exc: pc.PclusterValidationError) -> Fail:
        self.result["validation_messages"] = exc.errors
        return Fail(
            f"cluster {self.name}: the config failed ParallelCluster validation: "
            f"{pc.format_validation_messages(exc.errors)}; fix {self.p['config'] or 'the config'} "
            "and re-run (suppress_validators only for checks that cannot run where you are)",
            **self.result,
        )

    # ---------------------------------------------------------------- present

    def present(self) -> dict[str, Any]:
        self.load_config()
        cluster = self.describe()
        if cluster and cluster.get("clusterStatus") in pc.IN_PROGRESS:
            status = cluster["clusterStatus"]
            if not self.p["wait"]:
                self.set_cluster(cluster)
                raise Fail(
                    f"cluster {self.name} is {status}; re-run when it has settled, or set "
                    "wait: true to wait for it",
                    **self.result,
                )
            self.progress.add(f"cluster {self.name}: {status}, waiting for it to settle")
            try:
                cluster = self.wait("settle")
            except pc.PclusterNotFound:
                cluster = None
            except pc.WaitTimeout as exc:
                raise self.failure(exc, "") from exc
        if cluster is None:
            return self.create()
        status = str(cluster.get("clusterStatus"))
        if status == "CREATE_FAILED":
            exc = pc.ClusterFailed(f"cluster {self.name}: {status}", cluster, status)
            raise self.failure(
                exc,
                "a cluster whose creation failed cannot be updated: delete it (state: absent), "
                "fix the cause and re-run",
            )
        if status == "DELETE_FAILED":
            exc = pc.ClusterFailed(f"cluster {self.name}: {status}", cluster, status)
            raise self.failure(
                exc, "finish the deletion (state: absent) after removing what blocks it"
            )
        if status == "UPDATE_FAILED":
            self.module.warn(
                f"cluster {self.name}: its last update failed and was rolled back; updating again"
            )
        return self.update(cluster)

    def create(self) -> dict[str, Any]:
        assert self.config_path is not None
        try:
            answer = self.cli.create_cluster(
                self.name,
                self.config_path,
                dryrun=self.module.check_mode,
                suppress_validators=self.p["suppress_validators"],
                rollback_on_failure=self.p["rollback_on_failure"],
            )
        except pc.PclusterValidationError as exc:
            raise self.validation_failure(exc) from exc
        self.result["changed"] = True
        if self.module._diff:
            self.result["diff"] = self.diff("", self.desired, [], "does not exist")
        if self.module.check_mode:
            if not isinstance(answer, pc.DryRun):
                raise Fail(f"cluster {self.name}: the create dry run gave no dry-run answer")
            self.validation(answer.validation_messages)
            self.result["msg"] = f"cluster {self.name} would be created ({answer.message})"
            return self.result
        assert isinstance(answer, dict)
        self.validation(answer.get("validationMessages") or [])
        accepted = (answer.get("cluster") or {}).get("clusterStatus", "CREATE_IN_PROGRESS")
        self.progress.add(f"cluster {self.name}: create-cluster accepted ({accepted})")
        if not self.p["wait"]:
            self.set_cluster(self.describe())
            self.result["msg"] = f"cluster {self.name}: creation started"
            return self.result
        try:
            cluster = self.wait("create")
        except pc.ClusterStateError as exc:
            raise self.failure(
                exc,
                "fix the cause and re-run; the failed cluster must be deleted first "
                "(state: absent) - set rollback_on_failure: false to keep its head node for "
                "debugging",
            ) from exc
        self.set_cluster(cluster)
        self.result["msg"] = f"cluster {self.name} created"
        return self.result

    def update(self, cluster: dict[str, Any]) -> dict[str, Any]:
        assert self.config_path is not None
        self.set_cluster(cluster)
        try:
            answer = self.cli.update_cluster(
                self.name,
                self.config_path,
                dryrun=True,
                force_update=self.p["force_update"],
                suppress_validators=self.p["suppress_validators"],
            )
        except pc.PclusterNoChanges:
            self.result["msg"] = f"cluster {self.name} is up to date"
            return self.result
        except pc.PclusterValidationError as exc:
            raise self.validation_failure(exc) from exc
        except pc.PclusterUpdateError as exc:
            rows = pc.change_rows(exc.change_set, exc.errors)
            self.result["change_set"] = rows
            self.check_refusal(exc, rows)
            self.result["fleet_restart"] = True
        else:
            if not isinstance(answer, pc.DryRun):
                raise Fail(f"cluster {self.name}: the update dry run gave no dry-run answer")
            self.result["change_set"] = pc.change_rows(answer.change_set)
            self.validation(answer.validation_messages)
            if not answer.change_set:
                self.result["msg"] = f"cluster {self.name} is up to date"
                return self.result
        rows = self.result["change_set"]
        self.result["changed"] = True
        if self.module._diff:
            before = self.deployed_config(cluster)
            self.result["diff"] = self.diff(before, self.desired, rows, "deployed")
        if self.module.check_mode:
            restart = " with a compute fleet restart" if self.result["fleet_restart"] else ""
            self.result["msg"] = f"cluster {self.name} would be updated{restart}"
            return self.result
        return self.apply_update(cluster)

    def check_refusal(self, exc: pc.PclusterUpdateError, rows: list[dict[str, Any]]) -> None:
        """Stop unless stopping the compute fleet is all the refused changes need, and allowed."""
        refused = [r for r in rows if r["update_policy"] != "SUPPORTED"]
        listing = "; ".join(
            f"{r['parameter']} ({r['current_value']} -> {r['requested_value']})" for r in refused
        )
        if not pc.needs_only_fleet_stop(exc.errors):
            reasons = "; ".join(
                f"{r['parameter']} ({r['current_value']} -> {r['requested_value']}): {r['message']}"
                for r in refused
            )
            raise Fail(
                f"cluster {self.name}: pcluster refuses the update: {reasons}; restore those "
                "values in the config (force_update: true overrides pcluster's checks, at your "
                "own risk)",
                **self.result,
            )
        if not self.p["allow_fleet_restart"]:
            raise Fail(
                f"cluster {self.name}: the update needs the compute fleet stopped for: {listing}; "
                "set allow_fleet_restart: true to stop the fleet, update and start it again "
                "(running jobs are lost), or stop it yourself (pcluster update-compute-fleet "
                "--status STOP_REQUESTED) and re-run",
                **self.result,
            )

    def fleet(self, cluster: dict[str, Any], action: str) -> None:
        table = pc.FLEET_STOP if action == "stop" else pc.FLEET_START
        request, target = table.get(pc.scheduler_of(cluster), table["slurm"])
        self.cli.update_compute_fleet(self.name, request)
        self.progress.add(f"cluster {self.name}: compute fleet {request}")
        pc.wait_for_fleet(
            self.cli,
            self.name,
            target,
            timeout=self.p["wait_timeout"],
            poll_interval=self.p["poll_interval"],
            progress=self.progress,
            clock=self.clock,
        )

    def apply_update(self, cluster: dict[str, Any]) -> dict[str, Any]:
        assert self.config_path is not None
        restart = self.result["fleet_restart"]
        if restart and not self.p["wait"]:
            self.module.warn("wait: false is ignored: a fleet restart waits for the update")
        if restart:
            try:
                self.fleet(cluster, "stop")
            except (pc.WaitTimeout, pc.PclusterError) as exc:
                raise Fail(
                    f"cluster {self.name}: stopping the compute fleet failed ({exc.message}); "
                    "the update was not started - re-run once the fleet has stopped, or start "
                    "it again with pcluster update-compute-fleet --status START_REQUESTED",
                    **self.result,
                ) from exc
        error: Fail | None = None
        try:
            answer = self.cli.update_cluster(
                self.name,
                self.config_path,
                force_update=self.p["force_update"],
                suppress_validators=self.p["suppress_validators"],
            )
            assert isinstance(answer, dict)
            self.validation(answer.get("validationMessages") or [])
            if answer.get("changeSet") and not self.result["change_set"]:
                self.result["change_set"] = pc.change_rows(answer["changeSet"])
            self.progress.add(f"cluster {self.name}: update-cluster accepted")
            if self.p["wait"] or restart:
                self.set_cluster(self.wait("update"))
            else:
                self.set_cluster(self.describe())
        except pc.ClusterStateError as exc:
            error = self.failure(
                exc, "CloudFormation rolled the cluster back; fix the cause and re-run"
            )
        except pc.PclusterValidationError as exc:
            error = self.validation_failure(exc)
        except pc.PclusterError as exc:
            error = Fail(f"cluster {self.name}: {exc.message}", **exc.details(), **self.result)
        if restart:
            try:
                self.fleet(cluster, "start")
            except (pc.PclusterError, pc.ClusterStateError) as exc:
                message = getattr(exc, "message", str(exc))
                restart_note = (
                    f"the compute fleet did not start again ({message}): start it with "
                    "pcluster update-compute-fleet --status START_REQUESTED"
                )
                if error is not None:
                    error.msg += f"; {restart_note}"
                else:
                    error = Fail(f"cluster {self.name} updated, but {restart_note}", **self.result)
        if error is not None:
            error.extra.update(progress=self.progress.lines)
            raise error
        self.result["msg"] = f"cluster {self.name} updated" + (
            " (compute fleet stopped and started again)" if restart else ""
        )
        return self.result

    # ---------------------------------------------------------------- absent

    def absent(self) -> dict[str, Any]:
        cluster = self.describe()
        if cluster is None:
            self.result["msg"] = f"cluster {self.name} does not exist"
            return self.result
        self.set_cluster(cluster)
        status = str(cluster.get("clusterStatus"))
        if status == "DELETE_IN_PROGRESS":
            if not self.p["wait"] or self.module.check_mode:
                self.result["msg"] = f"cluster {self.name} is already being deleted"
                return self.result
            self.progress.add(f"cluster {self.name}: already DELETE_IN_PROGRESS, waiting")
            return self.wait_deleted(changed=False)
        self.result["changed"] = True
        if self.module._diff:
            before = self.deployed_config(cluster)
            self.result["diff"] = [
                {
                    "before": before if before is not None else f"cluster {self.name}\n",
                    "after": "",
                    "before_header": f"cluster {self.name} (deployed)",
                    "after_header": "deleted",
                }
            ]
        if self.module.check_mode:
            self.result["msg"] = f"cluster {self.name} would be deleted"
            return self.result
        answer = self.cli.delete_cluster(self.name)
        accepted = (answer.get("cluster") or {}).get("clusterStatus", "DELETE_IN_PROGRESS")
        self.progress.add(f"cluster {self.name}: delete-cluster accepted ({accepted})")
        if not self.p["wait"]:
            self.set_cluster(self.describe())
            self.result["msg"] = f"cluster {self.name}: deletion started"
            return self.result
        return self.wait_deleted(changed=True)

    def wait_deleted(self, changed: bool) -> dict[str, Any]:
        try:
            self.wait("delete")
        except pc.ClusterStateError as exc:
            raise self.failure(
                exc,
                "remove what blocks the deletion (see the failed resource) and re-run with "
                "state: absent",
            ) from exc
        self.set_cluster(None)
        self.result["changed"] = changed
        self.result["msg"] = f"cluster {self.name} deleted"
        return self.result


def argument_spec() -> dict[str, Any]:
    return dict(
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        config=dict(type="path"),
        config_content=dict(type="str"),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=3600),
        poll_interval=dict(type="int", default=30),
        suppress_validators=dict(type="list", elements="str", default=[]),
        rollback_on_failure=dict(type="bool", default=True),
        allow_fleet_restart=dict(type="bool", default=False),
        force_update=dict(type="bool", default=False),
        pcluster_path=dict(type="path"),
        log_tail_lines=dict(type="int", default=50),
    )


def check_options(module: AnsibleAWSModule) -> None:
    p = module.params
    if not NAME_RE.match(p["name"]):
        module.fail_json(
            msg=f"name {p['name']!r}: a cluster name starts with a letter and has at most 60 "
            "letters, digits and hyphens"
        )
    bad = [v for v in p["suppress_validators"] if not SUPPRESS_RE.match(v)]
    if bad:
        module.fail_json(
            msg=f"suppress_validators: {bad} - each entry is ALL or type:<ValidatorName>, "
            "for example type:InstanceTypeBaseAMICompatibleValidator"
        )
    for option in ("wait_timeout", "poll_interval"):
        if p[option] < 1:
            module.fail_json(msg=f"{option}: give a positive number of seconds, not {p[option]}")
    if p["log_tail_lines"] < 0:
        module.fail_json(msg="log_tail_lines: give 0 or more lines")


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("config", "config_content")],
        required_if=[("state", "present", ("config", "config_content"), True)],
        supports_check_mode=True,
    )
    check_options(module)
    task = None
    try:
        task = ClusterTask(module)
        result = task.present() if module.params["state"] == "present" else task.absent()
    except Fail as exc:
        extra = {k: v for k, v in exc.extra.items() if k != "msg"}
        module.fail_json(msg=exc.msg, **extra)
    except pc.PclusterError as exc:
        extra = {k: v for k, v in (task.result if task else {}).items() if k != "msg"}
        extra.update(exc.details())
        module.fail_json(msg=f"cluster {module.params['name']}: {exc.message}", **extra)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
