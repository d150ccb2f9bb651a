"""scripts/lab.sh: idempotent bring-up, recovery, status, and a clean down."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from .conftest import (
    CLUSTER,
    HEAD,
    NODES,
    ROOT,
    TIMINGS,
    containers_started_at,
    inventory_list,
    lab,
    on_node,
    podman,
)

pytestmark = pytest.mark.lab


def test_up_reports_its_time(lab_up) -> None:
    assert re.search(r"lab: up in \d+s: cluster xpu-lab, 4 nodes", lab_up.up_output)


def test_second_up_changes_nothing_and_is_quick(lab_up) -> None:
    before = containers_started_at()
    started = time.monotonic()
    proc = lab("up")
    seconds = time.monotonic() - started
    TIMINGS["lab up, warm (nothing to do)"] = seconds
    assert "emulator: 0 created, 0 terminated, 4 unchanged" in proc.stdout
    assert "(cached)" in proc.stdout
    assert "created (" not in proc.stdout and "started" not in proc.stdout
    assert containers_started_at() == before
    assert seconds < 60


def test_up_converges_after_a_node_stops(lab_up) -> None:
    node = NODES[-1]
    podman("stop", "-t", "5", node)
    proc = lab("up")
    assert f"{node}: started" in proc.stdout
    assert podman("inspect", "--format", "{{.State.Status}}", node).stdout.strip() == "running"
    out = on_node(HEAD, "sinfo", "-h", "-N", "-o", "%N %T").stdout
    assert sorted(out.split()) == sorted(["cpu-st-c6i-1", "idle", "cpu-st-c6i-2", "idle"])


def test_up_converges_after_the_emulator_restarts(lab_up) -> None:
    """The emulator keeps its state in memory: a new one gets the instances again."""
    pid = int((ROOT / ".lab" / "emulator.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _port_open(int(os.environ.get("XPU_LAB_AWS_PORT", "5055"))):
        assert time.monotonic() < deadline, "the emulator did not stop"
        time.sleep(0.2)
    proc = lab("up")
    assert "starting AWS emulator" in proc.stdout
    assert "emulator: 4 created, 0 terminated, 0 unchanged" in proc.stdout
    # the pid file names the process that serves the port
    pid = int((ROOT / ".lab" / "emulator.pid").read_text())
    assert "moto_server" in Path(f"/proc/{pid}/cmdline").read_text()
    inv = inventory_list("inventories/lab")
    assert sorted(inv["compute"]["children"]) == ["queue_cpu"]
    assert len(inv["queue_cpu"]["hosts"]) == 2


def test_status_tells_what_runs(lab_up) -> None:
    proc = lab("status")
    assert "emulator: running on http://127.0.0.1:" in proc.stdout
    for node in NODES:
        assert re.search(
            rf"{node}\s+\w+\s+10\.213\.0\.\d+\s+running\s+systemd=running", proc.stdout
        )
    assert re.search(r"cpu\*\s+up\s+infinite\s+2\s+idle", proc.stdout)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.lab_teardown
def test_down_leaves_nothing_behind(lab_up) -> None:
    state = ROOT / ".lab"
    port = int(os.environ.get("XPU_LAB_AWS_PORT", "5055"))
    assert _port_open(port)
    # A stale pid file (an emulator started by another checkout or an interrupted run answers on
    # the lab's port): down finds the emulator by its port, not only by the file.
    (state / "emulator.pid").write_text("999999999\n")
    started = time.monotonic()
    lab("down")
    TIMINGS["lab down"] = time.monotonic() - started
    label = f"label=io.xpu.lab={CLUSTER}"
    assert podman("ps", "-aq", "--filter", label).stdout.strip() == ""
    assert podman("volume", "ls", "-q", "--filter", label).stdout.strip() == ""
    assert podman("network", "exists", CLUSTER, check=False).returncode != 0
    assert not _port_open(port), "the emulator still listens"
    assert not Path(state).exists()
    # The cached image is all that stays (lab-clean / `down --purge` removes it).
    assert podman("images", "-q", "--filter", "reference=localhost/xpu-lab-node").stdout.strip()
    status = lab("status", check=False)
    assert status.returncode != 0
    assert "emulator: not running" in status.stdout and "network: absent" in status.stdout
    # A second down is harmless.
    lab("down")
