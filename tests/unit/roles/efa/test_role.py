"""The efa role end to end on this machine, against fake nodes (no lab, no network, no hardware).

Each inventory host is one scenario: ``ansible_connection: local``, with the role's internal
``__efa_sysfs_root`` / ``__efa_fi_info`` / ``__efa_installed_packages_file`` pointed at a fake
sysfs tree, a stub fi_info printing a recorded output and an installed-packages file under
tmp_path. One ansible-playbook run covers every scenario (forks run them in parallel); a second
run proves idempotence and a check-mode run proves check mode changes nothing it should not.
The install path downloads a stand-in installer tarball from a file:// URL (its real sha256).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .. import harness
from ..harness import local_inventory, role_playbook
from .conftest import (
    fixture,
    fixture_domains,
    make_fi_info,
    make_installer_tarball,
    make_sysfs,
)

# Runs ansible-playbook against the role: part of `make test`, not the fast `make check`.
pytestmark = pytest.mark.slow

PINNED = "1.41.0"
P6 = "fi_info_p6-b200_libfabric2.txt"


class Run(harness.Run):
    status_fact = "efa_status"
    status_task = "record what"


@dataclass
class Lab(harness.Lab):
    hosts: dict = field(default_factory=dict)
    run_class = Run

    def env(self) -> dict[str, str]:
        # The p5 scenario finds its fi_info on PATH; no other fi_info may be there.
        return {**super().env(), "PATH": f"{self.tmp / 'path'}:/usr/bin:/bin"}


def _scenarios(tmp: Path) -> dict[str, dict]:
    """Host name -> host vars. Every host gets its own fake node directory under tmp."""
    hosts: dict[str, dict] = {}

    def node(
        name: str,
        sysfs: dict,
        listing: str | None = None,
        installed: str | None = None,
        on_path: bool = False,
        **role_vars,
    ) -> None:
        base = tmp / name
        make_sysfs(base / "sys", **sysfs)
        fi_info = base / "opt/amazon/efa/bin/fi_info"
        if listing is None:
            # A name never on PATH: this node has no fi_info at all.
            fi_info = fi_info.with_name("fi_info-absent")
        elif on_path:
            # The configured path stays empty; the stub is found on PATH.
            make_fi_info(tmp / "path" / "fi_info", listing)
        else:
            make_fi_info(fi_info, listing)
        packages = base / "opt/amazon/efa_installed_packages"
        if installed is not None:
            packages.parent.mkdir(parents=True, exist_ok=True)
            packages.write_text(
                f"# EFA installer version: {installed}\n# Debug packages installed: no\n"
            )
        hosts[name] = {
            "__efa_sysfs_root": str(base / "sys"),
            "__efa_fi_info": str(fi_info),
            "__efa_installed_packages_file": str(packages),
            "efa_cache_dir": str(base / "cache"),
            "efa_prerequisites": [],
            **role_vars,
        }

    p6_b200 = {"product_name": "p6-b200.48xlarge"}
    p5 = {"product_name": "p5.48xlarge"}
    p5_listing = "fi_info_p5_libfabric1.txt"
    # A CPU node: no EFA, only Mellanox RDMA devices that must not count. (The lab covers a node
    # without any RDMA device; efa_detect.py's own tests cover 0, 1, 4, 8, 16 and 32 devices.)
    cpu = {"efa": 0, "mellanox": 2, "product_name": "c6i.xlarge"}
    node("cpu_mellanox", cpu, efa_expected_devices=0)
    # Healthy EFA nodes: type unknown; p6-b200 with a newer installer; p5 with fi_info on PATH.
    single = "fi_info_single_all_types.txt"
    node("single_unknown", {"efa": 1}, single, PINNED, efa_expected_devices=None)
    p6_sysfs = {"efa": fixture_domains(P6), "mellanox": 1, **p6_b200}
    node("p6_b200", p6_sysfs, P6, "1.43.3", efa_expected_devices=8)
    node("p5", {"efa": 32, **p5}, p5_listing, PINNED, on_path=True, efa_expected_devices=32)
    # Broken nodes: no devices at all, one device short, libfabric short of domains.
    node("required_missing", {"efa": 0}, efa_expected_devices=8, instance_type="p6-b200.48xlarge")
    node("p5_short", {"efa": 31, **p5}, p5_listing, PINNED, efa_expected_devices=32)
    p4d_listing = "fi_info_p4d_libfabric1.txt"
    node("libfabric_short", {"efa": 8, **p6_b200}, p4d_listing, PINNED, efa_expected_devices=8)
    # Older or missing installers: kept with a warning (efa_install false) or a failure
    # (efa_check_only).
    node("old_kept", {"efa": 8}, P6, "1.30.0", efa_expected_devices=8, efa_install=False)
    node("old_check_only", {"efa": 8}, P6, "1.30.0", efa_expected_devices=8, efa_check_only=True)
    node("bare_check_only", {"efa": 8}, efa_expected_devices=8, efa_check_only=True)
    # The install path, from a file:// URL: a node without EFA software (install_check only ever
    # runs in check mode), and a download whose checksum does not match.
    for name in ("install_fresh", "install_check"):
        tarball = tmp / "dist" / name / f"aws-efa-installer-{PINNED}.tar.gz"
        node(
            name,
            {"efa": 8, **p6_b200},
            efa_expected_devices=8,
            efa_installer_url=tarball.as_uri(),
            efa_installer_sha256=make_installer_tarball(tarball, PINNED, tmp / name, P6),
            efa_installer_flags=["--skip-kmod", "--skip-limit-conf"],
        )
        # Where the fake installer puts fi_info.
        hosts[name]["__efa_fi_info"] = str(tmp / name / "opt/amazon/efa/bin/fi_info")
    tarball = tmp / "dist" / "install_fresh" / f"aws-efa-installer-{PINNED}.tar.gz"
    node(
        "bad_checksum",
        {"efa": 8},
        efa_expected_devices=8,
        efa_installer_url=tarball.as_uri(),
        efa_installer_sha256="0" * 64,
    )
    return hosts


FAILING = {
    "required_missing",
    "p5_short",
    "libfabric_short",
    "old_check_only",
    "bare_check_only",
    "bad_checksum",
}


# The check-mode run: a node to install (never installed), one installed, one healthy, one
# without EFA, one broken.
CHECKED = ["install_check", "install_fresh", "p6_b200", "cpu_mellanox", "p5_short"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    tmp = tmp_path_factory.mktemp("efa")
    (tmp / "path").mkdir()
    hosts = _scenarios(tmp)
    return Lab.create(tmp, local_inventory(hosts), role_playbook("efa"), hosts=hosts)


@pytest.fixture(scope="module")
def first(lab: Lab) -> Run:
    return lab.run("--limit", "all:!install_check")


@pytest.fixture(scope="module")
def second(lab: Lab, first: Run) -> Run:
    return lab.run("--limit", "all:!install_check")


@pytest.fixture(scope="module")
def check(lab: Lab, second: Run) -> Run:
    return lab.run("--check", "--limit", ",".join(CHECKED))


def test_every_scenario_ends_as_expected(first: Run) -> None:
    failed = {h for h, s in first.stats.items() if s["failures"]}
    assert failed == FAILING, {h: first.failure(h)[:300] for h in failed ^ FAILING}
    assert first.rc == 2


@pytest.mark.parametrize("host", ["cpu_mellanox"])
def test_node_without_efa_is_skipped_with_a_message(first: Run, host: str) -> None:
    (skip,) = first.ran(host, "skip a node without EFA")
    assert (
        skip["msg"] == f"no EFA devices on {host} (expected 0): skipping install and verification"
    )
    assert first.stats[host]["changed"] == 0
    status = first.status(host)
    assert status["skipped"] is True and status["device_count"] == 0
    # Nothing downloaded, nothing verified.
    assert first.skipped(host, "download the installer")
    assert first.skipped(host, "assert the node")


def test_mellanox_devices_never_count(first: Run) -> None:
    assert first.status("cpu_mellanox")["other_rdma_devices"] == ["mlx5_0", "mlx5_1"]
    status = first.status("p6_b200")
    assert status["device_count"] == 8 and status["other_rdma_devices"] == ["mlx5_0"]


@pytest.mark.parametrize(
    ("host", "devices", "instance_type", "version"),
    [
        ("single_unknown", 1, None, PINNED),
        ("p6_b200", 8, "p6-b200.48xlarge", "1.43.3"),
        ("p5", 32, "p5.48xlarge", PINNED),
    ],
)
def test_healthy_nodes_pass_without_installing(
    first: Run, host: str, devices: int, instance_type: str | None, version: str
) -> None:
    status = first.status(host)
    assert status["device_count"] == devices
    assert status["fi_info_domain_count"] == devices
    assert status["instance_type"] == instance_type
    assert status["installer_version"] == version and status["install_needed"] is False
    (verdict,) = first.ran(host, "assert the node")
    assert not verdict.get("failed")
    assert f"{devices} devices in sysfs, {devices} libfabric EFA RDM domains" in verdict["msg"]
    assert first.skipped(host, "download the installer")
    assert first.stats[host]["changed"] == 0


def test_required_node_without_devices_fails_clearly(first: Run) -> None:
    message = first.failure("required_missing")
    assert message.startswith(
        "EFA check failed on required_missing (p6-b200.48xlarge): found 0 EFA devices"
    )
    assert "expected 8" in message
    assert "fi_info -p efa -t FI_EP_RDM" in message and "replace the node" in message
    # No software complaint on a node whose hardware is missing, and no download.
    assert "installer" not in message.split("What to do")[0]
    assert first.skipped("required_missing", "download the installer")


def test_node_short_of_devices_names_the_count_and_type(first: Run) -> None:
    message = first.failure("p5_short")
    assert (
        "EFA check failed on p5_short (p5.48xlarge): found 31 EFA devices (PCI vendor 0x1d0f)"
        in message
    )
    assert "expected 32" in message
    assert "reboot" in message and "check that p5.48xlarge has 32 EFA interfaces" in message


def test_libfabric_short_of_domains_fails(first: Run) -> None:
    message = first.failure("libfabric_short")
    assert "libfabric lists 4 EFA RDM domains (fi_info -p efa -t FI_EP_RDM), expected 8" in message
    assert "found 8 EFA devices" not in message


def test_older_installer_is_kept_with_a_warning_when_install_is_off(first: Run) -> None:
    (warning,) = first.ran("old_kept", "warn about an older installer")
    assert warning["msg"].startswith(
        "WARNING: old_kept has EFA installer 1.30.0, older than 1.41.0"
    )
    assert not first.failure("old_kept")
    assert first.skipped("old_kept", "run efa_installer.sh")


def test_check_only_fails_on_an_older_or_missing_installer(first: Run) -> None:
    assert "EFA installer 1.30.0 is older than the required 1.41.0" in first.failure(
        "old_check_only"
    )
    message = first.failure("bare_check_only")
    assert "libfabric does not answer: fi_info not found" in message
    assert "EFA installer none is older than the required 1.41.0" in message
    for host in ("old_check_only", "bare_check_only"):
        assert first.skipped(host, "download the installer")


def test_install_runs_the_pinned_installer_once_and_verifies(lab: Lab, first: Run) -> None:
    host = "install_fresh"
    node = lab.node(host)
    assert (node / "installer.log").read_text().splitlines() == [
        "--yes --skip-kmod --skip-limit-conf"
    ]
    assert (node / "cache" / f"aws-efa-installer-{PINNED}.tar.gz").is_file()
    status = first.status(host)
    assert status["installer_version"] == PINNED and status["install_needed"] is False
    assert status["fi_info_domain_count"] == 8
    (verdict,) = first.ran(host, "assert the node")
    assert not verdict.get("failed"), verdict
    assert first.stats[host]["changed"] >= 3  # directory, download, unpack, installer


def test_bad_checksum_stops_before_anything_runs(lab: Lab, first: Run) -> None:
    assert "checksum" in first.failure("bad_checksum").lower()
    assert not (lab.node("bad_checksum") / "installer.log").exists()


def test_second_run_changes_nothing(lab: Lab, second: Run) -> None:
    changed = {h: s["changed"] for h, s in second.stats.items() if s["changed"]}
    assert changed == {}
    failed = {h for h, s in second.stats.items() if s["failures"]}
    assert failed == FAILING
    assert len((lab.node("install_fresh") / "installer.log").read_text().splitlines()) == 1
    assert second.skipped("install_fresh", "download the installer")


def test_check_mode_predicts_the_install_and_changes_nothing_else(lab: Lab, check: Run) -> None:
    changed = {h for h, s in check.stats.items() if s["changed"]}
    assert changed == {"install_check"}
    node = lab.node("install_check")
    # Predicted, not done: no download, no unpack, no installer run, no EFA software.
    assert not (node / "cache" / f"aws-efa-installer-{PINNED}.tar.gz").exists()
    assert not (node / "installer.log").exists()
    assert not (node / "opt/amazon/efa_installed_packages").exists()
    (say,) = check.ran("install_check", "say why the installer runs")
    assert "would install" in say["msg"] and "--yes --skip-kmod --skip-limit-conf" in say["msg"]
    (verdict,) = check.ran("install_check", "assert the node")
    assert not verdict.get("failed") and "install predicted (check mode)" in verdict["msg"]
    # Check mode still fails a node that is broken whatever would be installed.
    assert "found 31 EFA devices" in check.failure("p5_short")


def test_fixture_installed_packages_match_what_the_fake_installer_writes(
    lab: Lab, first: Run
) -> None:
    written = (lab.node("install_fresh") / "opt/amazon/efa_installed_packages").read_text()
    assert written.splitlines()[:2] == fixture("efa_installed_packages_1.41.0").splitlines()[:2]
