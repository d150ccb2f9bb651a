"""The slurm_exporter role end to end on this machine (no lab, no systemd, no Slurm).

Each inventory host is one scenario with ``ansible_connection: local``: the daemon and its unit go
under tmp_path (``slurm_exporter_script_path``, ``__slurm_exporter_unit_dir``), Slurm is the fake
bin dir of conftest.py, and ``__slurm_exporter_manage_service`` / ``__slurm_exporter_manage_user``
false leave systemd and the user database alone (this machine has no systemd as PID 1). The test
plays systemd: after the first run (verification off) it starts each head node's exporter from the
ExecStart and Environment lines of the unit the role rendered; the second run verifies through the
role's own scrape-and-assert step and must change nothing; a check-mode run changes nothing.

Left for the lab: systemd starting the hardened unit as the system user, the restart handler, the
package install.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .. import harness
from ..harness import free_port, local_inventory, role_playbook
from .conftest import ROOT, make_fake_slurm

pytestmark = pytest.mark.slow


class Run(harness.Run):
    quiet_failures = ("scrape the exporter",)


@dataclass
class Lab(harness.Lab):
    hosts: dict
    run_class = Run

    def unit(self, host: str) -> str:
        return (self.tmp / host / "systemd" / "slurm_exporter.service").read_text()


HEADS = ("head", "forced_login")
FAILING = {"compute", "head_without_slurm"}


def _scenarios(tmp: Path) -> dict[str, dict]:
    hosts: dict[str, dict] = {}

    def node(name: str, **role_vars) -> None:
        base = tmp / name
        fake = make_fake_slurm(base / "slurm" / "bin")
        (base / "systemd").mkdir()  # /etc/systemd/system exists on a real node
        hosts[name] = {
            "slurm_exporter_script_path": str(base / "libexec" / "slurm_exporter.py"),
            "slurm_exporter_python": sys.executable,
            "slurm_exporter_install_method": "package",
            "slurm_exporter_packages": [],
            "slurm_exporter_listen_address": "127.0.0.1",
            "slurm_exporter_port": free_port(),
            "slurm_exporter_interval": 1,
            "slurm_exporter_timeout": 5,
            "slurm_exporter_slurm_bin_dir": str(fake.bin_dir),
            "slurm_exporter_slurm_conf": str(base / "slurm" / "slurm.conf"),
            "__slurm_exporter_unit_dir": str(base / "systemd"),
            "__slurm_exporter_manage_service": False,
            "__slurm_exporter_manage_user": False,
            "__slurm_exporter_verify_retries": 20,
            "__slurm_exporter_verify_delay": 1,
            **role_vars,
        }

    node("head", pc_node_type="HeadNode")
    # Not a head node, but forced; Slurm on PATH and no SLURM_CONF.
    node(
        "forced_login",
        pc_node_type="LoginNode",
        slurm_exporter_force=True,
        slurm_exporter_slurm_bin_dir="",
        slurm_exporter_slurm_conf="",
    )
    node("compute", pc_node_type="Compute")
    node("head_without_slurm", pc_node_type="HeadNode")
    hosts["head_without_slurm"]["slurm_exporter_slurm_bin_dir"] = str(tmp / "no" / "slurm")
    return hosts


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    tmp = tmp_path_factory.mktemp("slurm_exporter")
    hosts = _scenarios(tmp)
    return Lab.create(tmp, local_inventory(hosts), role_playbook("slurm_exporter"), hosts)


@pytest.fixture(scope="module")
def first(lab: Lab) -> Run:
    return lab.run("-e", "slurm_exporter_verify=false")


def _exec_start(unit: str) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    argv: list[str] = []
    for line in unit.splitlines():
        if line.startswith("ExecStart="):
            argv = shlex.split(line.removeprefix("ExecStart="))
        if line.startswith("Environment="):
            key, _, value = shlex.split(line.removeprefix("Environment="))[0].partition("=")
            env[key] = value
    return argv, env


@pytest.fixture(scope="module")
def daemons(lab: Lab, first: Run) -> Iterator[dict[str, subprocess.Popen]]:
    """Plays systemd: start each head's exporter exactly as its unit says."""
    started = {}
    for host in HEADS:
        argv, env = _exec_start(lab.unit(host))
        if host == "forced_login":
            # No --slurm-bin-dir in this unit: the commands come from PATH.
            env["PATH"] = f"{lab.tmp / host / 'slurm' / 'bin'}:/usr/bin:/bin"
        started[host] = subprocess.Popen(argv, env=env, stderr=subprocess.DEVNULL)
    yield started
    for proc in started.values():
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def second(lab: Lab, daemons: dict) -> Run:
    return lab.run()


@pytest.fixture(scope="module")
def check(lab: Lab, second: Run) -> Run:
    return lab.run("--check", "--diff")


def test_first_run_installs_the_heads_and_refuses_the_others(lab: Lab, first: Run) -> None:
    failed = {h for h, s in first.stats.items() if s["failures"]}
    assert failed == FAILING, {h: first.failure(h)[:300] for h in failed ^ FAILING}
    assert "is a Compute node" in first.failure("compute")
    assert "Run the role on the 'head' group" in first.failure("compute")
    assert "no/slurm/sinfo is missing or not executable" in first.failure("head_without_slurm")
    for host in HEADS:
        script = Path(lab.hosts[host]["slurm_exporter_script_path"])
        shipped = ROOT / "roles" / "slurm_exporter" / "files" / "slurm_exporter.py"
        assert script.read_bytes() == shipped.read_bytes()
        assert os.access(script, os.X_OK)


def test_rendered_unit(lab: Lab, first: Run) -> None:
    unit = lab.unit("head")
    host = lab.hosts["head"]
    assert unit.startswith("#")  # ansible_managed
    argv, env = _exec_start(unit)
    assert argv == [
        sys.executable,
        host["slurm_exporter_script_path"],
        "--listen-address",
        "127.0.0.1",
        "--port",
        str(host["slurm_exporter_port"]),
        "--interval",
        "1",
        "--timeout",
        "5",
        "--slurm-bin-dir",
        host["slurm_exporter_slurm_bin_dir"],
    ]
    assert env["SLURM_CONF"] == host["slurm_exporter_slurm_conf"]
    assert "User=slurm-exporter\n" in unit and "Group=slurm-exporter\n" in unit
    for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=\n"):
        assert line in unit
    forced = lab.unit("forced_login")
    assert "--slurm-bin-dir" not in forced and "SLURM_CONF" not in forced


def test_second_run_verifies_and_changes_nothing(lab: Lab, second: Run) -> None:
    changed = {h: s["changed"] for h, s in second.stats.items() if s["changed"]}
    assert changed == {}
    failed = {h for h, s in second.stats.items() if s["failures"]}
    assert failed == FAILING
    for host in HEADS:
        (verdict,) = [r for r in second.results(host, "serves slurm_up") if not r.get("skipped")]
        assert not verdict.get("failed"), verdict
        assert "slurm_up 1" in verdict["msg"], verdict["msg"]


def test_check_mode_changes_nothing(check: Run) -> None:
    assert {h for h, s in check.stats.items() if s["changed"]} == set()
