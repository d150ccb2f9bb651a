"""The pyxis role end to end on this machine, against fake nodes (no lab, no network, no Slurm).

Each inventory host is one scenario: ``ansible_connection: local`` with every path of the role
pointed into its own fake node under tmp_path (see conftest.py). One ansible-playbook run covers
every scenario; a second run proves idempotence, and a check-mode run proves check mode writes
nothing. The playbook's handler listening to ``xpu restart slurmd`` stands in for role
slurmd_drain_restart and logs each restart request, so the tests count them.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from .. import harness
from ..harness import local_inventory, role_playbook
from .conftest import (
    ENROOT_VERSION,
    FIXTURES,
    PLUGIN,
    PYXIS_VERSION,
    enroot_arch,
    make_enroot_packages,
    make_node,
    make_package_tool,
    make_pyxis_repo,
    make_systemctl,
    node_vars,
)

# Runs ansible-playbook against the role: part of `make test`, not the fast `make check`.
pytestmark = pytest.mark.slow

PLUGSTACK = "opt/slurm/etc/plugstack.conf"
PYXIS_CONF = "opt/slurm/etc/plugstack.conf.d/pyxis.conf"
ENROOT_CONF = "etc/enroot/enroot.conf"
FSX_FSTAB = "etc/enroot/mounts.d/50-xpu-fsx.fstab"
STAMP = "var/lib/xpu-pyxis/slurmd-plugstack.sha256"


class Run(harness.Run):
    status_fact = "pyxis_status"


@dataclass
class Lab(harness.Lab):
    tagged: str
    later: str
    run_class = Run
    timeout = 900

    def restarts(self, name: str) -> int:
        log = self.tmp / name / "restarts.log"
        return len(log.read_text().splitlines()) if log.exists() else 0

    def env(self) -> dict[str, str]:
        return {**super().env(), "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def _scenarios(tmp: Path, tagged: str, later: str) -> dict[str, dict]:
    hosts: dict[str, dict] = {}
    repo = (tmp / "src" / "pyxis").as_uri()
    dist = tmp / "dist"
    sums = make_enroot_packages(dist)

    def node(name: str, node_kwargs: dict | None = None, mounted: bool = False, **role_vars):
        base = make_node(tmp / name, **(node_kwargs or {}))
        hosts[name] = {
            **node_vars(base, mounted=mounted),
            "restart_log": str(base / "restarts.log"),
            **role_vars,
        }
        return base

    # Official AMI, compute node: enroot and Pyxis installed but disabled, NVMe mounted, /fsx
    # present, slurmd enabled (found through systemctl), no plugstack.conf yet.
    base = node(
        "ami_compute",
        mounted=True,
        pyxis_enroot_extra_settings={
            "ENROOT_MAX_PROCESSORS": "$(nproc)",
            "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
        },
        pyxis_container_scope="job",
        pyxis_plugin_extra_args=["use_squashfuse=1"],
    )
    hosts["ami_compute"]["__pyxis_systemctl"] = make_systemctl(base, "enabled")
    # Official AMI, login node: slurmd disabled, no NVMe, no /fsx, and a plugstack.conf from an
    # older setup (Pyxis listed directly, another plugin, the include with odd spacing).
    base = node("ami_login", {"fsx": False, "plugstack": "plugstack_old_direct_pyxis.conf"})
    hosts["ami_login"]["__pyxis_systemctl"] = make_systemctl(base, "disabled")
    # Pyxis switched off on a node where an earlier run enabled it.
    node(
        "disabled",
        {"pyxis_conf": "required /somewhere/spank_pyxis.so\n"},
        pyxis_enabled=False,
        pyxis_restart_slurmd=True,
    )
    # Nothing installed: enroot from stand-in packages (file://, real sha256), Pyxis built from
    # the stand-in repository at its tagged commit against the fake Slurm headers.
    base = node(
        "install_all",
        {"enroot": None, "plugin": False},
        mounted=True,
        pyxis_restart_slurmd=True,
        pyxis_enroot_url_base=dist.as_uri(),
        pyxis_enroot_sha256=sums,
        pyxis_git_repo=repo,
        pyxis_git_commit=tagged,
    )
    hosts["install_all"]["pyxis_enroot_install_command"] = make_package_tool(base)
    # The lab: neither enroot nor Pyxis, and nothing may be installed.
    node(
        "lab_bare",
        {"enroot": None, "plugin": False},
        pyxis_install=False,
        pyxis_restart_slurmd=True,
    )
    # ... and one with enroot but no plugin, whose play turns the /fsx mount off.
    node(
        "lab_enroot_only",
        {"plugin": False},
        pyxis_install=False,
        pyxis_restart_slurmd=True,
        pyxis_enroot_fsx_mount="",
    )
    # Refused before anything is written or installed.
    node("no_checksum", {"enroot": None, "plugin": False}, pyxis_restart_slurmd=True)
    node(
        "unreachable",
        {"enroot": None},
        pyxis_restart_slurmd=True,
        pyxis_enroot_url_base=(tmp / "nowhere").as_uri(),
        pyxis_enroot_sha256=sums,
    )
    node("allow_http", pyxis_enroot_extra_settings={"ENROOT_ALLOW_HTTP": "yes"})
    node(
        "wrong_commit",
        {"plugin": False},
        pyxis_restart_slurmd=True,
        pyxis_git_repo=repo,
        pyxis_git_commit=later,
    )
    node("bad_value", pyxis_enroot_extra_settings={"ENROOT_TRANSFER_RETRIES": '"3'})
    node("no_slurm", {"slurm": False})
    # Only in the check-mode run: an AMI node nobody configured yet.
    base = node("check_fresh", mounted=True)
    hosts["check_fresh"]["__pyxis_systemctl"] = make_systemctl(base, "enabled")
    return hosts


FAILING = {"no_checksum", "unreachable", "allow_http", "wrong_commit", "bad_value", "no_slurm"}
CHECKED = ["check_fresh", "ami_compute", "install_all", "lab_bare", "disabled"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    tmp = tmp_path_factory.mktemp("pyxis")
    tagged, later = make_pyxis_repo(tmp / "src" / "pyxis")
    hosts = _scenarios(tmp, tagged, later)
    playbook = role_playbook(
        "pyxis",
        handlers=[
            {
                "name": "Stand-in for slurmd_drain_restart",
                "ansible.builtin.shell": "echo restart >> {{ restart_log | quote }}",
                "listen": "xpu restart slurmd",
            }
        ],
    )
    return Lab.create(tmp, local_inventory(hosts), playbook, tagged=tagged, later=later)


@pytest.fixture(scope="module")
def first(lab: Lab) -> Run:
    return lab.run("--limit", "all:!check_fresh")


@pytest.fixture(scope="module")
def second(lab: Lab, first: Run) -> Run:
    return lab.run("--limit", "all:!check_fresh")


@pytest.fixture(scope="module")
def check(lab: Lab, second: Run) -> Run:
    return lab.run("--check", "--limit", ",".join(CHECKED))


def _settings(text: str) -> dict[str, str]:
    """enroot.conf as enroot reads it: KEY VALUE lines, comments and blank lines ignored."""
    found = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            assert key not in found, f"{key} set twice"
            found[key] = value.strip()
    return found


def test_every_scenario_ends_as_expected(first: Run) -> None:
    failed = {h for h, s in first.stats.items() if s["failures"]}
    assert failed == FAILING, {h: first.failure(h)[:400] for h in failed ^ FAILING}
    assert first.rc == 2


def test_ami_node_is_only_configured_and_enabled(lab: Lab, first: Run) -> None:
    node = lab.node("ami_compute")
    status = first.status("ami_compute")
    assert status["enroot_installed"] is True and status["enroot_version"] == ENROOT_VERSION
    assert status["plugin_installed"] is True and status["restart_slurmd"] is True
    assert status["install_enroot"] is False and status["build_pyxis"] is False
    # Nothing installed: no download directory, the enroot script and plugin untouched.
    assert not (node / "var/cache/xpu-pyxis").exists()
    assert first.skipped("ami_compute", "install the enroot packages")
    assert first.skipped("ami_compute", "fetch the pinned Pyxis source")
    assert (node / PLUGIN).read_bytes() == b"\x7fELF stand-in spank_pyxis.so\n"
    # plugstack.conf created with the include only; pyxis.conf with the plugin and its options.
    assert (node / PLUGSTACK).read_text() == f"include {node}/opt/slurm/etc/plugstack.conf.d/*\n"
    lines = [x for x in (node / PYXIS_CONF).read_text().splitlines() if x and not x.startswith("#")]
    assert lines == [
        f"required {node / PLUGIN} runtime_path=/run/pyxis execute_entrypoint=0"
        " container_scope=job sbatch_support=1 use_enroot_load=0 use_squashfuse=1"
    ]
    assert "Ansible managed" in (node / PYXIS_CONF).read_text()
    # The AMI's example files stay as they were.
    assert (
        (node / "opt/parallelcluster/examples/pyxis/pyxis.conf")
        .read_text()
        .startswith("# Example Pyxis")
    )
    # srun, following plugstack.conf, now offers Pyxis' options.
    (verdict,) = first.ran("ami_compute", "assert that enroot and Pyxis are ready")
    assert "srun offers --container-image" in verdict["msg"]


def test_enroot_storage_is_on_local_nvme_with_shared_sticky_dirs(lab: Lab, first: Run) -> None:
    node = lab.node("ami_compute")
    text = (node / ENROOT_CONF).read_text()
    assert "Ansible managed" in text
    settings = _settings(text)
    store = node / "scratch/enroot"
    assert settings == {
        "ENROOT_RUNTIME_PATH": f"{store}/runtime/user-${{UID}}",
        "ENROOT_CACHE_PATH": f"{store}/cache/user-${{UID}}",
        "ENROOT_DATA_PATH": f"{store}/data/user-${{UID}}",
        "ENROOT_TEMP_PATH": f"{store}/tmp",
        "ENROOT_SQUASH_OPTIONS": "-noI -noD -noF -noX -no-duplicates",
        "ENROOT_ROOTFS_WRITABLE": "yes",
        "ENROOT_MOUNT_HOME": "no",
        "ENROOT_RESTRICT_DEV": "no",
        "ENROOT_MAX_PROCESSORS": "$(nproc)",
        "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
    }
    assert oct(store.stat().st_mode & 0o7777) == "0o755"
    for sub in ("runtime", "cache", "data", "tmp"):
        assert oct((store / sub).stat().st_mode & 0o7777) == "0o1777", sub
    assert not (node / "var/tmp/enroot").exists()
    assert first.skipped("ami_compute", "warn that enroot storage falls back")


def test_enroot_expands_uid_in_the_rendered_paths(lab: Lab, first: Run) -> None:
    """enroot's own config reader (bash, `eval echo` per value) accepts the file and expands UID."""
    conf = lab.node("ami_compute") / ENROOT_CONF
    reader = (
        "while IFS=$' \\t=' read -r key value; do"
        ' if [[ "$key" == ENROOT_RUNTIME_PATH ]]; then eval echo "$value"; fi; done < "$1"'
    )
    out = subprocess.run(
        ["bash", "-c", reader, "reader", str(conf)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().endswith(f"/runtime/user-{os.getuid()}")


def test_fsx_is_mounted_into_containers_where_present(lab: Lab, first: Run) -> None:
    node = lab.node("ami_compute")
    entries = [
        x for x in (node / FSX_FSTAB).read_text().splitlines() if x and not x.startswith("#")
    ]
    assert entries == [f"{node}/fsx {node}/fsx none x-create=dir,bind,rw,nosuid,nodev"]
    assert not (lab.node("ami_login") / FSX_FSTAB).exists()


def test_compute_node_asks_for_one_drained_restart(lab: Lab, first: Run) -> None:
    assert lab.restarts("ami_compute") == 1
    (ask,) = first.ran("ami_compute", "ask for a slurmd restart")
    assert ask["changed"] is True
    stamp = (lab.node("ami_compute") / STAMP).read_text().splitlines()
    assert [line.split()[0] for line in stamp] == [
        str(lab.node("ami_compute") / p) for p in (PLUGSTACK, PYXIS_CONF, PLUGIN)
    ]
    assert all(re.fullmatch(r"[0-9a-f]{64}", line.split()[1]) for line in stamp)


def test_login_node_cleans_plugstack_and_never_restarts_slurmd(lab: Lab, first: Run) -> None:
    node = lab.node("ami_login")
    status = first.status("ami_login")
    assert status["restart_slurmd"] is False and status["local_storage_mounted"] is False
    assert (node / PLUGSTACK).read_text().splitlines() == [
        *(FIXTURES / "plugstack_old_direct_pyxis.conf").read_text().splitlines()[:2],
        "optional /usr/lib/slurm/spank_other.so",
        f"include {node}/opt/slurm/etc/plugstack.conf.d/*",
    ]
    assert lab.restarts("ami_login") == 0
    assert first.skipped("ami_login", "ask for a slurmd restart")
    assert not (node / STAMP).exists()
    # No NVMe: the fallback directory, with a warning.
    (warning,) = first.ran("ami_login", "warn that enroot storage falls back")
    assert warning["msg"].startswith(f"WARNING: {node}/scratch is not a mount point on ami_login")
    settings = _settings((node / ENROOT_CONF).read_text())
    assert settings["ENROOT_CACHE_PATH"] == f"{node}/var/tmp/enroot/cache/user-${{UID}}"
    assert oct((node / "var/tmp/enroot/runtime").stat().st_mode & 0o7777) == "0o1777"


def test_disabling_removes_pyxis_conf_and_restarts(lab: Lab, first: Run) -> None:
    node = lab.node("disabled")
    assert not (node / PYXIS_CONF).exists()
    assert lab.restarts("disabled") == 1
    assert "absent" in (node / STAMP).read_text()
    (verdict,) = first.ran("disabled", "assert that enroot and Pyxis are ready")
    assert "disabled" in verdict["msg"]


def test_install_installs_pinned_enroot_and_builds_pinned_pyxis(lab: Lab, first: Run) -> None:
    node = lab.node("install_all")
    (line,) = (node / "install.log").read_text().splitlines()
    cache = node / "var/cache/xpu-pyxis"
    args = line.split()
    assert args[:2] == ["install", "-y"]
    assert [Path(a).name for a in args[2:]] == [
        f"enroot_{ENROOT_VERSION}-1_{enroot_arch()}.deb",
        f"enroot+caps_{ENROOT_VERSION}-1_{enroot_arch()}.deb",
    ]
    assert all(Path(a).parent == cache for a in args[2:])
    plugin = (node / PLUGIN).read_text()
    assert plugin == (f"stand-in pyxis {PYXIS_VERSION} built with -I{node}/opt/slurm/include\n")
    assert oct((node / PLUGIN).stat().st_mode & 0o777) == "0o644"
    status = first.status("install_all")
    assert status["enroot_installed"] is True and status["plugin_installed"] is True
    assert status["enroot_version"] == ENROOT_VERSION
    assert (node / PYXIS_CONF).read_text().count(f"required {node / PLUGIN} ") == 1
    assert lab.restarts("install_all") == 1
    (verdict,) = first.ran("install_all", "assert that enroot and Pyxis are ready")
    assert "srun offers --container-image" in verdict["msg"]


def test_lab_node_reports_what_is_missing_without_failing(lab: Lab, first: Run) -> None:
    for host in ("lab_bare", "lab_enroot_only"):
        node = lab.node(host)
        assert first.stats[host]["failures"] == 0
        (warning,) = first.ran(host, "warn about what is missing")
        assert warning["msg"].startswith(f"WARNING: pyxis on {host}: missing ")
        assert "pyxis_install is false" in warning["msg"]
        assert f"the Pyxis plugin ({node / PLUGIN})" in warning["msg"]
        # Never a `required` line for a plugin that is not there, never a restart.
        assert not (node / PLUGSTACK).exists() and not (node / PYXIS_CONF).exists()
        assert lab.restarts(host) == 0
        assert not (node / "var/cache/xpu-pyxis").exists()
    assert "enroot (" in first.ran("lab_bare", "warn about what is missing")[0]["msg"]
    assert not (lab.node("lab_bare") / ENROOT_CONF).exists()
    # enroot that is there is configured; no /fsx mount when it is turned off ("").
    node = lab.node("lab_enroot_only")
    assert "ENROOT_RUNTIME_PATH" in (node / ENROOT_CONF).read_text()
    assert (node / "fsx").is_dir() and not (node / FSX_FSTAB).exists()
    assert first.status("lab_enroot_only")["fsx_mount"] is None


def test_install_without_pins_is_refused_clearly(lab: Lab, first: Run) -> None:
    message = first.failure("no_checksum")
    assert message.startswith("pyxis on no_checksum: enroot (no ")
    assert "and the Pyxis plugin (no " in message
    assert "pyxis_enroot_sha256 must map each of enroot_" in message
    assert "pyxis_git_commit must be the 40-hex commit that tag v0.24.0" in message
    assert "pyxis_install: false" in message
    assert not (lab.node("no_checksum") / "var/cache/xpu-pyxis").exists()


def test_unreachable_packages_fail_with_what_to_do(lab: Lab, first: Run) -> None:
    (explained,) = first.ran("unreachable", "explain the failed enroot install")
    message = explained["msg"]
    assert message.startswith(
        f"pyxis on unreachable: enroot {ENROOT_VERSION} is not installed and could not be"
        " installed: Request failed: <urlopen error [Errno 2] No such file or directory:"
    ), message
    assert "(Pyxis | download the enroot packages (checksum verified))" in message
    assert "file:// directory" in message and "pyxis_install: false" in message
    assert not (lab.node("unreachable") / PLUGSTACK).exists()


def test_enroot_allow_http_is_refused(lab: Lab, first: Run) -> None:
    message = first.failure("allow_http")
    assert "never ENROOT_ALLOW_HTTP" in message
    assert (lab.node("allow_http") / ENROOT_CONF).read_text() == "# as the package ships it\n"


def test_no_rendered_enroot_conf_allows_http(lab: Lab, first: Run) -> None:
    rendered = [p for p in lab.tmp.glob(f"*/{ENROOT_CONF}") if "Ansible managed" in p.read_text()]
    assert len(rendered) >= 4
    for path in rendered:
        assert "ENROOT_ALLOW_HTTP" not in path.read_text(), path


def test_tag_and_commit_must_agree(lab: Lab, first: Run) -> None:
    message = first.failure("wrong_commit")
    assert f"tag v{PYXIS_VERSION} of " in message
    assert f"is {lab.tagged}" in message and f"pyxis_git_commit is {lab.later}" in message
    assert not (lab.node("wrong_commit") / PLUGIN).exists()


def test_enroot_conf_bash_cannot_parse_never_goes_live(lab: Lab, first: Run) -> None:
    assert "failed to validate" in first.failure("bad_value")
    assert (lab.node("bad_value") / ENROOT_CONF).read_text() == "# as the package ships it\n"


def test_node_without_slurm_is_refused(first: Run) -> None:
    assert first.failure("no_slurm").startswith("pyxis on no_slurm: no Slurm at ")


def test_second_run_changes_nothing_and_restarts_nothing(lab: Lab, second: Run) -> None:
    changed = {h: second.changed_tasks(h) for h, s in second.stats.items() if s["changed"]}
    assert changed == {}
    failed = {h for h, s in second.stats.items() if s["failures"]}
    assert failed == FAILING
    for host, count in {"ami_compute": 1, "install_all": 1, "disabled": 1, "ami_login": 0}.items():
        assert lab.restarts(host) == count, host
    assert len((lab.node("install_all") / "install.log").read_text().splitlines()) == 1
    lines = (lab.node("ami_login") / PLUGSTACK).read_text().splitlines()
    assert len([x for x in lines if x.startswith("include ")]) == 1


def test_a_new_node_on_shared_plugstack_restarts_once(lab: Lab, second: Run) -> None:
    """plugstack.conf lives on shared storage: a node whose run found it already written still
    restarts its own slurmd once (its fingerprint is new), and not again."""
    node = lab.node("ami_compute")
    (node / STAMP).unlink()
    rerun = lab.run("--limit", "ami_compute")
    assert [t.rpartition(" : ")[2] for t in rerun.changed_tasks("ami_compute")] == [
        "Pyxis | record the plugin stack slurmd runs with",
        "Pyxis | ask for a slurmd restart (drained first)",
        "Stand-in for slurmd_drain_restart",
    ]
    assert lab.restarts("ami_compute") == 2


def test_check_mode_predicts_and_writes_nothing(lab: Lab, check: Run) -> None:
    changed = {h for h, s in check.stats.items() if s["changed"]}
    assert changed == {"check_fresh"}, {h: check.changed_tasks(h) for h in changed}
    assert not any(s["failures"] for s in check.stats.values())
    node = lab.node("check_fresh")
    assert not (node / PLUGSTACK).exists() and not (node / PYXIS_CONF).exists()
    assert (node / ENROOT_CONF).read_text() == "# as the package ships it\n"
    assert not (node / "scratch/enroot").exists() and not (node / STAMP).exists()
    assert lab.restarts("check_fresh") == 0
    (ask,) = check.ran("check_fresh", "ask for a slurmd restart")
    assert ask["changed"] is True
