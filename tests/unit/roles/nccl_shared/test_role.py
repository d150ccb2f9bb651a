"""The nccl_shared role end to end on this machine, against fake nodes and stand-in git repos.

Every inventory host is a fake node (``ansible_connection: local``) whose CUDA, Open MPI, EFA
and NVIDIA driver paths point into its own directory under tmp_path; every inventory group is one
cluster (one play, one shared root standing in for /fsx/nccl). The sources are the local
repositories of conftest.py, reached by file:// URLs and pinned by their real commits, so the
role runs its real build script: fetch by tag, commit check, make, lock, rename, manifest.

Runs: ``first`` (every cluster), ``second`` (changed=0), ``check`` (check mode on a cluster never
built and on built ones) and ``upgrade`` (a newer NCCL, by two ansible-playbook processes at once,
beside the old version of one cluster and on a cluster never built).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from .. import harness
from ..harness import local_inventory
from .conftest import NCCL_TAGS, OFI_TAG, TESTS_TAG, make_node, make_sources

# Runs ansible-playbook against the role: part of `make test`, not the fast `make check`.
pytestmark = pytest.mark.slow

ID = "2.29.2-1-cuda13.0-sm90-sm100"
NEW_ID = "2.29.3-1-cuda13.0-sm90-sm100"

# group -> (hosts in play order, group vars beyond the root). Node kinds: gpu (GPUs, no nvcc),
# build (nvcc and GPUs, bundled aws-ofi-nccl), head (nvcc, no GPU, no bundled plugin), lab (none).
CLUSTERS: dict[str, list[tuple[str, str, dict]]] = {
    # gpu_b comes first: the build host is the first host *with nvcc*, gpu_a.
    "fresh": [("gpu_b", "gpu", {}), ("gpu_a", "build", {}), ("lab_a", "lab", {})],
    # A node booting later with nccl_shared_build false, on the same storage as `fresh`.
    "boot": [("boot_a", "build", {"nccl_shared_build": False})],
    # A head node with nvcc, no GPU, no bundled plugin, and a half-copied version to replace.
    "ofi": [("head_ofi", "head", {})],
    "lab": [("lab_b", "lab", {})],
    "chk": [("chk_a", "build", {})],
    "race": [("race_a", "build", {})],
    # Last: a play whose hosts all fail ends the run.
    "fail": [("noarch_a", "build", {"nccl_shared_cuda_archs": []}), ("bad_a", "build", {})],
}
ROOTS = {"boot": "fresh"}
FAILING = {"noarch_a", "bad_a"}
ONLY_CHECK = ["chk_a"]
ONLY_UPGRADE = ["race_a"]


class Run(harness.Run):
    def status(self, host: str) -> dict:
        (fact,) = self.facts(host, "record the outcome", "nccl_shared_status")
        return fact


@dataclass
class Lab(harness.Lab):
    sources: object
    run_class = Run
    pipelining = True

    def node(self, host: str) -> Path:
        return self.tmp / "nodes" / host

    def root(self, group: str) -> Path:
        return self.tmp / "fsx" / ROOTS.get(group, group) / "nccl"

    def env_file(self, host: str) -> Path:
        return self.node(host) / "etc" / "profile.d" / "xpu-nccl.sh"


def _host_vars(tmp: Path, host: str, kind: str, extra: dict) -> dict:
    node = make_node(
        tmp / "nodes" / host,
        nvcc=kind in ("build", "head"),
        gpus={"gpu": 4, "build": 8}.get(kind, 0),
        bundled_ofi=kind in ("build", "gpu"),
    )
    return {
        "nccl_shared_cuda_home": str(node / "cuda"),
        "nccl_shared_libfabric_home": str(node / "efa"),
        "nccl_shared_ofi_bundled_home": str(node / "ofi-nccl"),
        "nccl_shared_efa_installed_packages": str(node / "efa_installed_packages"),
        "nccl_shared_env_file": str(node / "etc" / "profile.d" / "xpu-nccl.sh"),
        "__nccl_shared_gpu_dir": str(node / "proc" / "driver" / "nvidia" / "gpus"),
        **extra,
    }


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    tmp = tmp_path_factory.mktemp("nccl_shared")
    sources = make_sources(tmp / "repos", sleep=2)
    # A half-copied version left by an earlier tool: no manifest.
    partial = tmp / "fsx" / "ofi" / "nccl" / ID / "lib"
    partial.mkdir(parents=True)
    (partial / "libnccl.so.2").write_text("half copied\n")
    groups = {}
    for group, hosts in CLUSTERS.items():
        root = tmp / "fsx" / ROOTS.get(group, group) / "nccl"
        groups[group] = {
            "hosts": {h: _host_vars(tmp, h, kind, extra) for h, kind, extra in hosts},
            "vars": {"nccl_shared_root": str(root)},
        }
    groups["fail"]["hosts"]["bad_a"]["nccl_shared_nccl_commit"] = sources.commits[NCCL_TAGS[1]]
    common = {
        "nccl_shared_cuda_archs": ["sm_100", "sm_90"],
        "nccl_shared_nccl_repo": sources.nccl,
        "nccl_shared_nccl_commit": sources.commits[NCCL_TAGS[0]],
        "nccl_shared_tests_repo": sources.tests,
        "nccl_shared_tests_commit": sources.commits[f"tests {TESTS_TAG}"],
        "nccl_shared_ofi_repo": sources.ofi,
        "nccl_shared_ofi_commit": sources.commits[f"ofi {OFI_TAG}"],
        "nccl_shared_build_packages": [],
        "nccl_shared_ofi_build_packages": [],
        "nccl_shared_build_jobs": 2,
        # The same on every node, as /opt/amazon/openmpi is (it is one of a version's inputs).
        "nccl_shared_mpi_home": str(make_node(tmp / "nodes" / "shared", nvcc=False) / "openmpi"),
    }
    # Facts once for every host, as site.yml does; the role's preflight then gathers nothing.
    facts = {"name": "Facts", "hosts": "all", "gather_facts": True, "gather_subset": ["min"]}
    playbook = yaml.safe_dump(
        [facts]
        + [
            {
                "name": f"Role nccl_shared on cluster {group}",
                "hosts": group,
                "gather_facts": False,
                "roles": [{"role": "xpu.parallelcluster.nccl_shared"}],
            }
            for group in CLUSTERS
        ],
        sort_keys=False,
    )
    inventory = local_inventory(children=groups, group_vars=common)
    return Lab.create(tmp, inventory, playbook, sources)


EXCLUDE = "all:" + ":".join(f"!{h}" for h in ONLY_CHECK + ONLY_UPGRADE)


@pytest.fixture(scope="module")
def first(lab: Lab) -> Run:
    return lab.run("--limit", EXCLUDE)


@pytest.fixture(scope="module")
def second(lab: Lab, first: Run) -> Run:
    return lab.run("--limit", EXCLUDE)


@pytest.fixture(scope="module")
def check(lab: Lab, second: Run) -> Run:
    return lab.run("--check", "--diff", "--limit", "chk_a,gpu_a,gpu_b,lab_a,head_ofi")


@pytest.fixture(scope="module")
def upgrade(lab: Lab, check: Run) -> list[Run]:
    """A newer NCCL, by two ansible-playbook processes at once, on `fresh` (built before) and on
    `race` (never built): each root must get exactly one build."""
    new = [
        *("-e", f"nccl_shared_nccl_version={NCCL_TAGS[1][1:]}"),
        *("-e", f"nccl_shared_nccl_commit={lab.sources.commits[NCCL_TAGS[1]]}"),
    ]
    procs = [
        subprocess.Popen(
            lab.command("--limit", "fresh,race_a", *new),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=lab.env(),
        )
        for _ in range(2)
    ]
    runs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        runs.append(lab.report(proc.returncode, out, err))
    return runs


def source_env(lab: Lab, host: str, command: str) -> str:
    """Run ``command`` in a login-like shell that sourced the host's profile.d file."""
    return subprocess.run(
        ["sh", "-c", f". {lab.env_file(host)} && {command}"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": "/opt/other/lib"},
    ).stdout


# ------------------------------------------------------------------------------ first run


def test_every_cluster_ends_as_expected(first: Run) -> None:
    failed = {h for h, s in first.stats.items() if s["failures"]}
    assert failed == FAILING, {h: first.failure(h)[:400] for h in failed ^ FAILING}
    assert first.rc == 2


def test_first_run_builds_once_on_the_first_host_with_nvcc(lab: Lab, first: Run) -> None:
    root = lab.root("fresh")
    target = root / ID
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["nccl"] == {
        "version": "2.29.2-1",
        "tag": "v2.29.2-1",
        "commit": lab.sources.commits[NCCL_TAGS[0]],
        "repo": lab.sources.nccl,
    }
    assert manifest["archs"] == ["sm_90", "sm_100"]
    assert manifest["cuda"]["version"] == "13.0"
    assert manifest["aws_ofi_nccl"]["source"] == "bundled"
    assert manifest["aws_ofi_nccl"]["lib"] == str(lab.node("gpu_a") / "ofi-nccl" / "lib")
    # The build host's own CUDA was used (gpu_b, first in the play, has none).
    assert manifest["cuda"]["home"] == str(lab.node("gpu_a") / "cuda")
    assert os.readlink(root / "current") == ID
    assert first.status("gpu_b")["build_host"] == "gpu_a"
    for host in ("gpu_a", "gpu_b", "lab_a"):
        assert first.status(host)["action"] == "built"
    (report,) = first.ran("gpu_b", "report the build")
    assert report["msg"].startswith(f"nccl_shared: {target} was built now (built on ")
    assert "CUDA 13.0, sm_90 sm_100" in report["msg"]
    # NCCL was built for the queues' archs, once, with PTX for the newest.
    library = (target / "lib" / "libnccl.so.2").read_text()
    assert (
        "NVCC_GENCODE=-gencode=arch=compute_90,code=sm_90 -gencode=arch=compute_100,code=sm_100 "
        "-gencode=arch=compute_100,code=compute_100"
    ) in library


def test_gpu_nodes_get_an_environment_pinned_to_the_version(lab: Lab, first: Run) -> None:
    target = lab.root("fresh") / ID
    bundled = lab.node("gpu_a") / "ofi-nccl" / "lib"
    for host in ("gpu_a", "gpu_b"):
        out = source_env(
            lab,
            host,
            'echo "$NCCL_HOME"; echo "$LD_LIBRARY_PATH"; echo "$MODULEPATH"; all_reduce_perf',
        ).splitlines()
        assert out[0] == str(target)
        assert out[1] == f"{target}/lib:{bundled}:/opt/other/lib"
        assert out[2] == str(lab.root("fresh") / "modulefiles")
        # all_reduce_perf is found on PATH, from the version directory.
        assert out[3] == "# nccl-tests version 2.18.3 (fake all_reduce_perf)"
        text = lab.env_file(host).read_text()
        assert "current" not in text.split("Pinned to")[0]
        assert "/current" not in "".join(line for line in text.splitlines() if "=" in line)
    # Sourcing twice adds nothing twice.
    twice = source_env(lab, "gpu_b", f'. {lab.env_file("gpu_b")}; echo "$LD_LIBRARY_PATH"')
    assert twice.strip() == f"{target}/lib:{bundled}:/opt/other/lib"


def test_env_file_is_valid_posix_shell(lab: Lab, first: Run) -> None:
    subprocess.run(["shellcheck", "-s", "sh", str(lab.env_file("gpu_a"))], check=True)


def test_modulefile_sets_the_same_environment(lab: Lab, first: Run) -> None:
    """Evaluated by tclsh with the module commands recorded, as environment-modules would."""
    modules = lab.root("fresh") / "modulefiles" / "nccl"
    target = lab.root("fresh") / ID
    script = (
        'proc setenv {n v} {puts "setenv $n $v"}\n'
        'proc prepend-path {n v} {puts "prepend $n $v"}\n'
        'proc module-whatis {t} {puts "whatis $t"}\n'
        'proc conflict {n} {puts "conflict $n"}\n'
        f"source {modules / ID}\n"
        f"source {modules / '.version'}\n"
        'puts "default $ModulesVersion"\n'
    )
    out = subprocess.run(
        ["tclsh"], input=script, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert (modules / ID).read_text().startswith("#%Module1.0\n")
    bundled = lab.node("gpu_a") / "ofi-nccl" / "lib"
    assert [line for line in out if not line.startswith("whatis")] == [
        "conflict nccl",
        f"setenv NCCL_HOME {target}",
        f"prepend PATH {target}/bin",
        f"prepend LD_LIBRARY_PATH {bundled}",
        f"prepend LD_LIBRARY_PATH {target}/lib",
        f"default {ID}",
    ]


def test_nodes_without_nvcc_or_gpu_are_left_alone(lab: Lab, first: Run) -> None:
    for host in ("lab_a", "lab_b"):
        (skip,) = first.ran(host, "skip a host without nvcc or NVIDIA GPU")
        assert skip["msg"].startswith(f"nccl_shared: {host} has no nvcc (")
        assert skip["msg"].endswith("nothing to build or configure on it")
        assert not lab.env_file(host).exists()
        assert first.stats[host]["changed"] == 0
    (nobody,) = first.ran("lab_b", "skip the build when no host of the play has nvcc")
    assert "no host of this play has nvcc" in nobody["msg"]
    assert not lab.root("lab").exists()


def test_booting_node_uses_the_built_version_without_building(lab: Lab, first: Run) -> None:
    assert first.status("boot_a")["action"] == "present"
    assert first.results("boot_a", "build under the lock")[0]["skipped"] is True
    # It leaves the shared modulefiles to the hosts that build.
    modulefile = first.results("boot_a", "write the modulefile")
    assert modulefile and all(r.get("skipped") for r in modulefile)
    assert source_env(lab, "boot_a", 'echo "$NCCL_HOME"').strip() == str(lab.root("fresh") / ID)


def test_plugin_is_built_where_the_efa_installer_did_not_bundle_it(lab: Lab, first: Run) -> None:
    target = lab.root("ofi") / ID
    ofi = json.loads((target / "manifest.json").read_text())["aws_ofi_nccl"]
    assert ofi["source"] == "built" and ofi["commit"] == lab.sources.commits[f"ofi {OFI_TAG}"]
    out = source_env(lab, "head_ofi", 'echo "$LD_LIBRARY_PATH"').strip()
    assert out == f"{target}/lib:{target}/ofi/lib:/opt/other/lib"
    assert (target / "ofi" / "lib" / "libnccl-net.so").is_symlink()


def test_stale_partial_version_is_rebuilt_and_kept_aside(lab: Lab, first: Run) -> None:
    root = lab.root("ofi")
    status = first.status("head_ofi")
    assert status["action"] == "built"
    stale = Path(status["stale_moved_to"])
    assert (stale / "lib" / "libnccl.so.2").read_text() == "half copied\n"
    assert (root / ID / "manifest.json").is_file()
    (report,) = first.ran("head_ofi", "report the build")
    assert f"moved an incomplete copy to {stale}" in report["msg"]


def test_missing_archs_and_wrong_commit_fail_clearly(lab: Lab, first: Run) -> None:
    message = first.failure("noarch_a")
    assert message.startswith("nccl_shared on noarch_a: this host has nvcc and may build NCCL")
    assert "nccl_shared_cuda_archs must list the GPU architectures" in message
    message = first.failure("bad_a")
    commits = lab.sources.commits
    assert (
        f"tag v2.29.2-1 of {lab.sources.nccl} is commit {commits[NCCL_TAGS[0]]}, but the pinned "
        f"commit is {commits[NCCL_TAGS[1]]}"
    ) in message
    assert message.startswith("nccl_shared: building NCCL 2.29.2-1 on bad_a into ")
    root = lab.root("fail")
    assert sorted(p.name for p in root.iterdir()) == [".lock"]
    assert not lab.env_file("bad_a").exists()


# ------------------------------------------------------------------ idempotence, check mode


def test_second_run_changes_nothing(lab: Lab, first: Run, second: Run) -> None:
    assert second.changed() == {}
    assert {h for h, s in second.stats.items() if s["failures"]} == FAILING
    for host in ("gpu_a", "head_ofi"):
        assert second.status(host)["action"] == "present"
    nccl_builds = [b for b in lab.sources.builds() if b.startswith("nccl 2.29.2 ")]
    assert len(nccl_builds) == 2  # fresh and ofi: once each


def test_check_mode_predicts_the_build_and_writes_nothing(lab: Lab, check: Run) -> None:
    assert check.changed() == {"chk_a": 1}
    status = check.status("chk_a")
    assert status["action"] == "would_build"
    assert not lab.root("chk").exists()
    assert not lab.env_file("chk_a").exists()
    (why,) = check.ran("chk_a", "say why no environment file")
    assert "the build would run now (check mode)" in why["msg"]
    for host in ("gpu_a", "gpu_b", "head_ofi"):
        assert check.status(host)["action"] == "present"


# ------------------------------------------------------------------ a new version, a race


def test_new_version_builds_once_beside_the_old_one(lab: Lab, upgrade: list[Run]) -> None:
    for run in upgrade:
        assert run.rc == 0, run.stderr[-2000:]
    root = lab.root("fresh")
    old, new = root / ID, root / NEW_ID
    # One process built it, the other found it (after waiting for the lock, or afterwards).
    actions = sorted(run.status("gpu_b")["action"] for run in upgrade)
    assert actions == ["built", "present"]
    # The old version is exactly as it was: same manifest, same library.
    assert json.loads((old / "manifest.json").read_text())["nccl"]["version"] == "2.29.2-1"
    assert "fake NCCL 2.29.2" in (old / "lib" / "libnccl.so.2").read_text()
    assert json.loads((new / "manifest.json").read_text())["nccl"]["version"] == "2.29.3-1"
    assert os.readlink(root / "current") == NEW_ID
    # New logins get the new one; both modules stay available.
    assert source_env(lab, "gpu_b", 'echo "$NCCL_HOME"').strip() == str(new)
    modules = root / "modulefiles" / "nccl"
    assert sorted(p.name for p in modules.iterdir()) == sorted([".version", ID, NEW_ID])
    assert f'set ModulesVersion "{NEW_ID}"' in (modules / ".version").read_text()


def test_two_playbooks_at_once_build_each_root_once(lab: Lab, upgrade: list[Run]) -> None:
    actions = sorted(run.status("race_a")["action"] for run in upgrade)
    assert actions == ["built", "present"]
    # 2.29.3: once for `fresh`, once for `race`, whatever the two processes did at once.
    assert len([b for b in lab.sources.builds() if b.startswith("nccl 2.29.3 ")]) == 2
    root = lab.root("race")
    assert sorted(p.name for p in root.iterdir()) == [".lock", NEW_ID, "current", "modulefiles"]
