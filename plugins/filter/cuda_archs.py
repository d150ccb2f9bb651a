# Copyright: xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)
"""Filter ``cuda_archs``: the CUDA architectures of a cluster spec's queues, from the catalog."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: cuda_archs
short_description: The CUDA architectures a cluster's queues need
version_added: 0.1.0
description:
  - The sorted, distinct CUDA architectures (C(sm_90), C(sm_100), ...) of the instance types of
    every compute resource of a cluster spec, from the instance catalog. The shared NCCL build
    (role C(xpu.parallelcluster.nccl_shared)) is compiled for exactly these, and they are part of
    its version id, so configure.yml and the node bootstrap must agree on them.
  - An empty list for a cluster without NVIDIA GPUs.
options:
  _input:
    description: The cluster spec (its C(queues[].compute_resources[].instance_type)).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Archs of the cluster
  ansible.builtin.debug:
    msg: "{{ xpu_pc_cluster_spec | xpu.parallelcluster.cuda_archs }}"
"""

RETURN = r"""
_value:
  description: Architectures, e.g. C([sm_90, sm_100]).
  type: list
  elements: str
"""

from ansible.errors import AnsibleFilterError

try:
    from ansible_collections.xpu.parallelcluster.plugins.module_utils import catalog
except ImportError:  # pragma: no cover - unit tests import the tree directly
    from plugins.module_utils import catalog  # type: ignore[no-redef]


def cuda_archs(spec):
    archs = set()
    for queue in (spec or {}).get("queues") or []:
        for resource in queue.get("compute_resources") or []:
            itype = resource.get("instance_type")
            if not itype:
                continue
            try:
                entry = catalog.lookup(itype)
            except catalog.UnknownInstanceTypeError as exc:
                raise AnsibleFilterError(f"cuda_archs: queue {queue.get('name')}: {exc}") from exc
            if entry.cuda_arch:
                archs.add(entry.cuda_arch)
    return sorted(archs, key=lambda arch: (int(arch[3:].rstrip("abf")), arch))


class FilterModule:
    def filters(self):
        return {"cuda_archs": cuda_archs}
