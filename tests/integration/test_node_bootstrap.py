"""scripts/node-bootstrap.sh on the lab: a fresh compute node configures itself and joins Slurm.

The cluster stage uploads the script, the collection artifact and requirements-node.txt to the
stack's bucket, and ParallelCluster runs the script on every new node. Lab nodes cannot reach the
emulator's S3, so the test stages the same three assets on the shared /fsx and passes that folder
as --assets; the nodes' Python packages come from wheels downloaded once on the host (the lab's
nodes install nothing from the network here).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from .conftest import CLUSTER, COMPUTE, HEAD, ROOT, TIMINGS, lab, on_node, podman, run

pytestmark = pytest.mark.lab

ASSETS = "/fsx/xpu-it-assets"
SHARED = "/fsx/xpu-it-shared"


@pytest.fixture(scope="module")
def assets(lab_up, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The bootstrap assets on the lab's shared /fsx volume."""
    fsx = Path(
        podman("volume", "inspect", "--format", "{{.Mountpoint}}", f"{CLUSTER}-fsx").stdout.strip()
    )
    dest = fsx / ASSETS.removeprefix("/fsx/")
    shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(fsx / SHARED.removeprefix("/fsx/"), ignore_errors=True)
    dest.mkdir(parents=True)
    build = tmp_path_factory.mktemp("artifact")
    run(
        [
            str(ROOT / ".venv/bin/ansible-galaxy"),
            "collection",
            "build",
            "--output-path",
            str(build),
            str(ROOT),
        ]
    )
    shutil.copy(next(build.glob("*.tar.gz")), dest / "xpu-parallelcluster.tar.gz")
    shutil.copy(ROOT / "requirements-node.txt", dest / "requirements-node.txt")
    shutil.copy(ROOT / "scripts/node-bootstrap.sh", dest / "node-bootstrap.sh")
    # node-vars.yml as the cluster stage writes it: the lab's node settings (its inventory's
    # group_vars, less the connection ones) and the queues' GPU architectures (none here).
    lab_vars = yaml.safe_load((ROOT / "inventories/lab/group_vars/all.yml").read_text())
    node_vars = {k: v for k, v in lab_vars.items() if not k.startswith("ansible_")}
    (dest / "node-vars.yml").write_text(yaml.safe_dump({**node_vars, "xpu_pc_cuda_archs": []}))
    # Wheels for the nodes, fetched by pip from the package registry (its proxy fence lifted:
    # pip is a package client, not an AWS one).
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    subprocess.run(
        [
            str(ROOT / ".venv/bin/python"),
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(ROOT / "requirements-node.txt"),
            "-d",
            str(dest / "wheels"),
        ],
        check=True,
        env=env,
        timeout=300,
    )
    return ASSETS


# What the rendered cluster config passes a compute node of queue cpu (before --components).
COMPUTE_ARGS = ("--cluster-name", CLUSTER, "--role", "compute", "--queue", "cpu")


def bootstrap(container: str, *args: str, check: bool = True):
    return on_node(
        container,
        "env",
        f"XPU_PC_SHARED_DIR={SHARED}",
        # The lab's instance type, given: lab nodes must not query instance metadata.
        "XPU_PC_INSTANCE_TYPE=c6i.xlarge",
        "PIP_NO_INDEX=1",
        f"PIP_FIND_LINKS={ASSETS}/wheels",
        f"{ASSETS}/node-bootstrap.sh",
        *args,
        check=check,
    )


def test_a_fresh_compute_node_bootstraps_and_joins_slurm(assets: str) -> None:
    node = COMPUTE[1]
    podman("rm", "-f", "-t", "5", node)
    lab("up")  # a fresh container from the image, as a new instance would be
    started = time.monotonic()
    proc = bootstrap(
        node,
        *COMPUTE_ARGS,
        "--components",
        # What the rendered config gives a compute node of a CPU queue without EFA.
        "enroot_pyxis,lustre_client,cloudwatch_agent,node_exporter",
        "--assets",
        assets,
    )
    TIMINGS["node bootstrap, first node (installs into shared storage)"] = (
        time.monotonic() - started
    )
    out = proc.stdout
    for step in ("fetch-assets", "install-shared", "inventory", "configure"):
        assert re.search(rf"step {step}: done in \d+s", out), out[-3000:]
    assert re.search(r"xpu-bootstrap\[\d+s\]: bootstrap done in \d+s", out)
    assert "collection" in out and "installed in" in out
    # The node ran the roles its components name, with the lab's settings from node-vars.yml.
    assert "WARNING: pyxis on localhost: missing enroot" in out, out[-3000:]
    assert "no Lustre client/mount on this node (lab)" in out, out[-3000:]
    assert "xpu.parallelcluster.node_exporter" in out
    assert "no EFA devices on localhost" not in out  # efa_check was not asked for
    assert on_node(node, "systemctl", "is-active", "prometheus-node-exporter").stdout.strip() == (
        "active"
    )
    assert re.search(r"localhost\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", out)
    # The node serves jobs.
    sinfo = on_node(HEAD, "sinfo", "-h", "-N", "-o", "%N %T").stdout
    assert "cpu-st-c6i-2 idle" in sinfo, sinfo
    log = on_node(node, "cat", "/var/log/xpu-parallelcluster-bootstrap.log").stdout
    assert "bootstrap done" in log


def test_a_second_node_reuses_the_shared_install(assets: str) -> None:
    started = time.monotonic()
    out = bootstrap(
        COMPUTE[0],
        *COMPUTE_ARGS,
        "--components",
        "none",
        "--assets",
        assets,
    ).stdout
    TIMINGS["node bootstrap, next node (shared install reused)"] = time.monotonic() - started
    assert "already installed in" in out, out[-3000:]


def test_a_failure_exits_non_zero_and_names_the_step(assets: str) -> None:
    proc = bootstrap(
        COMPUTE[0],
        *COMPUTE_ARGS,
        "--assets",
        "/fsx/no-such-assets",
        check=False,
    )
    assert proc.returncode == 1
    assert "FAILED: step fetch-assets exited" in proc.stdout


def test_bad_arguments_are_refused_with_usage(assets: str) -> None:
    proc = bootstrap(
        COMPUTE[0], "--cluster-name", CLUSTER, "--role", "compute", "--assets", assets, check=False
    )
    assert proc.returncode == 64
    assert "--queue is required for compute nodes" in proc.stderr
