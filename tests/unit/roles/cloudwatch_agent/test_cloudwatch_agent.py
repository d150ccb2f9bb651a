"""The cloudwatch_agent role, applied to this host with ``ansible-playbook -c local``.

The role's internal agent root (``__cloudwatch_agent_home``) points at a scratch tree per test, so
nothing outside ``tmp_path`` is touched. Where a test needs an agent, the tree gets the stand-in
``amazon-cloudwatch-agent-ctl`` from ``fixtures/`` (it records its arguments and does what
append-config leaves on disk) and, as on a ParallelCluster node, ParallelCluster's configuration
plus the copy ``fetch-config`` left in the agent's configuration directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# Runs ansible-playbook against the role: part of `make test`, not the fast `make check`.
pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
FIXTURES = HERE / "fixtures"
PLAYBOOK = HERE / "playbook.yml"
FRAGMENT = "xpu-parallelcluster.json"
RECAP = re.compile(
    r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)
SECRET_WORDS = ("credential", "access_key", "secret", "token", "password", "role_arn", "AKIA")


@dataclass
class Run:
    rc: int
    changed: int
    failed: int
    out: str

    @property
    def flat(self) -> str:
        """The output with line wrapping undone, to find a message."""
        return " ".join(self.out.split())


@dataclass
class Node:
    """A scratch agent root on this host, as the role sees /opt/aws/amazon-cloudwatch-agent."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "opt/aws/amazon-cloudwatch-agent"

    @property
    def etc(self) -> Path:
        return self.home / "etc"

    @property
    def confd(self) -> Path:
        return self.etc / "amazon-cloudwatch-agent.d"

    @property
    def fragment(self) -> Path:
        return self.etc / FRAGMENT

    @property
    def loaded(self) -> Path:
        return self.confd / f"file_{FRAGMENT}"

    @property
    def pc_config(self) -> Path:
        return self.etc / "amazon-cloudwatch-agent.json"

    @property
    def pc_loaded(self) -> Path:
        return self.confd / "file_amazon-cloudwatch-agent.json"

    def install_agent(self) -> None:
        (self.home / "bin").mkdir(parents=True, exist_ok=True)
        shutil.copy2(FIXTURES / "amazon-cloudwatch-agent-ctl", self.home / "bin")

    def install_parallelcluster_config(self, fixture: str) -> None:
        """ParallelCluster's file, and the copy its fetch-config put in the configuration dir."""
        self.confd.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FIXTURES / fixture, self.pc_config)
        shutil.copyfile(FIXTURES / fixture, self.pc_loaded)

    def ctl_calls(self) -> list[str]:
        log = self.home / "ctl-calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def fragment_json(self) -> dict:
        return json.loads(self.fragment.read_text())

    def play(self, *args: str, check: bool = False, **extra_vars) -> Run:
        variables = {
            "__cloudwatch_agent_home": str(self.home),
            "__cloudwatch_agent_nvidia_smi_path": str(self.root / "usr/bin/nvidia-smi"),
            "__cloudwatch_agent_download_dir": str(self.root / "var/cache"),
            "cloudwatch_agent_cluster_name": "unit",
            "ansible_python_interpreter": sys.executable,
            **extra_vars,
        }
        var_file = self.root / "extra-vars.json"
        var_file.write_text(json.dumps(variables))
        env = dict(os.environ)
        env.update(
            ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
            ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_RETRY_FILES_ENABLED="0",
        )
        argv = [
            str(ROOT / ".venv/bin/ansible-playbook"),
            "-c",
            "local",
            "-i",
            "localhost,",
            "-e",
            f"@{var_file}",
            *(["--check", "--diff"] if check else []),
            *args,
            str(PLAYBOOK),
        ]
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        out = proc.stdout + proc.stderr
        match = RECAP.search(out)
        assert match, f"no play recap (rc={proc.returncode})\n{out[-4000:]}"
        return Run(proc.returncode, int(match[2]), int(match[4]), out)


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def ok(run: Run) -> Run:
    assert run.rc == 0 and run.failed == 0, run.out[-4000:]
    return run


def metrics_inputs(fragment: dict) -> dict:
    return fragment["metrics"]["metrics_collected"]


