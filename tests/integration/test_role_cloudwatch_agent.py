"""The cloudwatch_agent role on the lab's login node, with a stand-in agent.

Lab nodes have no CloudWatch agent (nor IMDS for a real one), so the test playbook's pre_tasks
install the recording ``amazon-cloudwatch-agent-ctl`` of the unit tests and ParallelCluster's
login-node configuration under /var/tmp on the node, and the role is pointed there. What is proven
for real on the node: the fragment is rendered and validated there, append-config is called once
and only when needed, ParallelCluster's configuration is never written, and check mode changes
nothing. Only xpu-lab-login is used (other tests use the other nodes at the same time).
"""

from __future__ import annotations

import json
import re

import pytest

from .conftest import LOGIN, on_node, playbook

pytestmark = pytest.mark.lab

PLAYBOOK = "tests/integration/playbooks/role_cloudwatch_agent.yml"
TREE = "/var/tmp/xpu-it-cloudwatch-agent"
HOME = f"{TREE}/opt/aws/amazon-cloudwatch-agent"
FRAGMENT = f"{HOME}/etc/xpu-parallelcluster.json"
LOADED = f"{HOME}/etc/amazon-cloudwatch-agent.d/file_xpu-parallelcluster.json"
PC_CONFIG = f"{HOME}/etc/amazon-cloudwatch-agent.json"
PC_LOADED = f"{HOME}/etc/amazon-cloudwatch-agent.d/file_amazon-cloudwatch-agent.json"
CALLS = f"{HOME}/ctl-calls.log"
APPEND = f"-a append-config -m ec2 -s -c file:{FRAGMENT}"


def apply(*args: str) -> int:
    """Apply the test playbook to the login node; return its changed count."""
    out = playbook("--limit", LOGIN, *args, PLAYBOOK).stdout
    recap = re.search(
        rf"^{LOGIN}\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", out, re.M
    )
    assert recap, out[-4000:]
    return int(recap[1])


def read(path: str) -> str | None:
    proc = on_node(LOGIN, "cat", path, check=False)
    return proc.stdout if proc.returncode == 0 else None


def sha256(path: str) -> str:
    return on_node(LOGIN, "sha256sum", path).stdout.split()[0]


@pytest.fixture
def clean_tree(lab_up):
    on_node(LOGIN, "rm", "-rf", TREE)
    yield
    on_node(LOGIN, "rm", "-rf", TREE)


def test_cloudwatch_agent_appends_once_and_is_idempotent(clean_tree) -> None:
    # Check mode on a node never configured: predicts the fragment, writes and calls nothing.
    assert apply("--check", "--diff") > 0
    assert read(FRAGMENT) is None
    assert read(CALLS) is None
    pc_before = sha256(PC_CONFIG)
    assert sha256(PC_LOADED) == pc_before

    # First run: the fragment is written and loaded once with append-config.
    assert apply() > 0
    assert read(CALLS) == APPEND + "\n"
    fragment = json.loads(read(FRAGMENT))
    assert read(LOADED) == read(FRAGMENT)
    metrics = fragment["metrics"]
    assert metrics["namespace"] == "XPU/ParallelCluster"
    assert metrics["append_dimensions"] == {
        "InstanceId": "${aws:InstanceId}",
        "InstanceType": "${aws:InstanceType}",
    }
    # The cluster name comes from the inventory (parallelcluster:cluster-name tag); no GPU here.
    assert set(metrics["metrics_collected"]) == {"mem", "disk"}
    for section in metrics["metrics_collected"].values():
        assert section["append_dimensions"] == {"ClusterName": "xpu-lab"}

    # Second run and check mode: nothing changes, the agent is not told again.
    assert apply() == 0
    assert apply("--check", "--diff") == 0
    assert read(CALLS) == APPEND + "\n"

    # ParallelCluster's configuration and the copy the agent loaded from it: untouched.
    assert sha256(PC_CONFIG) == pc_before
    assert sha256(PC_LOADED) == pc_before
