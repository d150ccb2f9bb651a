"""The acceptance role's write_meta.py: meta.json from the job environment, the node and the run's
own output (the OFI provider line and the NCCL version that loaded), on recorded nccl-tests output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
SCRIPT = ROOT / "roles" / "acceptance" / "files" / "write_meta.py"
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "nccl_tests"


def write_meta(tmp_path: Path, output: Path | None, *extra: str) -> dict:
    out = tmp_path / "meta.json"
    env = {
        **os.environ,
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_JOB_NODELIST": "p6-dy-b200-[1-2]",
        "PATH": str(tmp_path),  # no nvidia-smi, mpirun or sinfo: versions are best effort
    }
    argv = [
        sys.executable,
        str(SCRIPT),
        "--out",
        str(out),
        "--name",
        "gpu-all_reduce-2n-ring",
        "--benchmark",
        "nccl-tests",
        "--collective",
        "all_reduce",
        "--variant",
        "ring",
        "--instance-type",
        "p6-b200.48xlarge",
        "--queue",
        "gpu",
        "--ranks",
        "16",
        "--exit-code",
        "0",
        "--started",
        "2026-11-28T10:00:00Z",
        "--env",
        "NCCL_ALGO=Ring",
        *(["--output", str(output)] if output else []),
        *extra,
    ]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def test_meta_names_the_job_and_the_provider_line_of_the_run(tmp_path: Path) -> None:
    meta = write_meta(tmp_path, FIXTURES / "b200_2node_ring_tagged.txt")
    assert meta["job_id"] == "4242" and meta["nodes"] == 2 and meta["ranks"] == 16
    assert meta["nodelist"] == "p6-dy-b200-[1-2]"
    assert meta["env"] == {"NCCL_ALGO": "Ring"}
    assert meta["provider"] == {
        "line": "[1,0]<stdout>:p6-dy-b200-1:41211:41230 [0] NCCL INFO NET/OFI Selected provider"
        " is efa, fabric is efa-direct (found 8 nics)",
        "provider": "efa",
        "fabric": "efa-direct",
        "nics": 8,
    }
    assert meta["versions"]["nccl_runtime"] == "2.27.7+cuda12.9"
    assert not (tmp_path / "meta.tmp").exists()  # written atomically


def test_a_tcp_fallback_is_recorded_as_it_is(tmp_path: Path) -> None:
    log = tmp_path / "output.txt"
    log.write_text(
        "0: p5-st-h100-1:51211:51230 [0] NCCL INFO NET/OFI Selected provider is tcp (found 1 nics)"
    )
    meta = write_meta(tmp_path, log)
    assert meta["provider"]["provider"] == "tcp" and meta["provider"]["fabric"] is None
    assert meta["provider"]["line"].endswith("(found 1 nics)")


def test_a_missing_or_silent_output_leaves_the_fields_out(tmp_path: Path) -> None:
    meta = write_meta(tmp_path, tmp_path / "absent.txt")
    assert "provider" not in meta and "nccl_runtime" not in meta["versions"]
    quiet = tmp_path / "quiet.txt"
    quiet.write_text("# nothing but the table\n")
    assert "provider" not in write_meta(tmp_path, quiet)