@pytest.mark.parametrize("gpu", [True, False], ids=["gpu-node", "cpu-node"])
def test_fragment_carries_cluster_and_instance_dimensions(node: Node, gpu: bool) -> None:
    if gpu:  # what the role looks for; the agent's nvidia_gpu input runs it
        (node.root / "usr/bin").mkdir(parents=True)
        (node.root / "usr/bin/nvidia-smi").write_text("#!/bin/sh\n")
    logs = [
        {
            "file_path": "/var/log/nccl-tests/*.log",
            "log_group_name": "/xpu/unit/nccl",
            "log_stream_name": "{hostname}.{instance_id}.nccl",
        }
    ]
    run = ok(
        node.play(
            cloudwatch_agent_log_files=logs if gpu else [],
            cloudwatch_agent_extra_dimensions={"Queue": "gpu"} if gpu else {},
        )
    )

    # No agent in the tree: the fragment is still written and validated; the skip is reported.
    assert "has no " + str(node.home / "bin/amazon-cloudwatch-agent-ctl") in run.flat
    assert "cloudwatch_agent_install is false" in run.flat
    text = node.fragment.read_text()
    fragment = json.loads(text)
    assert fragment["_comment"].startswith("Ansible managed")
    assert set(fragment) == ({"_comment", "metrics", "logs"} if gpu else {"_comment", "metrics"})

    metrics = fragment["metrics"]
    assert metrics["namespace"] == "XPU/ParallelCluster"
    assert metrics["append_dimensions"] == {
        "InstanceId": "${aws:InstanceId}",
        "InstanceType": "${aws:InstanceType}",
    }
    assert ["ClusterName"] in metrics["aggregation_dimensions"]
    assert ["ClusterName", "InstanceId"] in metrics["aggregation_dimensions"]
    assert ["ClusterName", "InstanceId", "index"] in metrics["aggregation_dimensions"]

    inputs = metrics_inputs(fragment)
    assert set(inputs) == ({"mem", "disk", "nvidia_gpu"} if gpu else {"mem", "disk"})
    expected_dims = {"ClusterName": "unit", "Queue": "gpu"} if gpu else {"ClusterName": "unit"}
    for name, section in inputs.items():
        assert section["append_dimensions"] == expected_dims, name
        assert section["measurement"], name
        assert section["metrics_collection_interval"] == 60, name  # an integer, as the agent wants
    assert inputs["mem"]["measurement"] == ["mem_used_percent"]
    assert inputs["disk"]["resources"] == ["/"] and inputs["disk"]["drop_device"] is True
    if gpu:
        assert "utilization_gpu" in inputs["nvidia_gpu"]["measurement"]
        assert fragment["logs"] == {"logs_collected": {"files": {"collect_list": logs}}}

    assert not [word for word in SECRET_WORDS if word.lower() in text.lower()]
    # Nothing else in the tree: no agent was started, no ParallelCluster file was created.
    assert node.ctl_calls() == []
    assert not node.pc_config.exists() and not node.confd.exists()


def test_appends_once_and_leaves_parallelcluster_config_alone(node: Node) -> None:
    node.install_agent()
    node.install_parallelcluster_config("parallelcluster-loginnode.json")
    pc_bytes = node.pc_config.read_bytes()
    append = f"-a append-config -m ec2 -s -c file:{node.fragment}"

    first = ok(node.play())
    assert first.changed > 0
    assert node.ctl_calls() == [append]
    assert node.loaded.read_bytes() == node.fragment.read_bytes()
    assert "metrics" in node.fragment_json()  # ParallelCluster has no metrics on a login node

    second = ok(node.play())
    assert second.changed == 0, second.out[-3000:]
    assert node.ctl_calls() == [append]

    check = ok(node.play(check=True))
    assert check.changed == 0, check.out[-3000:]
    assert node.ctl_calls() == [append]

    # A later fetch-config (which replaces the directory's files) dropped our copy: load it again.
    node.loaded.unlink()
    again = ok(node.play())
    assert again.changed > 0 and node.ctl_calls() == [append, append]

    # A changed setting rewrites the fragment and loads it once.
    changed = ok(node.play(cloudwatch_agent_metrics_collection_interval=30))
    assert changed.changed > 0 and node.ctl_calls() == [append] * 3
    loaded = json.loads(node.loaded.read_text())
    assert metrics_inputs(loaded)["mem"]["metrics_collection_interval"] == 30

    # ParallelCluster's configuration, and the copy the agent loaded from it, byte for byte.
    assert node.pc_config.read_bytes() == pc_bytes
    assert node.pc_loaded.read_bytes() == pc_bytes


def test_check_mode_predicts_and_touches_nothing(node: Node) -> None:
    node.install_agent()
    node.install_parallelcluster_config("parallelcluster-loginnode.json")
    before = sorted(p.relative_to(node.root) for p in node.root.rglob("*"))

    run = ok(node.play(check=True))

    assert run.changed > 0  # the fragment would be written ...
    assert '+    "namespace": "XPU/ParallelCluster"' in run.out  # --diff shows the fragment to be
    assert node.ctl_calls() == []  # ... but the agent is not told in check mode
    assert not node.fragment.exists()
    after = sorted(
        p.relative_to(node.root) for p in node.root.rglob("*") if p.name != "extra-vars.json"
    )
    assert after == before


