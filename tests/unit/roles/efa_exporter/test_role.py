"""The efa_exporter role end to end on this machine, on fake nodes (no lab, no systemd, no EFA).

Each inventory host is one scenario with ``ansible_connection: local``: the role's internal paths
(``__efa_exporter_sysfs_root``, ``__efa_exporter_unit_dir``) and ``efa_exporter_script_path`` point
under tmp_path, and ``__efa_exporter_manage_service: false`` leaves systemd alone (this machine
has no systemd as PID 1). Instead the test plays systemd: after the first run (verification off)
it starts each node's exporter from the ExecStart line of the unit the role rendered, then the
second run verifies every node through the role's own scrape-and-assert step and proves
idempotence, and a check-mode run changes nothing. The pip path installs a stand-in
prometheus-client wheel from a local directory (its real sha256), since tests reach no index.

Left for the lab integration test: systemd starting the hardened unit (DynamicUser, sandboxing),
the restart handler, and the distribution package install.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import shlex
import shutil
import signal
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .. import harness
from ..harness import free_port, local_inventory, role_playbook
from .conftest import ROLE, SCRIPT, make_sysfs

pytestmark = pytest.mark.slow

PIN = "0.26.0"


class Run(harness.Run):
    # The scrape's own failure is ignored; the assertion after it reports.
    quiet_failures = ("scrape the exporter",)

    def message(self, result: dict) -> str:
        return super().message(result) + result.get("stderr", "")


@dataclass
class Lab(harness.Lab):
    hosts: dict
    daemons: list = field(default_factory=list)
    run_class = Run

    def unit(self, name: str) -> Path:
        return self.node(name) / "systemd" / "efa_exporter.service"

    def env(self) -> dict[str, str]:
        return {**super().env(), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

    def start_from_unit(self, name: str, sysfs_root: Path | None = None) -> list[str]:
        """Start the node's exporter as systemd would, from the rendered ExecStart line."""
        (line,) = [
            x for x in self.unit(name).read_text().splitlines() if x.startswith("ExecStart=")
        ]
        argv = shlex.split(line.removeprefix("ExecStart="))
        if sysfs_root is not None:
            argv[argv.index("--sysfs-root") + 1] = str(sysfs_root)
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.daemons.append(proc)
        return argv


