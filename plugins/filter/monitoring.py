# Copyright: xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)
"""Filters ``monitoring_plan`` and ``monitoring_file_sd``: where playbooks/monitoring.yml puts
Prometheus and Grafana, and the file discovery targets of a cluster's inventory."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: monitoring_plan
short_description: Where a cluster's monitoring runs, from the infra stack's outputs
version_added: 0.1.0
description:
  - Reads the infra stack's outputs (C(MonitoringType), C(AmpRemoteWriteUrl),
    C(MonitoringInstanceId), C(AmgWorkspaceId), ...) and the cluster spec, and returns the plan
    C(playbooks/monitoring.yml) follows - the monitoring type, the host that runs Prometheus
    (C(head) or C(monitoring)), the SigV4 remote_write entry of the amp types, and the GPU and EFA
    instance types of the cluster's queues (from the instance catalog) for the C(dcgm) and C(efa)
    scrape jobs.
  - Fails with the missing output and what to do when the stack cannot serve the type. The legacy
    spelling C(amp) is read as C(amp-only).
options:
  _input:
    description: The infra stack's outputs (a dict; empty when the stack has none).
    type: dict
    required: true
  spec:
    description: The cluster spec (C(name), C(region), C(queues)).
    type: dict
    default: {}
  monitoring_type:
    description: Overrides the stack's C(MonitoringType).
    type: str
    default: ""
  sd_mode:
    description: Prometheus discovery, C(ec2) or C(file).
    type: str
    default: ec2
  region:
    description: Region when the spec names none.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: The plan
  ansible.builtin.set_fact:
    plan: >-
      {{ xpu_pc_infra_outputs | xpu.parallelcluster.monitoring_plan(spec=xpu_pc_cluster_spec) }}
"""

RETURN = r"""
_value:
  description: C(cluster), C(region), C(type), C(prometheus_on), C(sd_mode), C(gpu_types),
    C(efa_types), C(remote_write) (a list of Prometheus remote_write entries), C(outputs).
  type: dict
"""

from ansible.errors import AnsibleFilterError

try:
    from ansible_collections.xpu.parallelcluster.plugins.module_utils import catalog
except ImportError:  # pragma: no cover - unit tests import the tree directly
    from plugins.module_utils import catalog  # type: ignore[no-redef]

TYPES = ("none", "self-hosting", "amp-only", "amp+amg")
# Output each type needs, and why.
NEEDS = {
    "self-hosting": (("MonitoringInstanceId", "the instance Prometheus and Grafana go on"),),
    "amp-only": (("AmpRemoteWriteUrl", "where Prometheus writes"),),
    "amp+amg": (
        ("AmpRemoteWriteUrl", "where Prometheus writes"),
        ("AmpQueryUrl", "the Grafana data source"),
        ("AmgWorkspaceId", "the workspace the dashboards go to"),
    ),
}
# Remote write to AMP: AWS's recommended queue settings for a Prometheus server.
AMP_QUEUE = {"max_samples_per_send": 1000, "max_shards": 200, "capacity": 2500}
NODE_TYPES = {"HeadNode": "head", "LoginNode": "login", "Compute": "compute"}
PORTS = {"node": 9100, "efa": 9101, "slurm": 9102, "dcgm": 9400}


def _instance_types(spec):
    found = []
    for queue in spec.get("queues") or []:
        for resource in queue.get("compute_resources") or []:
            itype = resource.get("instance_type")
            if itype and itype not in found:
                found.append(itype)
    return found


