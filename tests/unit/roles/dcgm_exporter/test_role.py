"""The dcgm_exporter role end to end on this machine, on fake nodes (no GPU, docker or systemd).

Each inventory host is one scenario with ``ansible_connection: local``: the role's internal paths
(/dev/nvidia0, nvidia-smi, unit and tmpfiles directories) and its public paths (configuration,
job-mapping directory, helper, ParallelCluster's prolog.d/epilog.d) point into tmp_path, docker is
a stub that records its calls and "has" the image once pulled, and service management is off.
One run covers every scenario; a second proves idempotence, a check-mode run that check mode
changes nothing but predicts a pull.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .. import harness
from ..harness import Run, local_inventory, role_playbook
from .test_counters import parse, render

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[4]
DEFAULTS = yaml.safe_load((ROOT / "roles/dcgm_exporter/defaults/main.yml").read_text())
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}[os.uname().machine]
IMAGE = (
    f"{DEFAULTS['dcgm_exporter_image_repository']}:{DEFAULTS['dcgm_exporter_image_tag']}"
    f"@{DEFAULTS['dcgm_exporter_image_digests'][ARCH]}"
)
HOOK = "50_xpu_dcgm_job_map"

DOCKER_STUB = """#!/bin/bash
# docker stand-in: records each call; 'image inspect' succeeds once 'pull' ran.
here=$(dirname "$0")
printf '%s\\n' "$*" >>"$here/docker.log"
case "$1 ${2:-}" in
  "image inspect")
    [ -e "$here/pulled" ] && { echo sha256:feed; exit 0; }
    echo "No such image" >&2; exit 1 ;;
  "pull "*) touch "$here/pulled"; exit 0 ;;
