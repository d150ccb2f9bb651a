"""roles/nccl_shared/files/nccl_shared_build.py: gencode flags, version ids, and the build itself
against local stand-in repositories (see conftest.py), without ansible-playbook."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import NCCL_TAGS, SCRIPT, fixture, load_build, make_node, make_sources, spec

build = load_build()
NVCC = Path(os.environ.get("XPU_NVCC", "/usr/local/cuda/bin/nvcc"))


def run_script(value: dict, mode: str = "build") -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--mode", mode, "--spec", json.dumps(value)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.returncode, json.loads(proc.stdout)


# ------------------------------------------------------------------------ pure functions


def test_gencode_has_sass_per_arch_and_ptx_of_the_highest() -> None:
    assert build.gencode(["sm_100", "sm_90", "sm_90"]) == (
        "-gencode=arch=compute_90,code=sm_90 "
        "-gencode=arch=compute_100,code=sm_100 "
        "-gencode=arch=compute_100,code=compute_100"
    )


def test_gencode_never_takes_ptx_from_an_arch_specific_target() -> None:
    flags = build.gencode(["sm_90a", "sm_80"]).split()
    assert flags == [
        "-gencode=arch=compute_80,code=sm_80",
        "-gencode=arch=compute_90a,code=sm_90a",
        "-gencode=arch=compute_80,code=compute_80",
    ]
    # Only arch-specific targets: the PTX is of the base architecture.
    assert build.gencode(["sm_100a"]).split()[-1] == "-gencode=arch=compute_100,code=compute_100"


@pytest.mark.parametrize("bad", ["sm100", "compute_90", "sm_90b", "SM_90", "sm_", "90"])
def test_malformed_archs_are_refused(bad: str) -> None:
    with pytest.raises(build.BuildError, match="sm_<number>"):
        build.gencode(["sm_90", bad])


def test_no_arch_is_refused_with_what_to_set() -> None:
    with pytest.raises(build.BuildError, match="nccl_shared_cuda_archs"):
        build.gencode([])


def test_version_id_names_nccl_cuda_and_archs_in_order() -> None:
    assert build.version_id("2.29.2-1", "13.0", ["sm_100", "sm_90"]) == (
        "2.29.2-1-cuda13.0-sm90-sm100"
    )


def test_nvcc_version_is_read_from_the_recorded_output() -> None:
    assert build.parse_nvcc_version(fixture("nvcc_version_13.0.txt")) == ("13.0", "13.0.88")
    with pytest.raises(build.BuildError, match="CUDA release"):
        build.parse_nvcc_version("bash: nvcc: command not found")


def test_bundled_plugin_version_comes_from_the_efa_package_list() -> None:
    assert build.bundled_ofi_version(fixture("efa_installed_packages_1.43.2")) == "1.16.3"
    assert build.bundled_ofi_version("# EFA installer version: 1.22.0\n") is None
    assert build.bundled_ofi_version(None) is None


# Compiles for six architectures with a real nvcc (about 15 s): `make test`, not `make check`.
@pytest.mark.slow
@pytest.mark.skipif(not NVCC.exists(), reason=f"no CUDA toolkit at {NVCC} on this machine")
def test_generated_flags_compile_for_every_catalog_arch(tmp_path: Path) -> None:
    """The flags for every cuda_arch of the instance catalog are accepted by a real nvcc, and
    the object holds SASS for each arch plus the PTX of the highest."""
    sys.path.insert(0, str(SCRIPT.parents[3] / ".cache" / "collections"))
    from ansible_collections.xpu.parallelcluster.plugins.module_utils import catalog

    archs = sorted({t.cuda_arch for t in catalog.CATALOG_ENTRIES if t.cuda_arch})
    assert "sm_100" in archs
    source = tmp_path / "k.cu"
    source.write_text("__global__ void k(float *x) { x[threadIdx.x] *= 2.0f; }\n")
    flags = build.gencode(archs).split()
    subprocess.run(
        [str(NVCC), "-c", str(source), "-o", str(tmp_path / "k.o"), *flags],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # What the fat binary holds, as nvcc plans it: one image per kind and arch.
    plan = subprocess.run(
        [str(NVCC), "--dryrun", "-c", str(source), "-o", str(tmp_path / "k.o"), *flags],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stderr
    images = set(re.findall(r"--image3=kind=(elf|ptx),sm=(\d+a?)", plan))
    numbers = sorted(int(a[3:]) for a in archs)
    assert images == {("elf", str(n)) for n in numbers} | {("ptx", str(numbers[-1]))}


# ------------------------------------------------------------------------ the build


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> object:
    return make_sources(tmp_path_factory.mktemp("repos"), sleep=1)


@pytest.mark.slow
def test_build_is_atomic_and_happens_once(tmp_path: Path, sources) -> None:
    node = make_node(tmp_path / "node")
    root = tmp_path / "fsx" / "nccl"
    value = spec(node, sources, root)
    before = len(sources.builds())

    assert run_script(value, "probe")[1]["action"] == "missing"
    assert not root.exists(), "probe must not write"
    rc, first = run_script(value)
    assert rc == 0, first
    assert first["action"] == "built" and first["changed"] is True
    target = root / "2.29.2-1-cuda13.0-sm90-sm100"
    assert first["path"] == str(target)
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest == first["manifest"]
    assert manifest["nccl"]["commit"] == sources.commits[NCCL_TAGS[0]]
    assert manifest["aws_ofi_nccl"]["source"] == "bundled"
    assert manifest["aws_ofi_nccl"]["version"] == "1.16.3"
    # NCCL got the gencode of the archs; nccl-tests was built against it.
    library = (target / "lib" / "libnccl.so.2").read_text()
    assert f"NVCC_GENCODE={build.gencode(['sm_90', 'sm_100'])}" in library
    assert f"PREFIX={target}" in library
    assert sorted(p.name for p in (target / "bin").iterdir()) == [
        "all_gather_perf",
        "all_reduce_perf",
        "alltoall_perf",
    ]
    assert os.readlink(root / "current") == target.name
    # Nothing left of the work directory.
    assert sorted(p.name for p in root.iterdir()) == [".lock", target.name, "current"]

    rc, again = run_script(value)
    assert (rc, again["action"], again["changed"]) == (0, "present", False)
    assert len(sources.builds()) == before + 1


@pytest.mark.slow
def test_concurrent_builders_build_once(tmp_path: Path, sources) -> None:
    node = make_node(tmp_path / "node")
    value = spec(node, sources, tmp_path / "fsx")
    before = len(sources.builds())
    argv = [sys.executable, str(SCRIPT), "--mode", "build", "--spec", json.dumps(value)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert sorted(r["action"] for r in results) == ["built", "present", "present"]
    assert len(sources.builds()) == before + 1
    # The ones that found it waited for the lock while it was built.
    assert all(r["lock_waited_s"] > 0 for r in results if r["action"] == "present")


@pytest.mark.slow
def test_lock_wait_has_a_deadline(tmp_path: Path, sources) -> None:
    node = make_node(tmp_path / "node")
    root = tmp_path / "fsx"
    root.mkdir()
    with (root / ".lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("host=other pid=1\n")
        held.flush()
        rc, result = run_script(spec(node, sources, root, lock_timeout=0.5))
    assert rc == 1 and result["failed"] is True
    assert "for more than 0s (host=other pid=1)" in result["msg"]
    assert "nccl_shared_lock_timeout" in result["msg"]


@pytest.mark.slow
def test_wrong_commit_fails_before_building_and_leaves_nothing(tmp_path: Path, sources) -> None:
    node = make_node(tmp_path / "node")
    root = tmp_path / "fsx"
    value = spec(node, sources, root)
    value["nccl"]["commit"] = sources.commits[NCCL_TAGS[1]]
    before = len(sources.builds(""))
    rc, result = run_script(value)
    assert rc == 1
    assert result["msg"].startswith(
        f"nccl: tag {NCCL_TAGS[0]} of {sources.nccl} is commit {sources.commits[NCCL_TAGS[0]]}, "
        f"but the pinned commit is {sources.commits[NCCL_TAGS[1]]}"
    )
    assert len(sources.builds("")) == before
    assert sorted(p.name for p in root.iterdir()) == [".lock"]


@pytest.mark.slow
def test_stale_partial_directory_is_moved_aside_and_rebuilt(tmp_path: Path, sources) -> None:
    node = make_node(tmp_path / "node")
    root = tmp_path / "fsx"
    target = root / "2.29.2-1-cuda13.0-sm90-sm100"
    (target / "lib").mkdir(parents=True)
    (target / "lib" / "libnccl.so.2").write_text("half copied\n")
    dead = root / ".build-2.29.2-1-cuda13.0-sm90-sm100.dead"
    dead.mkdir()
    rc, result = run_script(spec(node, sources, root))
    assert rc == 0 and result["action"] == "built", result
    stale = Path(result["stale_moved_to"])
    assert stale.parent == root and stale.name.startswith(".stale-2.29.2-1-cuda13.0-sm90-sm100.")
    assert (stale / "lib" / "libnccl.so.2").read_text() == "half copied\n"
    assert (target / "manifest.json").is_file()
    assert "fake NCCL 2.29.2" in (target / "lib" / "libnccl.so.2").read_text()
    assert not dead.exists()


@pytest.mark.slow
def test_other_inputs_for_an_existing_version_fail_instead_of_rebuilding(
    tmp_path: Path, sources
) -> None:
    node = make_node(tmp_path / "node")
    root = tmp_path / "fsx"
    assert run_script(spec(node, sources, root))[0] == 0
    (node / "openmpi5" / "include").mkdir(parents=True)
    other = spec(node, sources, root, mpi_home=str(node / "openmpi5"))
    for mode in ("build", "check", "probe"):
        rc, result = run_script(other, mode)
        assert rc == 1, mode
        assert "was built from other inputs (mpi_home: built" in result["msg"]
        assert "set nccl_shared_version_id to a new name" in result["msg"]
    rc, beside = run_script({**other, "version_id": "2.29.2-1-custom-mpi"})
    assert rc == 0 and beside["action"] == "built"
    assert os.readlink(root / "current") == "2.29.2-1-custom-mpi"


@pytest.mark.slow
def test_plugin_is_built_only_when_not_bundled(tmp_path: Path, sources) -> None:
    node = make_node(tmp_path / "node", bundled_ofi=False)
    root = tmp_path / "fsx"
    rc, result = run_script(spec(node, sources, root))
    assert rc == 0, result
    ofi = result["manifest"]["aws_ofi_nccl"]
    target = Path(result["path"])
    assert ofi["source"] == "built" and ofi["lib"] == str(target / "ofi" / "lib")
    assert ofi["libraries"] == ["libnccl-net-ofi.so", "libnccl-net.so"]
    args = (target / "ofi" / "lib" / "configure-args.txt").read_text()
    assert f"--prefix={target}/ofi" in args and "--enable-platform-aws --disable-tests" in args


@pytest.mark.slow
def test_missing_plugin_pin_fails_only_when_the_plugin_must_be_built(
    tmp_path: Path, sources
) -> None:
    bare = make_node(tmp_path / "bare", bundled_ofi=False)
    value = spec(bare, sources, tmp_path / "fsx")
    value["ofi"]["commit"] = ""
    rc, result = run_script(value)
    assert rc == 1 and "nccl_shared_ofi_commit is ''" in result["msg"]
    value["ofi"]["build"] = False
    rc, result = run_script(value)
    assert rc == 0 and result["manifest"]["aws_ofi_nccl"]["source"] == "none"
    assert "nccl_shared_build_ofi is false" in result["manifest"]["aws_ofi_nccl"]["reason"]


@pytest.mark.slow
def test_arch_the_toolkit_cannot_build_fails_before_fetching(tmp_path: Path, sources) -> None:
    node = make_node(tmp_path / "node")
    value = spec(node, sources, tmp_path / "fsx", cuda_archs=["sm_70", "sm_90"])
    rc, result = run_script(value)
    assert rc == 1
    assert "CUDA 13.0 nvcc" in result["msg"] and "cannot build for sm_70" in result["msg"]


@pytest.mark.slow
def test_check_mode_predicts_and_writes_nothing(tmp_path: Path, sources) -> None:
    node = make_node(tmp_path / "node")
    root = tmp_path / "fsx"
    rc, result = run_script(spec(node, sources, root), "check")
    assert (rc, result["action"], result["changed"]) == (0, "would_build", True)
    assert not root.exists()


@pytest.mark.slow
def test_no_nvcc_fails_with_what_to_do(tmp_path: Path, sources) -> None:
    node = make_node(tmp_path / "node", nvcc=False)
    rc, result = run_script(spec(node, sources, tmp_path / "fsx"))
    assert rc == 1 and "no nvcc at" in result["msg"] and "nccl_shared_cuda_home" in result["msg"]


@pytest.mark.slow
def test_build_failure_reports_the_output_and_leaves_no_work_directory(
    tmp_path: Path, sources
) -> None:
    node = make_node(tmp_path / "node")
    shutil.rmtree(node / "openmpi")
    root = tmp_path / "fsx"
    rc, result = run_script(spec(node, sources, root))
    assert rc == 1
    assert "`make -j2 MPI=1" in result["msg"] and "no MPI under MPI_HOME=" in result["msg"]
    assert sorted(p.name for p in root.iterdir()) == [".lock"]