def monitoring_plan(outputs, spec=None, monitoring_type="", sd_mode="ec2", region=""):
    outputs = dict(outputs or {})
    spec = dict(spec or {})
    chosen = monitoring_type or outputs.get("MonitoringType") or "none"
    if chosen == "amp":
        chosen = "amp-only"
    if chosen not in TYPES:
        raise AnsibleFilterError(
            f"monitoring_plan: monitoring type {chosen!r} is not one of {', '.join(TYPES)}:"
            " set xpu_pc_monitoring_type (or the infra stack's monitoring.type) to one of them"
        )
    if sd_mode not in ("ec2", "file"):
        raise AnsibleFilterError(
            f"monitoring_plan: xpu_pc_prometheus_sd_mode is {sd_mode!r}: use ec2 (EC2 discovery on"
            " the ParallelCluster tags) or file (targets from the inventory)"
        )
    missing = [f"{key} ({why})" for key, why in NEEDS.get(chosen, ()) if not outputs.get(key)]
    if missing:
        raise AnsibleFilterError(
            f"monitoring_plan: monitoring type {chosen} needs the infra stack outputs"
            f" {', '.join(missing)}; the outputs have {sorted(outputs) or 'nothing'}. Deploy the"
            f" infra stage (playbooks/infra.yml) with monitoring type {chosen}, or set"
            " xpu_pc_monitoring_type to the type the stack was deployed with"
        )
    region = spec.get("region") or region
    gpu, efa = [], []
    for itype in _instance_types(spec):
        try:
            entry = catalog.lookup(itype)
        except catalog.UnknownInstanceTypeError as exc:
            raise AnsibleFilterError(f"monitoring_plan: {exc}") from exc
        if entry.is_gpu:
            gpu.append(entry.name)
        if entry.efa_interfaces > 0:
            efa.append(entry.name)
    remote_write = []
    if chosen in ("amp-only", "amp+amg"):
        if not region:
            raise AnsibleFilterError(
                "monitoring_plan: remote_write to AMP signs with SigV4 and needs the region:"
                " set the spec's region (or xpu_pc_region)"
            )
        remote_write = [
            {
                "url": outputs["AmpRemoteWriteUrl"],
                "sigv4": {"region": region},
                "queue_config": dict(AMP_QUEUE),
            }
        ]
    return {
        "cluster": spec.get("name", ""),
        "region": region,
        "type": chosen,
        "prometheus_on": "monitoring" if chosen == "self-hosting" else "head",
        "sd_mode": sd_mode,
        "gpu_types": sorted(gpu),
        "efa_types": sorted(efa),
        "remote_write": remote_write,
        "outputs": outputs,
    }


def monitoring_file_sd(nodes, plan):
    """file_sd groups per scrape job for ``nodes`` (host variable dicts of the inventory's head,
    login and compute hosts), with the labels EC2 discovery would give."""
    jobs = {"node": [], "slurm": [], "efa": [], "dcgm": []}
    for node in nodes or []:
        name = node.get("inventory_hostname", "")
        node_type = NODE_TYPES.get(node.get("pc_node_type", ""))
        if node_type is None:
            raise AnsibleFilterError(
                f"monitoring_file_sd: host {name} has no parallelcluster:node-type"
                f" (pc_node_type {node.get('pc_node_type')!r}); the inventory must come from the"
                " cluster's tags (inventories/aws or inventories/lab)"
            )
        address = node.get("private_ip_address") or node.get("ansible_host") or name
        labels = {
            "node_type": node_type,
            "hostname": str(node.get("private_dns_name") or name).split(".")[0],
            "instance_id": node.get("instance_id", ""),
            "instance_type": node.get("instance_type", ""),
            "queue": node.get("pc_queue", ""),
            "compute_resource": node.get("pc_compute_resource", ""),
        }
        labels = {k: v for k, v in labels.items() if v}
        wanted = ["node"]
        if node_type == "head":
            wanted.append("slurm")
        if node_type == "compute":
            itype = node.get("instance_type", "")
            # The EFA exporter runs on EFA types, and wherever it is told not to skip.
            if itype in plan.get("efa_types", []) or not node.get(
                "efa_exporter_skip_without_devices", True
            ):
                wanted.append("efa")
            if itype in plan.get("gpu_types", []):
                wanted.append("dcgm")
        for job in wanted:
            jobs[job].append({"targets": [f"{address}:{PORTS[job]}"], "labels": labels})
    return {job: groups for job, groups in jobs.items() if groups}


class FilterModule:
    def filters(self):
        return {"monitoring_plan": monitoring_plan, "monitoring_file_sd": monitoring_file_sd}
