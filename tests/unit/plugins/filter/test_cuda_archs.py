"""Filter cuda_archs: one sorted architecture list per cluster, from the catalog."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.xpu.parallelcluster.plugins.filter.cuda_archs import cuda_archs


def spec(*types: str) -> dict:
    return {
        "queues": [
            {"name": f"q{i}", "compute_resources": [{"name": "cr", "instance_type": t}]}
            for i, t in enumerate(types)
        ]
    }


def test_archs_of_every_queue_sorted_numerically_without_repeats() -> None:
    got = cuda_archs(spec("p6-b200.48xlarge", "p5.48xlarge", "p5en.48xlarge", "p4d.24xlarge"))
    assert got == ["sm_80", "sm_90", "sm_100"]  # numeric order, not text order (sm_100 < sm_80)


def test_cpu_and_trainium_queues_need_no_arch() -> None:
    assert cuda_archs(spec("c6i.xlarge", "trn2.48xlarge")) == []
    assert cuda_archs({}) == []


def test_an_unknown_type_names_the_queue_and_a_suggestion() -> None:
    with pytest.raises(AnsibleFilterError, match=r"queue q0: .*p5\.48xlarge"):
        cuda_archs(spec("p5.48xlarg"))
