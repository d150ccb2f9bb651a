# Copyright: xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)
"""Lookup plugin: facts about EC2 instance types from the collection's instance catalog."""

from __future__ import annotations

DOCUMENTATION = r"""
name: instance_catalog
author:
  - xpu.parallelcluster contributors
short_description: Facts about EC2 instance types from the collection's instance catalog
description:
  - Returns, for each instance type given, the catalog entry the cluster stage renders from
    (C(plugins/module_utils/catalog.py)) - accelerators, NVLink, EFA interfaces, network, CPU
    architecture, CUDA architecture, placement-group support and expected acceptance figures.
  - Roles use it so that no instance fact is written twice (for example the EFA device count a
    node must have).
  - An unknown type fails with the catalog's "did you mean" suggestion.
options:
  _terms:
    description: Instance type names, for example V(p6-b200.48xlarge).
    required: true
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: EFA devices a p5en node must show
  ansible.builtin.debug:
    msg: "{{ lookup('xpu.parallelcluster.instance_catalog', 'p5en.48xlarge').efa_interfaces }}"

- name: The catalog entry of this node's type (aws_ec2 inventory sets instance_type)
  ansible.builtin.set_fact:
    node_type_facts: "{{ lookup('xpu.parallelcluster.instance_catalog', instance_type) }}"
"""

RETURN = r"""
_raw:
  description: One dict per instance type given.
  type: list
  elements: dict
  contains:
    name:
      description: Instance type.
      type: str
    family:
      description: Family, for example C(p5en).
      type: str
    vcpus:
      description: vCPUs.
      type: int
    memory_gib:
      description: Memory in GiB.
      type: float
    arch:
      description: CPU architecture, C(x86_64) or C(arm64).
      type: str
    network_gbps:
      description: Network bandwidth of the node in Gbit/s.
      type: float
    accelerator_kind:
      description: C(nvidia-gpu), C(neuron) or C(none).
      type: str
    accelerator_model:
      description: Accelerator model, or null.
      type: str
    accelerator_count:
      description: Accelerators per node.
      type: int
    accelerator_memory_gib:
      description: Memory per accelerator in GiB.
      type: float
    nvlink_generation:
      description: NVLink generation (0 without NVLink).
      type: int
    nvlink_GBps_per_gpu:
      description: NVLink bandwidth per GPU and direction in GB/s.
      type: float
    efa_interfaces:
      description: EFA interfaces (devices) the type has; 0 without EFA.
      type: int
    efa_gbps_per_interface:
      description: Bandwidth per EFA interface in Gbit/s, or null.
      type: float
    gdr_support:
      description: GPUDirect RDMA over EFA.
      type: bool
    placement_group:
      description: Whether the type can join a cluster placement group.
      type: bool
    cuda_arch:
      description: CUDA architecture (C(sm_90), C(sm_100)...), or null.
      type: str
    line_rate_GBps:
      description: Node network bandwidth in GB/s (network_gbps / 8).
      type: float
    expected:
      description: Expected acceptance figures in GB/s, by collective and then by node count.
      type: dict
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible_collections.xpu.parallelcluster.plugins.module_utils import catalog

FIELDS = (
    "name",
    "vcpus",
    "memory_gib",
    "arch",
    "network_gbps",
    "accelerator_kind",
    "accelerator_model",
    "accelerator_count",
    "accelerator_memory_gib",
    "nvlink_generation",
    "nvlink_GBps_per_gpu",
    "efa_interfaces",
    "efa_gbps_per_interface",
    "gdr_support",
    "placement_group",
    "cuda_arch",
)


def entry_facts(name: str) -> dict:
    """The catalog entry for ``name`` as plain data."""
    entry = catalog.lookup(name)
    facts = {field: getattr(entry, field) for field in FIELDS}
    facts["family"] = entry.family
    facts["line_rate_GBps"] = entry.line_rate_GBps
    facts["expected"] = {
        collective: {int(n): float(v) for n, v in figures.items()}
        for collective, figures in entry.expected.items()
    }
    return facts


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        results = []
        for term in terms:
            try:
                results.append(entry_facts(str(term).strip()))
            except catalog.UnknownInstanceTypeError as exc:
                raise AnsibleLookupError(f"instance_catalog: {exc}") from exc
        return results