def fake_wheel(directory: Path) -> str:
    """A stand-in prometheus_client-0.26.0 wheel (pip installs it offline); returns its sha256."""
    dist = f"prometheus_client-{PIN}.dist-info"
    files = {
        "prometheus_client/__init__.py": b"STAND_IN = True\n",
        f"{dist}/METADATA": (
            f"Metadata-Version: 2.1\nName: prometheus-client\nVersion: {PIN}\n"
        ).encode(),
        f"{dist}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    files[f"{dist}/RECORD"] = ("\n".join([*record, f"{dist}/RECORD,,"]) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"prometheus_client-{PIN}-py3-none-any.whl").write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def _scenarios(tmp: Path) -> dict:
    hosts: dict = {}
    wheels = tmp / "wheels"
    wheel_sha256 = fake_wheel(wheels)

    def node(name: str, efa: int, mellanox: int = 0, **role_vars) -> None:
        base = tmp / name
        make_sysfs(base / "sys", efa, mellanox=mellanox)
        (base / "systemd").mkdir()  # /etc/systemd/system exists on every node
        hosts[name] = {
            "__efa_exporter_sysfs_root": str(base / "sys"),
            "__efa_exporter_unit_dir": str(base / "systemd"),
            "__efa_exporter_manage_service": False,
            "__efa_exporter_verify_retries": 20,
            "__efa_exporter_verify_delay": 0.25,
            "efa_exporter_script_path": str(base / "libexec" / "xpu" / "efa_exporter.py"),
            "efa_exporter_python": sys.executable,
            "efa_exporter_install_method": "package",
            "efa_exporter_packages": [],
            "efa_exporter_port": free_port(),
            "efa_exporter_listen_address": "127.0.0.1",
            **role_vars,
        }

    # Healthy: a p4d-like node (4 EFA + 1 Mellanox).
    node("p4d", 4, mellanox=1)
    # Without EFA: skipped by default; run anyway when asked (serves efa_devices 0), here also
    # listening on every address and without the systemd sandboxing.
    node("cpu_skipped", 0, mellanox=2)
    node(
        "cpu_forced",
        0,
        efa_exporter_skip_without_devices=False,
        efa_exporter_listen_address="0.0.0.0",
        efa_exporter_systemd_hardening=False,
    )
    # Broken: nothing answers on the port; an exporter that serves fewer devices than the node has.
    node("not_answering", 1, __efa_exporter_verify_retries=0)
    node("wrong_count", 2, __efa_exporter_verify_retries=0)
    # The pip path: a virtualenv from a local wheel directory, hash-checked; and a wrong hash.
    pip = {
        "efa_exporter_install_method": "pip",
        "efa_exporter_pip_extra_args": ["--no-index", f"--find-links={wheels}"],
        "efa_exporter_verify": False,
    }
    for name, digest in (("pip_venv", wheel_sha256), ("pip_bad_hash", "0" * 64)):
        node(name, 1, efa_exporter_pip_sha256=[digest], **pip)
        hosts[name]["efa_exporter_venv_dir"] = str(tmp / name / "venv")
        del hosts[name]["efa_exporter_python"]
    return hosts


FAILING = {"not_answering", "wrong_count", "pip_bad_hash"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("efa_exporter")
    hosts = _scenarios(tmp)
    lab = Lab.create(tmp, local_inventory(hosts), role_playbook("efa_exporter"), hosts)
    yield lab
    for proc in lab.daemons:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)


@pytest.fixture(scope="module")
def first(lab: Lab) -> Run:
    return lab.run("-e", "efa_exporter_verify=false")


@pytest.fixture(scope="module")
def second(lab: Lab, first: Run) -> Run:
    # systemd's part: start each installed node's exporter from its rendered unit.
    for name in ("p4d", "cpu_forced"):
        lab.start_from_unit(name)
    # An exporter reading a tree with one device fewer than the node's.
    lab.start_from_unit("wrong_count", sysfs_root=lab.node("not_answering") / "sys")
    return lab.run()


@pytest.fixture(scope="module")
def check(lab: Lab, second: Run) -> Run:
    return lab.run("--check", "--limit", "p4d,cpu_skipped,pip_venv,not_answering")


def test_first_run_installs_every_node_it_should(lab: Lab, first: Run) -> None:
    failed = {h for h, s in first.stats.items() if s["failures"]}
    assert failed == {"pip_bad_hash"}, {h: first.failure(h)[:400] for h in failed}
    for name in ("p4d", "cpu_forced", "not_answering", "wrong_count", "pip_venv"):
        installed = Path(lab.hosts[name]["efa_exporter_script_path"])
        assert installed.read_bytes() == SCRIPT.read_bytes(), name
        assert installed.stat().st_mode & 0o777 == 0o755
        assert lab.unit(name).is_file(), name
        # The restart handler was notified (and skipped: no systemd here).
        (handler,) = first.results(name, "Restart efa_exporter")
        assert handler.get("skipped"), handler


def test_node_without_efa_is_skipped_with_a_message(lab: Lab, first: Run) -> None:
    (skip,) = first.ran("cpu_skipped", "skip a node without EFA")
    assert skip["msg"] == (
        f"no EFA devices on cpu_skipped (PCI vendor 0x1d0f under "
        f"{lab.hosts['cpu_skipped']['__efa_exporter_sysfs_root']}/class/infiniband: only mlx5_0, "
        "mlx5_1); skipping efa_exporter "
        "(set efa_exporter_skip_without_devices: false to run it anyway)"
    )
    assert first.stats["cpu_skipped"]["changed"] == 0
    assert not lab.node("cpu_skipped").joinpath("libexec").exists()
    assert not lab.unit("cpu_skipped").exists()
    assert not first.ran("cpu_forced", "skip a node without EFA")


def test_rendered_unit(lab: Lab, first: Run) -> None:
    host = lab.hosts["p4d"]
    text = lab.unit("p4d").read_text()
    assert "# Ansible managed" in text.splitlines()[:3]
    (line,) = [x for x in text.splitlines() if x.startswith("ExecStart=")]
    assert shlex.split(line.removeprefix("ExecStart=")) == [
        sys.executable,
        host["efa_exporter_script_path"],
        *("--listen-address", "127.0.0.1"),
        *("--port", str(host["efa_exporter_port"])),
        *("--sysfs-root", host["__efa_exporter_sysfs_root"]),
    ]
    for option in (
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectKernelTunables=yes",
        "PrivateDevices=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "Restart=on-failure",
        "WantedBy=multi-user.target",
    ):
        assert option in text.splitlines(), option
    # Hardening off: none of the sandboxing lines.
    forced = lab.unit("cpu_forced").read_text()
    assert "ProtectSystem" not in forced and "DynamicUser" not in forced
    assert "--listen-address 0.0.0.0" in forced


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_rendered_units_pass_systemd_analyze(lab: Lab, first: Run) -> None:
    for name in ("p4d", "cpu_forced"):
        proc = subprocess.run(
            ["systemd-analyze", "verify", str(lab.unit(name))],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        # Unknown keys or syscall groups are only warnings: none is allowed.
        assert proc.returncode == 0 and proc.stderr == "", (name, proc.stderr)


def test_pip_installs_the_pinned_hash_checked_client(lab: Lab, first: Run) -> None:
    venv = Path(lab.hosts["pip_venv"]["efa_exporter_venv_dir"])
    requirements = (venv.parent / "requirements.txt").read_text()
    digest = lab.hosts["pip_venv"]["efa_exporter_pip_sha256"][0]
    assert f"prometheus-client=={PIN} --hash=sha256:{digest}" in requirements.splitlines()
    proc = subprocess.run(
        [str(venv / "bin" / "python3"), "-c", "import prometheus_client as p; print(p.STAND_IN)"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.stdout.strip() == "True", proc.stderr
    (line,) = [x for x in lab.unit("pip_venv").read_text().splitlines() if "ExecStart" in x]
    assert shlex.split(line.removeprefix("ExecStart="))[0] == f"{venv}/bin/python3"
    # A wrong hash stops pip before anything is installed.
    assert "HASH" in first.failure("pip_bad_hash").upper()
    bad = Path(lab.hosts["pip_bad_hash"]["efa_exporter_venv_dir"])
    assert not list(bad.glob("lib/python*/site-packages/prometheus_client"))


def test_second_run_verifies_and_changes_nothing(lab: Lab, second: Run) -> None:
    changed = {h: s["changed"] for h, s in second.stats.items() if s["changed"]}
    assert changed == {}
    failed = {h for h, s in second.stats.items() if s["failures"]}
    assert failed == FAILING, {h: second.failure(h)[:400] for h in failed ^ FAILING}
    assert not second.results("p4d", "Restart efa_exporter")


@pytest.mark.parametrize(
    ("host", "devices"),
    # cpu_forced listens on 0.0.0.0: the role scrapes it on loopback.
    [("p4d", "4 (rdmap16s27, rdmap32s27, rdmap144s27, rdmap160s27)"), ("cpu_forced", "0")],
)
def test_verify_scrapes_the_running_exporter(
    lab: Lab, second: Run, host: str, devices: str
) -> None:
    (verdict,) = second.ran(host, "check that the exporter serves")
    assert not verdict.get("failed"), verdict
    port = lab.hosts[host]["efa_exporter_port"]
    assert verdict["msg"] == (
        f"efa_exporter on {host} serves http://127.0.0.1:{port}/metrics: efa_devices {devices}"
    )


def test_verify_fails_clearly(lab: Lab, second: Run) -> None:
    message = second.failure("not_answering")
    port = lab.hosts["not_answering"]["efa_exporter_port"]
    assert message.startswith(
        f"efa_exporter on not_answering does not answer as it should at "
        f"http://127.0.0.1:{port}/metrics: HTTP -1"
    )
    assert "journalctl -u efa_exporter" in message
    message = second.failure("wrong_count")
    assert "efa_devices is 1, expected 2 (rdmap16s27, rdmap32s27)" in message


def test_check_mode_changes_nothing(lab: Lab, check: Run) -> None:
    changed = {h: s["changed"] for h, s in check.stats.items() if s["changed"]}
    assert changed == {}
    failed = {h for h, s in check.stats.items() if s["failures"]}
    assert failed == {"not_answering"}
    # Verification still runs in check mode (a read-only GET).
    (verdict,) = check.ran("p4d", "check that the exporter serves")
    assert not verdict.get("failed")


def test_role_ships_what_the_tests_use() -> None:
    tasks = (ROLE / "tasks" / "detect.yml").read_text()
    assert re.search(r"efa_exporter\.py --list-devices", tasks)
