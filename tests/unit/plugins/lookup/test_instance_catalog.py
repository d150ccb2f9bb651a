"""The instance_catalog lookup: catalog facts for roles, through Ansible itself."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ansible.errors import AnsibleLookupError
from ansible_collections.xpu.parallelcluster.plugins.lookup.instance_catalog import (
    LookupModule,
    entry_facts,
)
from ansible_collections.xpu.parallelcluster.plugins.module_utils import catalog

ROOT = Path(__file__).resolve().parents[4]


@pytest.mark.parametrize(
    ("name", "efa", "gpus", "cuda"),
    [
        ("p6-b200.48xlarge", 8, 8, "sm_100"),
        ("p5en.48xlarge", 16, 8, "sm_90"),
        ("p5.48xlarge", 32, 8, "sm_90"),
        ("p4d.24xlarge", 4, 8, "sm_80"),
        ("c6i.xlarge", 0, 0, None),
    ],
)
def test_facts_match_the_catalog(name: str, efa: int, gpus: int, cuda: str | None) -> None:
    facts = LookupModule().run([name])[0]
    assert facts["efa_interfaces"] == efa == catalog.lookup(name).efa_interfaces
    assert facts["accelerator_count"] == gpus
    assert facts["cuda_arch"] == cuda
    assert facts["family"] == name.split(".")[0]
    json.dumps(facts)  # plain data, safe to template


def test_expected_figures_are_plain_dicts_keyed_by_node_count() -> None:
    expected = entry_facts("p6-b200.48xlarge")["expected"]["all_reduce"]
    assert isinstance(expected, dict) and all(isinstance(n, int) for n in expected)
    assert expected[4] == catalog.expected_busbw("p6-b200.48xlarge", 4)


def test_unknown_type_fails_with_did_you_mean() -> None:
    with pytest.raises(AnsibleLookupError, match=r"did you mean 'p5\.48xlarge'"):
        LookupModule().run(["p5.48xlarg"])


def test_the_lookup_works_from_a_playbook(tmp_path: Path) -> None:
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.debug:\n"
        "        msg: \"EFA={{ lookup('xpu.parallelcluster.instance_catalog',"
        " 'p5en.48xlarge').efa_interfaces }}\"\n"
    )
    proc = subprocess.run(
        [str(ROOT / ".venv/bin/ansible-playbook"), "-i", "localhost,", "-c", "local", str(play)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "EFA=16" in proc.stdout
