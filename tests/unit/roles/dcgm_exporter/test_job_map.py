"""The Slurm job-mapping helper (roles/dcgm_exporter/files/xpu-dcgm-job-map), run with bash.

Each call gets the environment a Slurm prolog or epilog gets (SLURM_JOB_ID, SLURM_JOB_GPUS or
CUDA_VISIBLE_DEVICES) and a mapping directory under tmp_path; the assertions read the directory
as dcgm-exporter does (files named by a GPU index, one job id per line).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
HELPER = ROOT / "roles" / "dcgm_exporter" / "files" / "xpu-dcgm-job-map"


def run(mapdir: Path, mode: str, *, max_gpus: int = 8, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    return subprocess.run(
        ["bash", str(HELPER), "--dir", str(mapdir), "--max-gpus", str(max_gpus), mode],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def mapping(mapdir: Path) -> dict[str, list[str]]:
    """What dcgm-exporter reads: integer-named files -> their lines."""
    return {
        p.name: p.read_text().splitlines()
        for p in sorted(mapdir.iterdir())
        if p.name.isdigit() and p.is_file()
    }


@pytest.fixture
def mapdir(tmp_path: Path) -> Path:
    path = tmp_path / "map"
    path.mkdir()
    return path


def test_shellcheck_clean() -> None:
    assert shutil.which("shellcheck"), "shellcheck is required"
    proc = subprocess.run(["shellcheck", str(HELPER)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_prolog_writes_one_file_per_gpu_with_the_job_id(mapdir: Path) -> None:
    proc = run(mapdir, "prolog", SLURM_JOB_ID="1201", SLURM_JOB_GPUS="0,1,2,3")
    assert proc.returncode == 0, proc.stderr
    assert mapping(mapdir) == {str(i): ["1201"] for i in range(4)}
    assert all(
        oct(p.stat().st_mode & 0o777) == "0o644" for p in mapdir.iterdir() if p.name.isdigit()
    )


def test_cuda_visible_devices_is_the_fallback(mapdir: Path) -> None:
    run(mapdir, "prolog", SLURM_JOB_ID="7", CUDA_VISIBLE_DEVICES="5,6")
    assert mapping(mapdir) == {"5": ["7"], "6": ["7"]}
    # SLURM_JOB_GPUS wins when both are set.
    run(mapdir, "prolog", SLURM_JOB_ID="8", SLURM_JOB_GPUS="2", CUDA_VISIBLE_DEVICES="3")
    assert mapping(mapdir)["2"] == ["8"] and "3" not in mapping(mapdir)


def test_epilog_removes_only_its_own_job(mapdir: Path) -> None:
    run(mapdir, "prolog", SLURM_JOB_ID="100", SLURM_JOB_GPUS="0,1")
    run(mapdir, "prolog", SLURM_JOB_ID="101", SLURM_JOB_GPUS="2,3")
    # A file someone else manages on a GPU index, with another job's id and ours.
    (mapdir / "7").write_text("555\n100\n")
    (mapdir / "notes").write_text("100\n")
    # The epilog's GPU variables may differ from the prolog's: it goes by job id.
    proc = run(mapdir, "epilog", SLURM_JOB_ID="100", SLURM_JOB_GPUS="")
    assert proc.returncode == 0, proc.stderr
    assert mapping(mapdir) == {"2": ["101"], "3": ["101"], "7": ["555"]}
    assert (mapdir / "notes").read_text() == "100\n"
    run(mapdir, "epilog", SLURM_JOB_ID="101", SLURM_JOB_GPUS="2,3")
    assert mapping(mapdir) == {"7": ["555"]}


def test_a_new_job_on_a_gpu_replaces_a_stale_entry(mapdir: Path) -> None:
    # Job 1's epilog never ran (node crash, killed slurmd): job 2 gets the GPU and the file.
    run(mapdir, "prolog", SLURM_JOB_ID="1", SLURM_JOB_GPUS="0")
    run(mapdir, "prolog", SLURM_JOB_ID="2", SLURM_JOB_GPUS="0")
    assert mapping(mapdir) == {"0": ["2"]}
    # Job 1's late epilog must not remove job 2's mapping.
    run(mapdir, "epilog", SLURM_JOB_ID="1")
    assert mapping(mapdir) == {"0": ["2"]}


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        ("", {}),  # a job without GPUs
        (" 0 , 1 ", {"0": ["9"], "1": ["9"]}),  # spaces around
        ("0 1\t2", {"0": ["9"], "1": ["9"], "2": ["9"]}),  # whitespace separated
        ("2-4", {"2": ["9"], "3": ["9"], "4": ["9"]}),  # a range
        ("1,1,01", {"1": ["9"]}),  # repeated, leading zero
        ("GPU-3f2a7c1e-aaaa-bbbb-cccc-000000000000,3", {"3": ["9"]}),  # UUIDs are skipped
        ("*,0", {"0": ["9"]}),  # no globbing
        ("7,8,9999,6-100000", {"6": ["9"], "7": ["9"]}),  # indices >= --max-gpus 8 dropped
        ("NoDevFiles", {}),
    ],
)
def test_odd_gpu_lists(mapdir: Path, gpus: str, expected: dict) -> None:
    (mapdir.parent / "cwd-file").write_text("")
    proc = subprocess.run(
        ["bash", str(HELPER), "--dir", str(mapdir), "--max-gpus", "8", "prolog"],
        env={"PATH": os.environ["PATH"], "SLURM_JOB_ID": "9", "SLURM_JOB_GPUS": gpus},
        cwd=mapdir.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert mapping(mapdir) == expected


@pytest.mark.parametrize("job", ["", "12 34", "abc", "1;rm -rf /", "9" * 21])
def test_a_bad_job_id_maps_nothing_and_never_fails_the_prolog(mapdir: Path, job: str) -> None:
    proc = run(mapdir, "prolog", SLURM_JOB_ID=job, SLURM_JOB_GPUS="0")
    assert proc.returncode == 0
    assert mapping(mapdir) == {}
    assert "no usable SLURM_JOB_ID" in proc.stderr


def test_node_without_the_directory_does_nothing(tmp_path: Path) -> None:
    proc = run(tmp_path / "absent", "prolog", SLURM_JOB_ID="5", SLURM_JOB_GPUS="0")
    assert proc.returncode == 0 and proc.stderr == ""
    assert not (tmp_path / "absent").exists()


def test_bad_usage_never_fails_a_prolog_but_fails_cleanup(mapdir: Path) -> None:
    base = {"PATH": os.environ["PATH"], "SLURM_JOB_ID": "5"}
    for argv in (["prolog"], ["--dir", str(mapdir), "--bogus", "prolog"]):
        proc = subprocess.run(["bash", str(HELPER), *argv], env=base, capture_output=True)
        assert proc.returncode == 0, argv
    proc = subprocess.run(["bash", str(HELPER), "cleanup"], env=base, capture_output=True)
    assert proc.returncode == 2


def test_cleanup_drops_stale_and_malformed_files_only(mapdir: Path) -> None:
    run(mapdir, "prolog", SLURM_JOB_ID="300", SLURM_JOB_GPUS="0,1")
    (mapdir / "2").write_text("301\n")
    os.utime(mapdir / "2", (0, 0))  # written before this boot
    (mapdir / "3").write_text("")  # empty
    (mapdir / "4").write_text("not-a-job\n")
    (mapdir / "12").write_text("302\n")  # index >= --max-gpus 8
    (mapdir / ".tmp.5.999").write_text("303\n")  # an interrupted write
    (mapdir / "README").write_text("kept\n")  # not a mapping file: not ours
    proc = run(mapdir, "cleanup")
    assert proc.returncode == 0, proc.stderr
    assert mapping(mapdir) == {"0": ["300"], "1": ["300"]}
    assert sorted(p.name for p in mapdir.iterdir()) == [".lock", "0", "1", "README"]
    assert "written before this boot" in proc.stderr


@pytest.mark.slow
def test_cardinality_stays_bounded_over_a_thousand_jobs(mapdir: Path) -> None:
    """1,000 jobs of 1-4 GPUs on an 8-GPU node, every 97th epilog lost: never more than one file
    per GPU, one line per file, each file naming the last job mapped to that GPU whose epilog has
    not run (a lost epilog's entry lasts only until the next job on that GPU)."""
    driver = r"""
set -u
helper=$1; dir=$2
declare -A holder=()   # gpu -> running job
declare -A expect=()   # gpu -> job id its file must hold (a lost epilog leaves its job there)
max_files=0; max_lines=0
for ((job = 1; job <= 1000; job++)); do
  n=$(( job % 4 + 1 )); first=$(( (job * 3) % 8 ))
  gpus=""
  for ((k = 0; k < n; k++)); do g=$(( (first + k) % 8 )); gpus+="${gpus:+,}$g"; done
  # Jobs still holding these GPUs end first; the epilog of every 97th job is lost.
  for g in ${gpus//,/ }; do
    old=${holder[$g]:-}
    [[ -n "$old" ]] || continue
    if (( old % 97 != 0 )); then
      SLURM_JOB_ID=$old "$helper" --dir "$dir" --max-gpus 8 epilog
      for h in "${!expect[@]}"; do [[ "${expect[$h]}" == "$old" ]] && unset "expect[$h]"; done
    fi
    for h in "${!holder[@]}"; do [[ "${holder[$h]}" == "$old" ]] && unset "holder[$h]"; done
  done
  SLURM_JOB_ID=$job SLURM_JOB_GPUS=$gpus "$helper" --dir "$dir" --max-gpus 8 prolog
  for g in ${gpus//,/ }; do holder[$g]=$job; expect[$g]=$job; done
  files=0
  for f in "$dir"/[0-9]*; do
    [[ -f $f ]] || continue
    files=$((files + 1)); mapfile -t content <"$f"
    (( ${#content[@]} > max_lines )) && max_lines=${#content[@]}
    want=${expect[${f##*/}]:-none}
    [[ "${content[*]}" == "$want" ]] || { echo "MISMATCH job=$job file=$f"; exit 1; }
  done
  (( files > max_files )) && max_files=$files
  (( files == ${#expect[@]} )) || { echo "COUNT job=$job files=$files"; exit 1; }
done
echo "max_files=$max_files max_lines=$max_lines"
"""
    proc = subprocess.run(
        ["bash", "-c", driver, "driver", str(HELPER), str(mapdir)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "max_files=8 max_lines=1"
    names = {p.name for p in mapdir.iterdir()} - {".lock"}
    assert names and names <= set("01234567")
