"""The nvidia_container role end to end on this machine, against fake nodes (no GPU, no network).

Each inventory host is one scenario: ``ansible_connection: local``, the role's internal paths
pointed at a fake node under tmp_path, its OS facts overridden for the RedHat scenarios, and a
per-host PATH whose stand-in ``nvidia-smi``, ``docker``, ``nvidia-ctk``, ``apt-get``, ``dnf`` and
``systemctl`` record their arguments. Repository keys come from file:// URLs (test keys with
known fingerprints). One ansible-playbook run covers every scenario; a second run proves
idempotence and a check-mode run on a fresh node proves check mode changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from .. import harness
from ..harness import calls, local_inventory, role_playbook
from .conftest import KEY_A, KEY_A_FINGERPRINT, KEY_B, KEY_B_FINGERPRINT, make_node

pytestmark = pytest.mark.slow

UBUNTU = {
    "__nvidia_container_os_family": "Debian",
    "__nvidia_container_distribution": "Ubuntu",
    "__nvidia_container_distribution_version": "24.04",
    "__nvidia_container_distribution_major_version": "24",
    "__nvidia_container_distribution_release": "noble",
    "__nvidia_container_architecture": "x86_64",
}
RHEL = {
    "__nvidia_container_os_family": "RedHat",
    "__nvidia_container_distribution": "RedHat",
    "__nvidia_container_distribution_version": "9.4",
    "__nvidia_container_distribution_major_version": "9",
    "__nvidia_container_distribution_release": "Plow",
    "__nvidia_container_architecture": "x86_64",
}
AMAZON = {
    **RHEL,
    "__nvidia_container_distribution": "Amazon",
    "__nvidia_container_distribution_version": "2023",
    "__nvidia_container_distribution_major_version": "2023",
}
# Docker's key stands in as test key A, NVIDIA's as test key B.
KEYS = {
    "nvidia_container_docker_key_url": KEY_A.as_uri(),
    "nvidia_container_docker_key_fingerprint": KEY_A_FINGERPRINT,
    "nvidia_container_toolkit_key_url": KEY_B.as_uri(),
    "nvidia_container_toolkit_key_fingerprint": KEY_B_FINGERPRINT,
}
TOOLKIT = [
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-base",
    "libnvidia-container-tools",
    "libnvidia-container1",
]
CONFIGURED = {
    "runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}},
    "log-driver": "json-file",
}


class Run(harness.Run):
    status_fact = "nvidia_container_status"


@dataclass
class Lab(harness.Lab):
    run_class = Run
    pipelining = True


def _scenarios(tmp: Path) -> dict[str, dict]:
    hosts: dict[str, dict] = {}

    def node(name: str, os_vars: dict, node_args: dict, **role_vars) -> None:
        hosts[name] = {**make_node(tmp / name, **node_args), **os_vars, **KEYS, **role_vars}

    # A Deep Learning AMI: everything there and configured (older Docker: a warning only).
    dlami = {"nvidia_smi": True, "docker": "27.3.1", "ctk": "1.18.2", "service": (True, True)}
    node(
        "ami_has_it",
        UBUNTU,
        {**dlami, "daemon": CONFIGURED},
        nvidia_container_docker_users=["nosuchuser"],
    )
    # Docker and the toolkit there, daemon.json without the nvidia runtime.
    node("ami_unconfigured", UBUNTU, {**dlami, "daemon": {"log-driver": "json-file"}})
    # No GPU: skipped; the same node with require_gpu false is configured.
    no_gpu = {"docker": "28.5.2", "ctk": "1.18.2", "service": (True, True)}
    node("no_gpu", UBUNTU, no_gpu)
    node("no_gpu_forced", UBUNTU, no_gpu, nvidia_container_require_gpu=False)
    # Fresh GPU nodes (device node only, no driver tools yet) per OS.
    node("fresh_ubuntu", UBUNTU, {"gpu_device": True}, nvidia_container_default_runtime=True)
    node("fresh_rhel", RHEL, {"gpu_device": True})
    node(
        "fresh_al2023",
        AMAZON,
        {"gpu_device": True},
        nvidia_container_docker_distro_version="25.0.8",
    )
    node("al2023_no_version", AMAZON, {"gpu_device": True})
    # Only the toolkit is missing: Docker's repository is left alone.
    node("toolkit_only", UBUNTU, {"gpu_device": True, "docker": "28.5.2", "service": (True, True)})
    # Docker's key is not the pinned one.
    node(
        "bad_key",
        UBUNTU,
        {"gpu_device": True},
        nvidia_container_docker_key_fingerprint=KEY_B_FINGERPRINT,
    )
    # Missing tools with installing turned off.
    node("no_install", UBUNTU, {"nvidia_smi": True}, nvidia_container_install=False)
    # Only ever run in check mode.
    node("fresh_check", UBUNTU, {"gpu_device": True})
    return hosts


FAILING = {"al2023_no_version", "bad_key", "no_install"}
CHECKED = ["fresh_check", "fresh_ubuntu", "ami_has_it", "ami_unconfigured", "no_gpu", "fresh_rhel"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    tmp = tmp_path_factory.mktemp("nvct")
    playbook = role_playbook("nvidia_container", environment={"PATH": "{{ stub_path }}"})
    return Lab.create(tmp, local_inventory(_scenarios(tmp)), playbook)


@pytest.fixture(scope="module")
def first(lab: Lab) -> Run:
    return lab.run("--limit", "all:!fresh_check")


@pytest.fixture(scope="module")
def second(lab: Lab, first: Run) -> Run:
    return lab.run("--limit", "all:!fresh_check")


@pytest.fixture(scope="module")
def check(lab: Lab, second: Run) -> Run:
    return lab.run("--check", "--limit", ",".join(CHECKED))


def daemon(lab: Lab, host: str) -> dict:
    return json.loads((lab.node(host) / "etc/docker/daemon.json").read_text())


def test_every_scenario_ends_as_expected(first: Run) -> None:
    failed = {h for h, s in first.stats.items() if s["failures"]}
    assert failed == FAILING, {h: first.failure(h)[:400] for h in failed ^ FAILING}


def test_ami_that_has_everything_is_reported_and_left_alone(lab: Lab, first: Run) -> None:
    host = "ami_has_it"
    (report,) = first.ran(host, "report Docker and the toolkit the AMI already has")
    assert report["msg"].startswith(
        "WARNING: ami_has_it: Docker 27.3.1 and NVIDIA Container Toolkit 1.18.2"
        " already installed (AMI)"
    )
    assert "older than pinned: Docker 27.3.1 < 28.5.2" in report["msg"]
    assert first.stats[host]["changed"] == 0
    node = lab.node(host)
    assert calls(node, "apt-get") == [] and calls(node, "nvidia-ctk") == ["--version"]
    assert not (node / "etc/apt/sources.list.d").exists()
    assert "restart" not in " ".join(calls(node, "systemctl"))
    (warning,) = first.ran(host, "warn about users")
    assert "has no user nosuchuser" in warning["msg"]


def test_runtime_is_registered_once_and_docker_restarted_once(lab: Lab, first: Run) -> None:
    node = lab.node("ami_unconfigured")
    assert calls(node, "nvidia-ctk")[1:] == [
        f"runtime configure --runtime=docker --config={node}/etc/docker/daemon.json"
    ]
    config = daemon(lab, "ami_unconfigured")
    assert config["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"
    assert config["log-driver"] == "json-file" and "default-runtime" not in config
    assert [c for c in calls(node, "systemctl") if c.startswith("restart")] == ["restart docker"]


def test_node_without_gpu_is_skipped_with_a_message(lab: Lab, first: Run) -> None:
    (skip,) = first.ran("no_gpu", "skip a node without an NVIDIA GPU")
    assert skip["msg"].startswith("no NVIDIA GPU on no_gpu (no ")
    assert "no working nvidia-smi" in skip["msg"]
    assert calls(lab.node("no_gpu"), "nvidia-ctk") == ["--version"]
    assert calls(lab.node("no_gpu"), "systemctl") == []
    assert not (lab.node("no_gpu") / "etc/docker/daemon.json").exists()
    # require_gpu false: the same node is configured.
    assert "runtimes" in daemon(lab, "no_gpu_forced")


def test_fresh_ubuntu_installs_pinned_packages_from_signed_repos(lab: Lab, first: Run) -> None:
    node = lab.node("fresh_ubuntu")
    release = "5:28.5.2-1~ubuntu.24.04~noble"
    assert calls(node, "apt-get") == [
        "update",
        f"install -y --no-install-recommends docker-ce={release} docker-ce-cli={release} "
        + " ".join(f"{p}=1.18.2-1" for p in TOOLKIT),
    ]
    keyrings = node / "etc/apt/keyrings"
    assert (keyrings / "docker.asc").read_bytes() == KEY_A.read_bytes()
    assert (keyrings / "nvidia-container-toolkit.asc").read_bytes() == KEY_B.read_bytes()
    sources = node / "etc/apt/sources.list.d"
    assert (
        f"deb [arch=amd64 signed-by={keyrings}/docker.asc] https://download.docker.com/linux/ubuntu"
        " noble stable\n" in (sources / "docker.list").read_text()
    )
    assert (
        f"deb [arch=amd64 signed-by={keyrings}/nvidia-container-toolkit.asc] "
        "https://nvidia.github.io/libnvidia-container/stable/deb/amd64 /\n"
        in (sources / "nvidia-container-toolkit.list").read_text()
    )
    status = first.status("fresh_ubuntu")
    assert status["docker_version"] == "28.5.2" and status["toolkit_version"] == "1.18.2"
    assert daemon(lab, "fresh_ubuntu")["default-runtime"] == "nvidia"
    assert calls(node, "nvidia-ctk")[-1].endswith("--set-as-default")
    assert {"enable docker", "start docker"} <= set(calls(node, "systemctl"))


def test_rhel_repo_files_check_signatures(lab: Lab, first: Run) -> None:
    node = lab.node("fresh_rhel")
    assert calls(node, "dnf") == [
        "install -y docker-ce-3:28.5.2-1.el9 docker-ce-cli-1:28.5.2-1.el9 "
        + " ".join(f"{p}-1.18.2-1" for p in TOOLKIT)
    ]
    gpg = node / "etc/pki/rpm-gpg"
    docker = (node / "etc/yum.repos.d/docker-ce.repo").read_text()
    assert "baseurl=https://download.docker.com/linux/rhel/$releasever/$basearch/stable" in docker
    assert "gpgcheck=1" in docker and f"gpgkey=file://{gpg}/RPM-GPG-KEY-docker-ce" in docker
    nvidia = (node / "etc/yum.repos.d/nvidia-container-toolkit.repo").read_text()
    assert "repo_gpgcheck=1" in nvidia
    assert "baseurl=https://nvidia.github.io/libnvidia-container/stable/rpm/$basearch" in nvidia
    assert (gpg / "RPM-GPG-KEY-nvidia-container-toolkit").read_bytes() == KEY_B.read_bytes()


def test_amazon_linux_takes_docker_from_its_own_repositories(lab: Lab, first: Run) -> None:
    node = lab.node("fresh_al2023")
    assert calls(node, "dnf") == [
        "install -y docker-25.0.8 " + " ".join(f"{p}-1.18.2-1" for p in TOOLKIT)
    ]
    assert sorted(p.name for p in (node / "etc/yum.repos.d").iterdir()) == [
        "nvidia-container-toolkit.repo"
    ]
    assert "nvidia_container_docker_distro_version" in first.failure("al2023_no_version")


def test_only_the_missing_toolkit_is_installed(lab: Lab, first: Run) -> None:
    node = lab.node("toolkit_only")
    assert calls(node, "apt-get")[1] == "install -y --no-install-recommends " + " ".join(
        f"{p}=1.18.2-1" for p in TOOLKIT
    )
    assert sorted(p.name for p in (node / "etc/apt/sources.list.d").iterdir()) == [
        "nvidia-container-toolkit.list"
    ]


def test_key_fingerprint_mismatch_fails_before_anything_is_trusted(lab: Lab, first: Run) -> None:
    node = lab.node("bad_key")
    message = first.failure("bad_key")
    assert f"has the fingerprint(s) {KEY_A_FINGERPRINT}, expected {KEY_B_FINGERPRINT}" in message
    assert "It was not trusted" in message
    assert list((node / "etc/apt/keyrings").iterdir()) == []
    assert list((node / "etc/apt/sources.list.d").iterdir()) == []
    assert calls(node, "apt-get") == []


def test_missing_tools_without_install_fail_clearly(first: Run) -> None:
    message = first.failure("no_install")
    assert "Docker and nvidia-ctk (NVIDIA container toolkit) missing" in " ".join(message.split())
    assert "nvidia_container_install is false" in message


def test_second_run_changes_nothing(lab: Lab, second: Run) -> None:
    changed = {h: s["changed"] for h, s in second.stats.items() if s["changed"]}
    assert changed == {}
    assert {h for h, s in second.stats.items() if s["failures"]} == FAILING
    for host in ("ami_unconfigured", "fresh_ubuntu"):
        node = lab.node(host)
        assert len([c for c in calls(node, "nvidia-ctk") if c.startswith("runtime")]) == 1
        assert len([c for c in calls(node, "systemctl") if c.startswith("restart")]) == 1
    assert len(calls(lab.node("fresh_ubuntu"), "apt-get")) == 2


def test_check_mode_predicts_and_changes_nothing(lab: Lab, check: Run) -> None:
    node = lab.node("fresh_check")
    (say,) = check.ran("fresh_check", "say what is installed")
    assert say["msg"].startswith(
        "fresh_check: would install docker-ce=5:28.5.2-1~ubuntu.24.04~noble"
    )
    (predict,) = check.ran("fresh_check", "predict the runtime registration")
    assert "would run nvidia-ctk runtime configure --runtime=docker" in predict["msg"]
    assert calls(node, "apt-get") == [] and calls(node, "systemctl") == []
    assert not (node / "etc").exists() and not (node / "cache").exists()
    converged = {h: s["changed"] for h, s in check.stats.items() if h != "fresh_check"}
    assert set(converged.values()) == {0}, converged
