"""playbooks/configure.yml on the lab: every node role for real, rolling batches that never kill a
running job, and a re-run that changes nothing.

The rolling tests pass no component (``xpu_pc_components`` empty), so only the drain-and-restart
machinery runs; the re-run test applies every role to every node.
"""

from __future__ import annotations

import re
import time

import pytest

from .conftest import COMPUTE, HEAD, LOGIN, TIMINGS, on_node, playbook

pytestmark = pytest.mark.lab

# Only the rolling restart: no node role (the bootstrap's component list, empty).
NO_COMPONENTS = ("-e", '{"xpu_pc_components": ""}')

NODE1, NODE2 = "cpu-st-c6i-1", "cpu-st-c6i-2"


def slurmd_pid(container: str) -> str:
    return on_node(container, "systemctl", "show", "slurmd", "--property=MainPID").stdout.strip()


def node_line(name: str) -> str:
    return on_node(HEAD, "scontrol", "--oneliner", "show", "node", name).stdout


def job_state(job: str) -> str:
    out = on_node(HEAD, "scontrol", "--oneliner", "show", "job", job).stdout
    return re.search(r"JobState=(\S+)", out).group(1)


def test_rolling_restart_waits_for_a_running_job_and_resumes_every_node(lab_up) -> None:
    job = on_node(
        LOGIN,
        "sbatch",
        "--parsable",
        f"--nodelist={NODE1}",
        "--nodes=1",
        "--output=/dev/null",
        "--wrap=sleep 12",
        user="ubuntu",
    ).stdout.strip()
    deadline = time.monotonic() + 30
    while job_state(job) != "RUNNING":
        assert time.monotonic() < deadline, f"job {job} did not start"
        time.sleep(0.5)
    before = {c: slurmd_pid(c) for c in COMPUTE}
    started = time.monotonic()

    out = playbook(
        "playbooks/configure.yml",
        "--limit",
        "queue_cpu",
        *NO_COMPONENTS,
        "-e",
        "xpu_pc_restart_slurmd=true",
        "-e",
        "xpu_pc_configure_batch=1",
        "-e",
        "slurmd_drain_restart_poll=1",
    ).stdout
    elapsed = time.monotonic() - started

    # The job was not killed: the play waited for it on the drained node.
    assert job_state(job) == "COMPLETED"
    assert "ExitCode=0:0" in on_node(HEAD, "scontrol", "show", "job", job).stdout
    assert elapsed > 5, "the play did not wait for the running job"
    # Every node got a new slurmd and is back in service.
    assert all(slurmd_pid(c) != before[c] for c in COMPUTE)
    for name in (NODE1, NODE2):
        assert re.search(r"State=IDLE\s", node_line(name)), node_line(name)
    # One batch at a time: two plays of one host each.
    assert out.count("PLAY [Configure | compute nodes, in rolling batches]") == 2


def test_a_node_drained_for_another_reason_stays_drained(lab_up) -> None:
    on_node(HEAD, "scontrol", "update", f"nodename={NODE2}", "state=drain", "reason=it-admin")
    try:
        before = slurmd_pid(COMPUTE[1])
        out = playbook(
            "playbooks/configure.yml",
            "--limit",
            COMPUTE[1],
            *NO_COMPONENTS,
            "-e",
            "xpu_pc_restart_slurmd=true",
            "-e",
            "slurmd_drain_restart_poll=1",
        ).stdout
        assert slurmd_pid(COMPUTE[1]) != before
        line = node_line(NODE2)
        assert "DRAIN" in line and "Reason=it-admin" in line, line
        assert f"{NODE2} was drained before this run and stays drained" in out
    finally:
        on_node(HEAD, "scontrol", "update", f"nodename={NODE2}", "state=resume")


def metrics(container: str, port: int) -> str:
    return on_node(
        container,
        "python3",
        "-c",
        f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics',"
        " timeout=10).read().decode())",
    ).stdout


def test_every_node_role_runs_on_the_lab_and_says_what_it_skips(lab_up) -> None:
    out = playbook("playbooks/configure.yml").stdout
    # Every role of every play ran (a role gated off would print none of its tasks).
    for role in (
        "efa",
        "fsx_lustre",
        "pyxis",
        "nccl_shared",
        "cloudwatch_agent",
        "node_exporter",
        "login_node",
        "nvidia_container",
        "efa_exporter",
        "dcgm_exporter",
        "slurmd_drain_restart",
    ):
        assert f"TASK [xpu.parallelcluster.{role} : " in out, role
    # Hardware and downloads the lab lacks: skipped, each with its reason.
    for container in (HEAD, *COMPUTE):
        assert f"no EFA devices on {container} (expected 0)" in out
    for container in (HEAD, LOGIN, *COMPUTE):
        assert f"{container}: no Lustre client/mount on this node (lab)" in out
        assert f"WARNING: pyxis on {container}: missing enroot" in out
    for container in COMPUTE:
        assert f"no NVIDIA GPU on {container}" in out  # nvidia_container
    assert out.count("skipping dcgm-exporter") >= len(COMPUTE)
    assert f"nccl_shared: {HEAD} has no nvcc" in out
    # What the lab can run, runs: node_exporter everywhere, the EFA exporter on compute nodes.
    for container in (HEAD, LOGIN, *COMPUTE):
        assert "node_filesystem_avail_bytes" in metrics(container, 9100), container
    for container in COMPUTE:
        text = metrics(container, 9101)
        assert re.search(r"^efa_devices 0\.0$", text, re.M), text[-1000:]
    # Pyxis without its plugin: no `required` line for a plugin that is not there (it would
    # break every srun and slurmd).
    stack = on_node(
        HEAD,
        "sh",
        "-c",
        "cat /etc/slurm/plugstack.conf /etc/slurm/plugstack.conf.d/* 2>/dev/null || true",
    ).stdout
    assert "spank_pyxis.so" not in stack, stack
    # The cluster still serves jobs after all of it.
    assert "idle" in on_node(HEAD, "sinfo", "-h", "-o", "%T").stdout


def test_a_plain_rerun_changes_nothing_and_restarts_nothing(lab_up) -> None:
    before = {c: slurmd_pid(c) for c in COMPUTE}
    started = time.monotonic()
    out = playbook("playbooks/configure.yml").stdout
    TIMINGS["configure.yml second run, every lab node (changed=0)"] = time.monotonic() - started
    for container in (HEAD, LOGIN, *COMPUTE):
        assert re.search(rf"{container}\s+: ok=\d+\s+changed=0\s", out), out[-2000:]
    assert {c: slurmd_pid(c) for c in COMPUTE} == before
