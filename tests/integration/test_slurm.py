"""Slurm on the lab: multi-node jobs, and the demo playbook end to end."""

from __future__ import annotations

import re
import time

import pytest

from .conftest import COMPUTE, HEAD, LAB_VARS, LOGIN, NODES, ROOT, on_node, playbook, run

pytestmark = pytest.mark.lab


def test_slurm_sees_the_queue_as_parallelcluster_lays_it_out(lab_up) -> None:
    out = on_node(HEAD, "sinfo", "-h", "-N", "-o", "%N %P %T").stdout.split("\n")
    rows = sorted(line.split() for line in out if line)
    assert rows == [["cpu-st-c6i-1", "cpu*", "idle"], ["cpu-st-c6i-2", "cpu*", "idle"]]
    conf = on_node(HEAD, "scontrol", "show", "config").stdout
    assert re.search(r"^ClusterName\s+= xpu-lab$", conf, re.M)
    assert re.search(r"^SlurmctldHost\[0\]\s+= head\(10\.213\.0\.10\)$", conf, re.M)


def test_two_node_sbatch_job_from_the_login_node(lab_up) -> None:
    script = (
        "#!/bin/bash\n#SBATCH -N2 --ntasks-per-node=1 -o /home/ubuntu/it-%j.out\n"
        "srun bash -c 'echo $(hostname) $SLURM_PROCID'\n"
    )
    on_node(LOGIN, "bash", "-c", f"cat > /home/ubuntu/it.sbatch <<'X'\n{script}X", user="ubuntu")
    job = on_node(
        LOGIN, "sbatch", "--parsable", "--wait", "/home/ubuntu/it.sbatch", user="ubuntu"
    ).stdout.strip()
    out = on_node(LOGIN, "cat", f"/home/ubuntu/it-{job}.out").stdout.split("\n")
    lines = sorted(line.split()[:2] for line in out if line)
    assert lines == [["cpu-st-c6i-1", "0"], ["cpu-st-c6i-2", "1"]] or lines == [
        ["cpu-st-c6i-1", "1"],
        ["cpu-st-c6i-2", "0"],
    ]
    # One munge key across the cluster.
    digests = {on_node(n, "md5sum", "/etc/munge/munge.key").stdout.split()[0] for n in NODES}
    assert len(digests) == 1
    # The job ran as the default user and its accounting state is final.
    state = on_node(HEAD, "scontrol", "show", "job", job).stdout
    assert "JobState=COMPLETED" in state and "UserId=ubuntu(1000)" in state


def test_shared_fsx_and_home_are_shared(lab_up) -> None:
    token = str(time.time_ns())
    on_node(COMPUTE[0], "bash", "-c", f"echo {token} > /fsx/scratch/it-shared")
    assert on_node(COMPUTE[1], "cat", "/fsx/scratch/it-shared").stdout.strip() == token
    assert on_node(HEAD, "cat", "/fsx/scratch/it-shared").stdout.strip() == token


def test_demo_playbook_runs_a_two_node_job(lab_up) -> None:
    # The whole site flow on the lab: infra, cluster, configure, monitoring, validate.
    out = playbook("-e", LAB_VARS, "playbooks/lab/demo.yml", timeout=2400).stdout
    # The infra stage deployed into the emulator; the cluster stage's dry run passed.
    assert re.search(r"stack xpu-lab-infra: (CREATE|UPDATE)_COMPLETE", out), out[-3000:]
    assert "cluster xpu-lab: dry run: cluster xpu-lab would be created" in out
    assert "2 compute nodes in the inventory, all known to Slurm" in out
    assert re.search(r"job \d+ on 2 nodes: cpu-st-c6i-\[1-2\]", out), out[-3000:]
    assert "rank 0/2" in out and "rank 1/2" in out
    assert re.search(r"xpu-lab-login\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", out)
    # Monitoring: Prometheus on the head node, its local URL printed.
    assert re.search(r"Prometheus: +http://10\.213\.0\.\d+:9090", out), out[-3000:]


def test_preflight_fails_naming_a_drained_node(lab_up) -> None:
    node = "cpu-st-c6i-2"
    on_node(HEAD, "scontrol", "update", f"nodename={node}", "state=drain", "reason=it-test")
    try:
        proc = run(
            [
                str(ROOT / ".venv/bin/ansible-playbook"),
                "-i",
                "inventories/lab",
                "playbooks/preflight.yml",
            ],
            timeout=300,
            check=False,
        )
    finally:
        on_node(HEAD, "scontrol", "update", f"nodename={node}", "state=resume")
    assert proc.returncode != 0
    assert f"Nodes down or drained: {node}" in proc.stdout