def test_head_node_metrics_stay_parallelclusters(node: Node) -> None:
    node.install_agent()
    node.install_parallelcluster_config("parallelcluster-headnode.json")
    pc_bytes = node.pc_config.read_bytes()

    run = ok(node.play(cloudwatch_agent_gpu_metrics="enabled"))

    # Only what ParallelCluster's metrics section lacks; none of the global keys the agent would
    # refuse (different values) or that would move ParallelCluster's own metrics.
    metrics = node.fragment_json()["metrics"]
    assert set(metrics) == {"metrics_collected"}
    assert set(metrics_inputs({"metrics": metrics})) == {"nvidia_gpu"}
    gpu = metrics["metrics_collected"]["nvidia_gpu"]
    assert gpu["append_dimensions"] == {"ClusterName": "unit"}
    assert "not adding namespace, append_dimensions, aggregation_dimensions, mem, disk" in run.flat
    assert node.ctl_calls() == [f"-a append-config -m ec2 -s -c file:{node.fragment}"]

    # Without a GPU nor extra log files there is nothing to add: the fragment is unloaded again.
    run = ok(node.play(cloudwatch_agent_gpu_metrics="disabled"))
    assert json.loads(node.fragment.read_text()).keys() == {"_comment"}
    assert node.ctl_calls()[-1] == f"-a remove-config -m ec2 -s -c file:{node.fragment}"
    assert not node.loaded.exists()
    run = ok(node.play(cloudwatch_agent_gpu_metrics="disabled"))
    assert run.changed == 0 and len(node.ctl_calls()) == 2
    assert "Nothing to add to the agent on localhost" in run.flat
    assert node.pc_config.read_bytes() == pc_bytes and node.pc_loaded.read_bytes() == pc_bytes


def test_head_node_clash_fails_when_asked(node: Node) -> None:
    node.install_agent()
    node.install_parallelcluster_config("parallelcluster-headnode.json")

    run = node.play(cloudwatch_agent_parallelcluster_metrics="fail")

    assert run.rc != 0 and run.failed == 1
    assert "Clashing: namespace, append_dimensions, aggregation_dimensions, mem, disk." in run.flat
    assert not node.fragment.exists() and node.ctl_calls() == []


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        (
            {"cloudwatch_agent_fragment_name": "amazon-cloudwatch-agent.json"},
            "the same name as ParallelCluster's configuration would replace it",
        ),
        (
            {
                "cloudwatch_agent_log_files": [
                    {
                        "file_path": "/var/log/cloud-init.log",
                        "log_group_name": "/xpu/unit",
                        "log_stream_name": "{instance_id}",
                    }
                ]
            },
            "already ships /var/log/cloud-init.log",
        ),
        ({"cloudwatch_agent_cluster_name": ""}, "cloudwatch_agent_cluster_name is empty"),
        ({"cloudwatch_agent_namespace": "AWS/EC2"}, "must not start with AWS/"),
    ],
    ids=["parallelcluster-file-name", "log-shipped-twice", "no-cluster-name", "aws-namespace"],
)
def test_preflight_refuses(node: Node, extra_vars: dict, message: str) -> None:
    node.install_agent()
    node.install_parallelcluster_config("parallelcluster-loginnode.json")
    pc_bytes = node.pc_config.read_bytes()

    run = node.play("--tags", "cloudwatch_agent_preflight", **extra_vars)

    assert run.rc != 0 and run.failed == 1
    assert message in run.flat, run.out[-3000:]
    assert node.ctl_calls() == [] and node.pc_config.read_bytes() == pc_bytes
    assert node.pc_loaded.read_bytes() == pc_bytes


def test_install_needs_a_verified_checksum(node: Node) -> None:
    run = node.play("--tags", "cloudwatch_agent_preflight", cloudwatch_agent_install=True)
    assert run.rc != 0 and run.failed == 1
    assert "cloudwatch_agent_package_sha256 is not a sha256 hex digest" in run.flat
    assert "9376 16F3 450B 7D80 6CBD 9725 D581 6730 3B78 9C72" in run.flat


def test_install_refuses_a_package_with_another_checksum(node: Node) -> None:
    package = node.root / "amazon-cloudwatch-agent.deb"
    package.write_bytes(b"not the pinned package\n")

    run = node.play(
        "--tags",
        "cloudwatch_agent_preflight,cloudwatch_agent_install",
        cloudwatch_agent_install=True,
        cloudwatch_agent_package_sha256="0" * 64,
        cloudwatch_agent_package_url=package.as_uri(),
    )

    assert run.rc != 0 and run.failed == 1
    assert "Install | download the pinned agent package" in run.out
    assert "checksum" in run.out.lower()
    assert "install the agent package" not in run.out  # the play stopped at the download
    assert not list((node.root / "var/cache").glob("amazon-cloudwatch-agent-*"))
