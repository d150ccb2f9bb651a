"""The efa role on a lab compute node, which has no EFA hardware.

Only one node is touched (``--limit xpu-lab-cpu-st-c6i-1``). With the catalog's count for its
instance type (c6i.xlarge: 0 EFA interfaces) the role skips the node with a message and changes
nothing, in check mode too; told the node should have 8 (a p6-b200), it fails naming the node,
its type, the count and what to do, and downloads nothing (the lab must never reach AWS).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

import pytest

from .conftest import COMPUTE, TIMINGS, on_node, playbook

pytestmark = pytest.mark.lab

NODE = COMPUTE[0]
PLAYBOOK = "tests/integration/playbooks/role_efa.yml"
CACHE = "/var/cache/xpu-efa"


@dataclass
class Recap:
    rc: int
    ok: int
    changed: int
    failed: int
    output: str


def apply(*args: str) -> Recap:
    proc = playbook("--limit", NODE, PLAYBOOK, *args, timeout=300, check=False)
    match = re.search(
        rf"^{re.escape(NODE)}\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)",
        proc.stdout,
        re.M,
    )
    assert match, proc.stdout[-3000:] + proc.stderr[-2000:]
    ok, changed, failed = (int(g) for g in match.groups())
    return Recap(proc.returncode, ok, changed, failed, proc.stdout)


def assert_node_untouched() -> None:
    probe = on_node(NODE, "test", "-e", CACHE, check=False)
    assert probe.returncode == 1, f"{CACHE} exists on {NODE}: the role wrote to the node"
    probe = on_node(NODE, "test", "-e", "/opt/amazon/efa_installed_packages", check=False)
    assert probe.returncode == 1


@pytest.fixture(scope="module")
def skipped(lab_up) -> tuple[Recap, Recap]:
    started = time.monotonic()
    first = apply()
    TIMINGS["efa role on a node without EFA, first run"] = time.monotonic() - started
    second = apply()
    return first, second


def test_node_without_efa_is_skipped_with_a_message(skipped) -> None:
    first, _ = skipped
    assert first.rc == 0 and first.failed == 0, first.output[-3000:]
    message = f"no EFA devices on {NODE} (expected 0): skipping install and verification"
    assert message in " ".join(first.output.split())
    # Nothing was installed or verified: the install and verify tasks were skipped.
    for task in ("download the installer", "run efa_installer.sh", "assert the node"):
        block = first.output.split(f"Efa | {task}", 1)[1].split("TASK [", 1)[0]
        assert f"skipping: [{NODE}]" in block, block
    assert first.changed == 0
    assert_node_untouched()


def test_second_run_changes_nothing(skipped) -> None:
    _, second = skipped
    assert second.rc == 0 and second.changed == 0 and second.failed == 0


def test_check_mode_changes_nothing(skipped) -> None:
    check = apply("--check", "--diff")
    assert check.rc == 0 and check.changed == 0 and check.failed == 0, check.output[-3000:]
    assert f"no EFA devices on {NODE} (expected 0)" in " ".join(check.output.split())
    assert_node_untouched()


def test_node_expected_to_have_efa_fails_clearly(skipped) -> None:
    started = time.monotonic()
    run = apply("-e", json.dumps({"efa_expected_devices": 8}))
    TIMINGS["efa role, node short of EFA devices (fails)"] = time.monotonic() - started
    assert run.rc != 0 and run.failed == 1
    text = " ".join(run.output.split())
    assert (
        f"EFA check failed on {NODE} (c6i.xlarge): found 0 EFA devices (PCI vendor 0x1d0f) in "
        "/sys/class/infiniband, expected 8" in text
    ), run.output[-3000:]
    assert "fi_info -p efa -t FI_EP_RDM" in text and "replace the node" in text
    # Slurm's name for the node (ParallelCluster names nodes by host name).
    assert f"scontrol update nodename={NODE.removeprefix('xpu-lab-')} state=fail" in text
    assert "no EFA devices on" not in text  # required: not skipped
    assert run.changed == 0
    assert_node_untouched()
