"""The fsx_lustre role end to end on this machine, against fake nodes (no Lustre, no network).

Each inventory host is one scenario: ``ansible_connection: local``, the role's internal paths
pointed at a fake node under tmp_path (module tree, mountinfo, repository directories), its OS
facts overridden for the RedHat scenarios, and a per-host PATH whose stand-in ``uname``,
``modinfo``, ``apt-get``, ``apt-mark``, ``dnf`` and ``lctl`` record their arguments. Repository
keys come from file:// URLs. One ansible-playbook run covers every scenario; a second run proves
idempotence and a check-mode run on a fresh node proves check mode changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from .. import harness
from ..harness import calls, local_inventory, role_playbook
from .conftest import KEY, KEY_FINGERPRINT, OTHER_KEY, make_node

pytestmark = pytest.mark.slow

KERNEL = "6.8.0-1021-aws"
OLD_KERNEL = "6.8.0-1015-aws"
RHEL_KERNEL = "5.14.0-427.13.1.el9_4.x86_64"
AL_KERNEL = "6.1.115-126.197.amzn2023.x86_64"
VERMAGIC = f"{KERNEL} SMP mod_unload modversions"
UBUNTU = {
    "__fsx_lustre_os_family": "Debian",
    "__fsx_lustre_distribution": "Ubuntu",
    "__fsx_lustre_distribution_release": "noble",
    "__fsx_lustre_distribution_major_version": "24",
}
RHEL = {
    "__fsx_lustre_os_family": "RedHat",
    "__fsx_lustre_distribution": "RedHat",
    "__fsx_lustre_distribution_release": "Plow",
    "__fsx_lustre_distribution_major_version": "9",
}
AMAZON = {
    "__fsx_lustre_os_family": "RedHat",
    "__fsx_lustre_distribution": "Amazon",
    "__fsx_lustre_distribution_release": "",
    "__fsx_lustre_distribution_major_version": "2023",
}
APT_KEY = {
    "fsx_lustre_apt_key_url": KEY.as_uri(),
    "fsx_lustre_apt_key_fingerprint": KEY_FINGERPRINT,
}
RPM_KEY = {
    "fsx_lustre_rpm_key_url": KEY.as_uri(),
    # Spaced, lower case: the role normalises it.
    "fsx_lustre_rpm_key_fingerprint": " ".join(
        KEY_FINGERPRINT.lower()[i : i + 4] for i in range(0, 40, 4)
    ),
}
LCTL = {
    "ldlm.namespaces._.lru_max_age": ["3900000", "3900000", "3900000"],
    "osc._OST_.max_rpcs_in_flight": ["8", "8"],
    "mdc._.max_rpcs_in_flight": ["64"],
    "mdc._.max_mod_rpcs_in_flight": ["7"],
}


class Run(harness.Run):
    status_fact = "fsx_lustre_status"


@dataclass
class Lab(harness.Lab):
    run_class = Run
    pipelining = True


def _scenarios(tmp: Path) -> dict[str, dict]:
    hosts: dict[str, dict] = {}

    def node(name: str, kernel: str, os_vars: dict, node_args: dict | None = None, **role_vars):
        hosts[name] = {
            **make_node(tmp / name, kernel, **(node_args or {})),
            **os_vars,
            **role_vars,
        }

    # The AMI's module matches the kernel: nothing to do (a key is set, never used).
    node("present", KERNEL, UBUNTU, {"vermagic": VERMAGIC, "module_kernels": (KERNEL,)}, **APT_KEY)
    # No module at all: install from the FSx apt repository, Amazon Linux and RHEL repositories.
    node("missing_ubuntu", KERNEL, UBUNTU, **APT_KEY, fsx_lustre_kernel_hold=True)
    node("missing_al2023", AL_KERNEL, AMAZON)
    node("missing_rhel", RHEL_KERNEL, RHEL, **RPM_KEY, fsx_lustre_kernel_hold=True)
    # The kernel moved past the module: modinfo sees the old build, or only the old tree has one.
    node(
        "mismatch_modinfo",
        KERNEL,
        UBUNTU,
        {"vermagic": f"{OLD_KERNEL} SMP mod_unload modversions"},
        **APT_KEY,
    )
    node(
        "mismatch_no_install",
        KERNEL,
        UBUNTU,
        {"module_kernels": (OLD_KERNEL,)},
        **APT_KEY,
        fsx_lustre_install=False,
    )
    # The repository key is not the pinned one; or no fingerprint is pinned at all.
    node(
        "bad_key",
        KERNEL,
        UBUNTU,
        fsx_lustre_apt_key_url=OTHER_KEY.as_uri(),
        fsx_lustre_apt_key_fingerprint=KEY_FINGERPRINT,
    )
    node("no_fingerprint", KERNEL, UBUNTU)
    # Mounts: missing, of another type (failure, and warning only), and the lab's bind mount.
    present = {"vermagic": VERMAGIC, "module_kernels": (KERNEL,)}
    node("mount_missing", KERNEL, UBUNTU, {**present, "mountinfo": "mountinfo_no_fsx"}, **APT_KEY)
    node("mount_nfs", KERNEL, UBUNTU, {**present, "mountinfo": "mountinfo_fsx_nfs"}, **APT_KEY)
    node(
        "mount_nfs_warn",
        KERNEL,
        UBUNTU,
        {**present, "mountinfo": "mountinfo_fsx_nfs"},
        **APT_KEY,
        fsx_lustre_fail_on_missing_mount=False,
    )
    node(
        "lab",
        "6.1.0-28-amd64",
        {},
        {"mountinfo": "mountinfo_lab"},
        fsx_lustre_expected_mounts=[{"mount_dir": "/fsx", "fs_type": "any"}],
    )
    # Tuning on a node with two Lustre mounts; one parameter already has its value.
    node(
        "tuned",
        KERNEL,
        UBUNTU,
        {**present, "lctl": LCTL},
        **APT_KEY,
        fsx_lustre_tuning=True,
        fsx_lustre_expected_mounts=[
            {"mount_dir": "/fsx", "fs_type": "lustre"},
            {"mount_dir": "/mnt/team data"},
        ],
    )
    # Only ever run in check mode.
    node("missing_check", KERNEL, UBUNTU, **APT_KEY, fsx_lustre_kernel_hold=True)
    return hosts


FAILING = {"mismatch_no_install", "bad_key", "no_fingerprint", "mount_missing", "mount_nfs"}
CHECKED = ["missing_check", "missing_ubuntu", "missing_rhel", "present", "tuned", "mount_missing"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    tmp = tmp_path_factory.mktemp("fsx")
    playbook = role_playbook("fsx_lustre", environment={"PATH": "{{ stub_path }}"})
    return Lab.create(tmp, local_inventory(_scenarios(tmp)), playbook)


@pytest.fixture(scope="module")
def first(lab: Lab) -> Run:
    return lab.run("--limit", "all:!missing_check")


@pytest.fixture(scope="module")
def second(lab: Lab, first: Run) -> Run:
    return lab.run("--limit", "all:!missing_check")


@pytest.fixture(scope="module")
def check(lab: Lab, second: Run) -> Run:
    return lab.run("--check", "--limit", ",".join(CHECKED))


def test_every_scenario_ends_as_expected(first: Run) -> None:
    failed = {h for h, s in first.stats.items() if s["failures"]}
    assert failed == FAILING, {h: first.failure(h)[:400] for h in failed ^ FAILING}


def test_matching_module_changes_nothing(lab: Lab, first: Run) -> None:
    status = first.status("present")
    assert status["kernel"] == KERNEL and status["module_state"] == "present"
    assert first.stats["present"]["changed"] == 0
    assert calls(lab.node("present"), "apt-get") == []
    assert not (lab.node("present") / "etc/apt/sources.list.d").exists()


def test_missing_module_installs_the_kernels_package_from_the_signed_repo(
    lab: Lab, first: Run
) -> None:
    node = lab.node("missing_ubuntu")
    assert calls(node, "apt-get") == [
        "update",
        f"install -y --no-install-recommends lustre-client-modules-{KERNEL} "
        "lustre-client-modules-aws",
    ]
    assert first.status("missing_ubuntu")["module_state"] == "present"
    # The checked key is what apt trusts, and the repository is signed by it.
    keyring = node / "etc/apt/keyrings/fsx-lustre-client.asc"
    assert keyring.read_bytes() == KEY.read_bytes()
    sources = (node / "etc/apt/sources.list.d/fsx-lustre-client.list").read_text()
    assert (
        f"deb [signed-by={keyring}] https://fsx-lustre-client-repo.s3.amazonaws.com/ubuntu "
        "noble main" in sources
    )
    assert sources.startswith("#") and "Ansible managed" in sources
    # Kernel held through the AWS kernel meta packages.
    assert calls(node, "apt-mark") == [
        "showhold",
        "hold linux-aws linux-image-aws linux-headers-aws",
    ]


def test_amazon_linux_installs_lustre_client_from_its_own_repositories(
    lab: Lab, first: Run
) -> None:
    node = lab.node("missing_al2023")
    assert calls(node, "dnf") == ["install -y lustre-client"]
    assert not (node / "etc/yum.repos.d").exists()
    assert first.status("missing_al2023")["module_state"] == "present"


def test_rhel_installs_kmod_from_the_fsx_repo_and_accepts_weak_modules(
    lab: Lab, first: Run
) -> None:
    node = lab.node("missing_rhel")
    assert calls(node, "dnf")[:1] == ["install -y kmod-lustre-client lustre-client"]
    repo = (node / "etc/yum.repos.d/aws-fsx.repo").read_text()
    key = node / "etc/pki/rpm-gpg/RPM-GPG-KEY-aws-fsx"
    assert "baseurl=https://fsx-lustre-client-repo.s3.amazonaws.com/el/9/$basearch/" in repo
    assert "gpgcheck=1" in repo and f"gpgkey=file://{key}" in repo
    assert key.read_bytes() == KEY.read_bytes()
    status = first.status("missing_rhel")
    assert status["module_state"] == "present" and "weak module" in status["module_detail"]
    assert calls(node, "dnf")[1:] == [
        "-q versionlock list",
        "-q versionlock add kernel kernel-core kernel-modules",
    ]


def test_kernel_module_mismatch_is_detected_and_fixed(lab: Lab, first: Run) -> None:
    (why,) = first.ran("mismatch_modinfo", "say why the client is installed")
    assert f"built for {OLD_KERNEL}, but the running kernel is {KERNEL}" in why["msg"]
    assert f"lustre-client-modules-{KERNEL}" in calls(lab.node("mismatch_modinfo"), "apt-get")[1]
    assert first.status("mismatch_modinfo")["module_state"] == "present"


def test_mismatch_without_install_fails_with_what_to_do(lab: Lab, first: Run) -> None:
    message = first.failure("mismatch_no_install")
    assert f"installed only for {OLD_KERNEL}, but the running kernel is {KERNEL}" in message
    assert f"install lustre-client-modules-{KERNEL} lustre-client-modules-aws" in message
    assert "fsx_lustre_kernel_hold: true" in message
    assert calls(lab.node("mismatch_no_install"), "apt-get") == []


def test_key_fingerprint_mismatch_fails_before_anything_is_trusted(lab: Lab, first: Run) -> None:
    node = lab.node("bad_key")
    message = first.failure("bad_key")
    assert "483B92E4A0716640F5DB2422CE1467F4BBB57F9B" in message
    assert f"expected {KEY_FINGERPRINT}" in message and "was not trusted" in message
    assert list((node / "etc/apt/keyrings").iterdir()) == []
    assert list((node / "etc/apt/sources.list.d").iterdir()) == []
    assert calls(node, "apt-get") == []


def test_install_without_a_pinned_fingerprint_is_refused(lab: Lab, first: Run) -> None:
    message = first.failure("no_fingerprint")
    assert "set fsx_lustre_apt_key_fingerprint to the 40-hex fingerprint" in message
    # Refused in preflight: the probe (uname -r) never ran.
    assert "-r" not in calls(lab.node("no_fingerprint"), "uname")


def test_missing_lustre_mount_fails_clearly(first: Run) -> None:
    message = first.failure("mount_missing")
    assert message.startswith(
        "Mount check failed on mount_missing: /fsx is not mounted (no entry in "
    )
    assert "SharedStorage" in message
    assert "/fsx is mounted as nfs4 from ip-10-0-0-12.ec2.internal:/fsx, expected lustre" in (
        first.failure("mount_nfs")
    )
    (warning,) = first.ran("mount_nfs_warn", "warn about missing mounts")
    assert warning["msg"].startswith("WARNING: mount_nfs_warn: /fsx is mounted as nfs4")


def test_odd_mountinfo_lines_are_reported_and_skipped(first: Run) -> None:
    (note,) = first.ran("present", "report what mountinfo could not parse")
    assert "ignored 2 line(s)" in note["msg"]
    (verdict,) = first.ran("present", "assert the expected mounts")
    assert "/fsx lustre 10.0.0.71@tcp:/abcdefgh" in verdict["msg"]


def test_lab_skips_the_module_and_passes_the_bind_mount(lab: Lab, first: Run) -> None:
    (skip,) = first.ran("lab", "skip the client module")
    assert skip["msg"].startswith("lab: no Lustre client/mount on this node (lab)")
    (verdict,) = first.ran("lab", "assert the expected mounts")
    assert "/fsx ext4 /dev/sda1" in verdict["msg"]
    assert first.stats["lab"]["changed"] == 0
    assert not (lab.node("lab") / "cache").exists()


def test_tuning_sets_only_values_that_differ(lab: Lab, first: Run) -> None:
    sets = [c for c in calls(lab.node("tuned"), "lctl") if c.startswith("set_param")]
    assert sets == [
        "set_param ldlm.namespaces.*.lru_max_age=600000",
        "set_param osc.*OST*.max_rpcs_in_flight=32",
        "set_param mdc.*.max_mod_rpcs_in_flight=50",
    ]
    state = lab.node("tuned") / "state"
    assert (state / "lctl-ldlm.namespaces._.lru_max_age").read_text() == "600000\n" * 3
    assert first.status("tuned")["expected_mounts"][1]["mount_dir"] == "/mnt/team data"


def test_second_run_changes_nothing(lab: Lab, second: Run) -> None:
    changed = {h: s["changed"] for h, s in second.stats.items() if s["changed"]}
    assert changed == {}
    assert {h for h, s in second.stats.items() if s["failures"]} == FAILING
    # Nothing installed, held or tuned again.
    assert len(calls(lab.node("missing_ubuntu"), "apt-get")) == 2
    assert calls(lab.node("missing_ubuntu"), "apt-mark")[-1] == "showhold"
    assert len([c for c in calls(lab.node("tuned"), "lctl") if c.startswith("set_param")]) == 3


def test_check_mode_predicts_and_changes_nothing(lab: Lab, check: Run) -> None:
    node = lab.node("missing_check")
    (say,) = check.ran("missing_check", "say why the client is installed")
    assert say["msg"].startswith("missing_check: Lustre client module missing")
    assert f"would install lustre-client-modules-{KERNEL} lustre-client-modules-aws" in say["msg"]
    assert calls(node, "apt-get") == [] and calls(node, "apt-mark") == ["showhold"]
    assert not (node / "etc/apt/keyrings/fsx-lustre-client.asc").exists()
    assert not (node / "cache").exists()
    converged = {h: s["changed"] for h, s in check.stats.items() if h != "missing_check"}
    assert set(converged.values()) == {0}, converged
    assert "/fsx is not mounted" in check.failure("mount_missing")
