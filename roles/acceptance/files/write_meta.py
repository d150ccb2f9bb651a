#!/usr/bin/env python3
"""Write a benchmark run's meta.json: the job, its nodes and the software versions it ran with.

Called at the end of each acceptance batch script with the run's static facts as arguments; reads
the rest from the Slurm job environment and the node (best effort: a missing tool leaves its
version out, never fails the job).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import time
from pathlib import Path


def command(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def versions(nccl_home: str) -> dict[str, str]:
    found: dict[str, str] = {}
    efa = Path("/opt/amazon/efa_installed_packages")
    if efa.is_file():
        match = re.search(r"EFA installer version:\s*(\S+)", efa.read_text(errors="replace"))
        if match:
            found["efa_installer"] = match[1]
    driver = command("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader").strip()
    if driver:
        found["nvidia_driver"] = driver.splitlines()[0]
    manifest = Path(nccl_home) / "manifest.json" if nccl_home else None
    if manifest and manifest.is_file():
        try:
            data = json.loads(manifest.read_text())
            for key in ("nccl_version", "nccl_tests_version", "ofi_version", "cuda_version"):
                if data.get(key):
                    found[key.removesuffix("_version")] = str(data[key])
        except ValueError:
            pass
    mpi = command("mpirun", "--version").splitlines()
    if mpi:
        found["mpi"] = mpi[0].strip()
    found["slurm"] = command("sinfo", "--version").strip()
    return {k: v for k, v in found.items() if v}


# The same patterns as plugins/module_utils/nccl_tests.py (this script runs on the nodes alone).
PROVIDER = re.compile(
    r"Selected [Pp]rovider is (?P<provider>[\w;-]+?)(?:, fabric is (?P<fabric>[\w-]+))?"
    r"\s*\(found (?P<nics>\d+) nics?\)"
)
NCCL_VERSION = re.compile(r"NCCL INFO NCCL version (\S+)")


def from_output(path: str) -> dict[str, object]:
    """What the run's own log says: the OFI provider line and the NCCL version that loaded."""
    found: dict[str, object] = {}
    try:
        text = Path(path).read_text(errors="replace") if path else ""
    except OSError:
        return found
    match = PROVIDER.search(text)
    if match:
        end = text.find("\n", match.end())
        line = text[text.rfind("\n", 0, match.start()) + 1 : end if end >= 0 else len(text)]
        found["provider"] = {
            "line": line.strip(),
            "provider": match["provider"],
            "fabric": match["fabric"],
            "nics": int(match["nics"]),
        }
    match = NCCL_VERSION.search(text)
    if match:
        found["nccl_runtime"] = match[1]
    return found


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--benchmark", required=True)
    parser.add_argument("--collective", required=True)
    parser.add_argument("--variant", default="default")
    parser.add_argument("--instance-type", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--ranks", type=int, required=True)
    parser.add_argument("--exit-code", type=int, required=True)
    parser.add_argument("--started", required=True)
    parser.add_argument("--nccl-home", default="")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE the run set")
    parser.add_argument("--output", default="", help="the run's output file (provider line)")
    args = parser.parse_args()
    meta = {
        "name": args.name,
        "benchmark": args.benchmark,
        "collective": args.collective,
        "variant": args.variant,
        "instance_type": args.instance_type,
        "queue": args.queue,
        "nodes": int(os.environ.get("SLURM_JOB_NUM_NODES", "1")),
        "ranks": args.ranks,
        "job_id": os.environ.get("SLURM_JOB_ID"),
        "nodelist": os.environ.get("SLURM_JOB_NODELIST"),
        "exit_code": args.exit_code,
        "started": args.started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "env": dict(item.split("=", 1) for item in args.env if "=" in item),
        "versions": versions(args.nccl_home),
    }
    seen = from_output(args.output)
    if "nccl_runtime" in seen:
        meta["versions"]["nccl_runtime"] = seen["nccl_runtime"]
    if "provider" in seen:
        meta["provider"] = seen["provider"]
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