esac
exit 0
"""


class Lab(harness.Lab):
    timeout = 600


def _node(base: Path, gpu: bool = True, smi: bool = True, docker: bool = True) -> dict:
    for directory in (
        "etc/systemd/system",
        "etc/tmpfiles.d",
        "usr/local/sbin",
        "run",
        "dev",
        "usr/bin",
    ):
        (base / directory).mkdir(parents=True, exist_ok=True)
    for directory in ("opt/slurm/etc/scripts/prolog.d", "opt/slurm/etc/scripts/epilog.d"):
        (base / directory).mkdir(parents=True, exist_ok=True)
    if gpu:
        (base / "dev/nvidia0").write_text("")
    if smi:
        (base / "usr/bin/nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
    if docker:
        (base / "usr/bin/docker").write_text(DOCKER_STUB)
        (base / "usr/bin/docker").chmod(0o755)
    return {
        "__dcgm_exporter_manage_service": False,
        "__dcgm_exporter_gpu_device": str(base / "dev/nvidia0"),
        "__dcgm_exporter_nvidia_smi": str(base / "usr/bin/nvidia-smi"),
        "__dcgm_exporter_unit_dir": str(base / "etc/systemd/system"),
        "__dcgm_exporter_tmpfiles_dir": str(base / "etc/tmpfiles.d"),
        "dcgm_exporter_container_engine": str(base / "usr/bin/docker"),
        "dcgm_exporter_config_dir": str(base / "etc/xpu-dcgm-exporter"),
        "dcgm_exporter_job_mapping_dir": str(base / "run/xpu-dcgm-job-map"),
        "dcgm_exporter_job_map_helper": str(base / "usr/local/sbin/xpu-dcgm-job-map"),
        "dcgm_exporter_slurm_prolog_dir": str(base / "opt/slurm/etc/scripts/prolog.d"),
        "dcgm_exporter_slurm_epilog_dir": str(base / "opt/slurm/etc/scripts/epilog.d"),
    }


FAILING = {"required_without_gpu", "native_missing", "no_arm_digest"}
CHECKED = ["gpu_docker", "no_gpu", "check_fresh"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    tmp = tmp_path_factory.mktemp("dcgm_exporter")
    hosts = {
        # Lab nodes and CPU queues: nothing at all, or a driver without a GPU (ParallelCluster's
        # AMIs carry nvidia-smi on CPU instances too).
        "no_gpu": _node(tmp / "no_gpu", gpu=False, smi=False, docker=False),
        "smi_only": _node(tmp / "smi_only", gpu=False),
        "required_without_gpu": {
            **_node(tmp / "required_without_gpu", gpu=False, smi=False),
            "dcgm_exporter_require_gpu": True,
        },
        # A GPU node: the pinned image under docker, the host's DCGM.
        "gpu_docker": _node(tmp / "gpu_docker"),
        # Native binary with its own engine, no job mapping.
        "gpu_native": {
            **_node(tmp / "gpu_native", docker=False),
            "dcgm_exporter_runtime": "native",
            "dcgm_exporter_binary": "/bin/true",
            "dcgm_exporter_hostengine": "embedded",
            "dcgm_exporter_job_mapping": False,
        },
        "native_missing": {
            **_node(tmp / "native_missing", docker=False),
            "dcgm_exporter_runtime": "native",
            "dcgm_exporter_binary": str(tmp / "native_missing/usr/bin/dcgm-exporter"),
        },
        # No digest for this architecture: refuses to pull by tag.
        "no_arm_digest": {
            **_node(tmp / "no_arm_digest"),
            "dcgm_exporter_image_digests": {ARCH: ""},
        },
        # Only ever run in check mode.
        "check_fresh": _node(tmp / "check_fresh"),
    }
    return Lab.create(tmp, local_inventory(hosts), role_playbook("dcgm_exporter"))


@pytest.fixture(scope="module")
def first(lab: Lab) -> Run:
    return lab.run("--limit", "all:!check_fresh")


@pytest.fixture(scope="module")
def second(lab: Lab, first: Run) -> Run:
    return lab.run("--limit", "all:!check_fresh")


@pytest.fixture(scope="module")
def check(lab: Lab, second: Run) -> Run:
    return lab.run("--check", "--diff", "--limit", ",".join(CHECKED))


def test_every_scenario_ends_as_expected(first: Run) -> None:
    failed = {h for h, s in first.stats.items() if s["failures"]}
    assert failed == FAILING, {h: first.failure(h)[:400] for h in failed ^ FAILING}


@pytest.mark.parametrize(
    ("host", "device", "smi"),
    [("no_gpu", "missing", "missing"), ("smi_only", "missing", "present")],
)
def test_node_without_gpu_is_skipped_with_a_message(
    lab: Lab, first: Run, host: str, device: str, smi: str
) -> None:
    (skip,) = first.ran(host, "skip a node without an NVIDIA GPU")
    node = lab.node(host)
    assert skip["msg"] == (
        f"no NVIDIA GPU on {host} ({node}/dev/nvidia0 {device}, {node}/usr/bin/nvidia-smi {smi}): "
        "skipping dcgm-exporter"
    )
    assert first.stats[host]["changed"] == 0
    assert not (node / "etc/xpu-dcgm-exporter").exists()
    assert not list((node / "opt/slurm/etc/scripts/prolog.d").iterdir())


def test_required_gpu_missing_fails_with_what_to_do(first: Run) -> None:
    message = first.failure("required_without_gpu")
    assert "no NVIDIA GPU" in message and "dcgm_exporter_require_gpu is true" in message
    assert "run `nvidia-smi`" in message


def test_gpu_node_gets_the_counters_the_fast_test_checks(lab: Lab, first: Run) -> None:
    csv = (lab.node("gpu_docker") / "etc/xpu-dcgm-exporter/counters.csv").read_text()
    assert parse(csv) == parse(render())
    assert "# Ansible managed" in csv.splitlines()[:3]


def test_unit_runs_the_pinned_image_with_job_mapping(lab: Lab, first: Run) -> None:
    node = lab.node("gpu_docker")
    unit = (node / "etc/systemd/system/xpu-dcgm-exporter.service").read_text()
    (exec_start,) = [x for x in unit.splitlines() if x.startswith("ExecStart=")]
    argv = shlex.split(exec_start.partition("=")[2])
    assert argv[:2] == [str(node / "usr/bin/docker"), "run"]
    assert IMAGE in argv and "@sha256:" in IMAGE
    after = argv[argv.index(IMAGE) + 1 :]
    mapdir = str(node / "run/xpu-dcgm-job-map")
    assert after == [
        "-f", "/etc/dcgm-exporter/xpu-counters.csv",
        "-a", ":9400",
        "-c", "30000",
        "-r", "127.0.0.1:5555",
        "--hpc-job-mapping-dir", mapdir,
    ]  # fmt: skip
    assert (
        f"{node}/etc/xpu-dcgm-exporter/counters.csv:/etc/dcgm-exporter/xpu-counters.csv:ro" in argv
    )
    assert f"{mapdir}:{mapdir}:ro" in argv
    assert (
        f"ExecStartPre=-{node}/usr/local/sbin/xpu-dcgm-job-map --dir {mapdir} --max-gpus 64 cleanup"
        in unit
    )
    assert "After=network-online.target docker.service nvidia-dcgm.service" in unit
    tmpfiles = (node / "etc/tmpfiles.d/xpu-dcgm-job-map.conf").read_text()
    assert f"d {mapdir} 0755 root root -" in tmpfiles.splitlines()
    # The image was pulled once, by digest.
    log = (node / "usr/bin/docker.log").read_text().splitlines()
    assert [x for x in log if x.startswith("pull")] == [f"pull {IMAGE}"]


def test_native_unit_without_job_mapping(lab: Lab, first: Run) -> None:
    node = lab.node("gpu_native")
    unit = (node / "etc/systemd/system/xpu-dcgm-exporter.service").read_text()
    assert (
        "ExecStart=/bin/true -f " + f"{node}/etc/xpu-dcgm-exporter/counters.csv -a :9400 -c 30000\n"
        in unit
    )
    assert "hpc-job-mapping-dir" not in unit and "ExecStartPre" not in unit and "docker" not in unit
    assert not list((node / "opt/slurm/etc/scripts/prolog.d").iterdir())


def test_missing_runtime_and_missing_digest_fail_clearly(first: Run) -> None:
    assert "native_missing/usr/bin/dcgm-exporter is missing" in first.failure("native_missing")
    message = first.failure("no_arm_digest")
    assert (
        f"dcgm_exporter_image_digests.{ARCH} must be that tag's sha256 manifest digest" in message
    )
    assert "docker buildx imagetools inspect" in message


def test_installed_hooks_are_shellcheck_clean_and_map_a_real_job(lab: Lab, first: Run) -> None:
    node = lab.node("gpu_docker")
    prolog = node / "opt/slurm/etc/scripts/prolog.d" / HOOK
    epilog = node / "opt/slurm/etc/scripts/epilog.d" / HOOK
    assert prolog.stat().st_mode & 0o777 == 0o755
    proc = subprocess.run(["shellcheck", str(prolog), str(epilog)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    mapdir = node / "run/xpu-dcgm-job-map"
    env = {"PATH": os.environ["PATH"], "SLURM_JOB_ID": "4242", "SLURM_JOB_GPUS": "0,3"}
    assert subprocess.run([str(prolog)], env=env, check=False).returncode == 0
    assert sorted(p.name for p in mapdir.iterdir() if p.name.isdigit()) == ["0", "3"]
    assert (mapdir / "3").read_text() == "4242\n"
    assert subprocess.run([str(epilog)], env=env, check=False).returncode == 0
    assert not [p for p in mapdir.iterdir() if p.name.isdigit()]


def test_hook_on_a_node_without_the_helper_does_nothing(
    lab: Lab, first: Run, tmp_path: Path
) -> None:
    # The hook directory is shared by every node; a CPU node lacks the helper.
    hook = tmp_path / HOOK
    text = (lab.node("gpu_docker") / "opt/slurm/etc/scripts/prolog.d" / HOOK).read_text()
    hook.write_text(
        text.replace(str(lab.node("gpu_docker") / "usr/local/sbin"), str(tmp_path / "absent"))
    )
    hook.chmod(0o755)
    proc = subprocess.run(
        [str(hook)], env={"SLURM_JOB_ID": "1", "SLURM_JOB_GPUS": "0"}, capture_output=True
    )
    assert proc.returncode == 0 and proc.stderr == b""


def test_second_run_changes_nothing(lab: Lab, second: Run) -> None:
    assert {h: s["changed"] for h, s in second.stats.items() if s["changed"]} == {}
    assert {h for h, s in second.stats.items() if s["failures"]} == FAILING
    log = (lab.node("gpu_docker") / "usr/bin/docker.log").read_text().splitlines()
    assert len([x for x in log if x.startswith("pull")]) == 1


def test_check_mode_predicts_the_pull_and_writes_nothing(lab: Lab, check: Run) -> None:
    assert {h for h, s in check.stats.items() if s["changed"]} == {"check_fresh"}
    assert not {h for h, s in check.stats.items() if s["failures"]}
    (say,) = check.ran("check_fresh", "predict the pull")
    assert say["msg"] == f"check_fresh: would pull {IMAGE}"
    node = lab.node("check_fresh")
    assert not (node / "etc/xpu-dcgm-exporter").exists()
    assert not (node / "usr/local/sbin/xpu-dcgm-job-map").exists()
    assert not list((node / "etc/systemd/system").iterdir())
    assert not (node / "usr/bin/pulled").exists()
    assert shutil.which("shellcheck")
