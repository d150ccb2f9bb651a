"""The login_node role on the lab's login node: tools, message of the day, login shell environment.

Only the login node is touched (``--limit xpu-lab-login``). The role installs its tools from the
Debian mirror with apt on the node. The queues come from the lab's cluster spec (the playbook maps
``xpu_pc_cluster_spec`` as the configure stage would).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from dataclasses import dataclass

import pytest

from .conftest import LOGIN, TIMINGS, on_node, playbook

pytestmark = pytest.mark.lab

PLAYBOOK = "tests/integration/playbooks/role_login_node.yml"
MOTD = "/etc/motd.d/50-xpu-parallelcluster"
PROFILE = "/etc/profile.d/xpu-parallelcluster.sh"
SQUEUE_FORMAT = "%.18i %.9P %.30j %.8u %.2t %.10M %.6D %R"
PROBE_DIR = "/fsx/scratch/xpu-it-login-node"


@dataclass
class Recap:
    ok: int
    changed: int
    output: str


def apply(*args: str) -> Recap:
    proc = playbook("--limit", LOGIN, PLAYBOOK, *args, timeout=900)
    match = re.search(rf"^{re.escape(LOGIN)}\s*:\s*ok=(\d+)\s+changed=(\d+)", proc.stdout, re.M)
    assert match, proc.stdout[-3000:]
    return Recap(ok=int(match[1]), changed=int(match[2]), output=proc.stdout)


def as_ubuntu_login(script: str) -> subprocess.CompletedProcess:
    """``script`` in a bash login shell of the default user, as `ssh login` would give."""
    return on_node(LOGIN, "bash", "-lc", script, user="ubuntu")


def digest(path: str) -> str:
    return hashlib.sha256(on_node(LOGIN, "cat", path).stdout.encode()).hexdigest()


@pytest.fixture(scope="module")
def applied(lab_up) -> tuple[Recap, Recap]:
    """The role applied twice (the first run may install; the second must change nothing)."""
    started = time.monotonic()
    first = apply()
    TIMINGS["login_node role, first run"] = time.monotonic() - started
    started = time.monotonic()
    second = apply()
    TIMINGS["login_node role, second run"] = time.monotonic() - started
    return first, second


def test_second_run_changes_nothing(applied) -> None:
    second = applied[1]
    assert second.changed == 0, second.output[-3000:]


def test_user_tools_work_for_the_default_user(applied) -> None:
    assert as_ubuntu_login("jq --version").stdout.startswith("jq-1.")
    assert as_ubuntu_login('echo \'{"queue": "cpu"}\' | jq -r .queue').stdout == "cpu\n"
    assert as_ubuntu_login("tmux -V").stdout.startswith("tmux 3.")
    for tool in ("htop", "git", "rsync", "vim"):
        assert as_ubuntu_login(f"{tool} --version").stdout, tool
    # The venv module (python3-venv on Debian) makes a working environment with pip.
    out = as_ubuntu_login(
        "rm -rf /tmp/xpu-it-venv && python3 -m venv /tmp/xpu-it-venv"
        " && /tmp/xpu-it-venv/bin/python -m pip --version && rm -rf /tmp/xpu-it-venv"
    ).stdout
    assert "/tmp/xpu-it-venv/" in out


def test_motd_is_shown_at_login(applied) -> None:
    # `login -f` runs the PAM session stack (pam_motd) as an ssh login does;
    # `script` gives it a tty.
    proc = subprocess.run(
        ["podman", "exec", "-i", LOGIN, "script", "-qec", "login -f ubuntu", "/dev/null"],
        input="exit\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    shown = proc.stdout.replace("\r", "")
    assert shown.count("xpu-lab - AWS ParallelCluster (Slurm) login node") == 1, shown
    # The lab's only queue: c6i.xlarge has no accelerators; its compute resource's max_count is 2.
    assert re.search(r"^\s+QUEUE\s+INSTANCE TYPE\s+ACCELERATORS/NODE\s+MAX NODES$", shown, re.M)
    assert re.search(r"^\s+cpu\s+c6i\.xlarge\s+-\s+2$", shown, re.M), shown
    assert re.search(r"^\s+/fsx\s+FSx for Lustre", shown, re.M)
    assert "sbatch -p cpu -N 2 --exclusive job.sbatch" in shown


def test_login_shell_has_the_slurm_environment(applied) -> None:
    proc = as_ubuntu_login('printf "%s" "$SQUEUE_FORMAT"')
    assert (proc.stdout, proc.stderr) == (SQUEUE_FORMAT, "")
    # squeue reads it: the NAME column is 30 wide instead of 8.
    header = as_ubuntu_login("squeue | head -n 1").stdout
    assert re.search(r"PARTITION {27}NAME ", header), header
    # A shell that is not a login shell does not read /etc/profile.d.
    header = on_node(LOGIN, "bash", "-c", "squeue | head -n 1", user="ubuntu").stdout
    assert re.search(r"PARTITION {5}NAME ", header), header


def test_login_shell_sources_a_readable_nccl_env_file(applied) -> None:
    env_file = f"{PROBE_DIR}/env.sh"
    on_node(LOGIN, "bash", "-c", f"mkdir -p {PROBE_DIR} && echo export NCCL_PROBE=lab > {env_file}")
    try:
        changed = apply("-e", f"login_node_nccl_env_file={env_file}")
        # The profile, and the motd that names the file.
        assert changed.changed == 2, changed.output[-3000:]
        assert as_ubuntu_login('printf "%s" "${NCCL_PROBE-unset}"').stdout == "lab"
        on_node(LOGIN, "chmod", "600", env_file)
        proc = as_ubuntu_login('printf "%s" "${NCCL_PROBE-unset}"')
        assert (proc.stdout, proc.stderr) == ("unset", "")
    finally:
        on_node(LOGIN, "rm", "-rf", PROBE_DIR)
        restored = apply()
    assert restored.changed == 2, restored.output[-3000:]


def test_check_mode_predicts_a_variable_change_and_changes_nothing(applied) -> None:
    before = digest(MOTD), digest(PROFILE)
    extra = json.dumps({"login_node_motd_extra": "Support: #ml-infra"})
    predicted = apply("--check", "--diff", "-e", extra)
    assert predicted.changed == 1, predicted.output[-3000:]
    assert "+ Support: #ml-infra" in predicted.output
    assert (digest(MOTD), digest(PROFILE)) == before
    assert apply().changed == 0
