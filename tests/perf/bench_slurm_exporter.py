"""Benchmark of roles/slurm_exporter against real Slurm: 2,000 CLOUD nodes and 10,000 jobs.

Starts one podman container of its own (``xpu-perf-slurm``) from the lab node image (tagged as
scripts/lab.sh tags it; built with scripts/lab/build-image.sh when missing, never removed), on
podman's default network with no published port. Inside it: slurmctld with 2,000 CLOUD nodes
(no slurmd), 10,000 jobs, a few drained / down / failed nodes; then the exporter, measured by
tests/perf/slurm_exporter_probe.py. Prints a table against the targets and exits 1 on a miss.
The container is removed at the end whatever happens.

    make perf                      (the lead's target) or, as root from the repository root:
    CONTAINERS_CONF=scripts/lab/containers.conf .venv/bin/python tests/perf/bench_slurm_exporter.py

Environment: XPU_PERF_IMAGE (use this image instead of the lab's), XPU_PERF_JOBS (10000),
XPU_PERF_NODES (2000), XPU_PERF_KEEP=1 (leave the container for inspection).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "scripts" / "lab"
EXPORTER = ROOT / "roles" / "slurm_exporter" / "files" / "slurm_exporter.py"
HERE = Path(__file__).resolve().parent
NAME = "xpu-perf-slurm"
INSIDE = "/opt/xpu-perf"

NODES = int(os.environ.get("XPU_PERF_NODES", "2000"))
JOBS = int(os.environ.get("XPU_PERF_JOBS", "10000"))
ARRAY_TASKS = 1000

TARGET_SCRAPE_S = 0.050
TARGET_COMMANDS = 3
TARGET_COLLECTION_S = 2.0


def log(message: str) -> None:
    print(f"perf: {message}", file=sys.stderr, flush=True)


def podman(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", *args], check=check, text=True, capture_output=capture, timeout=600
    )


def image_ref() -> str:
    """The lab image's tag, computed exactly as scripts/lab.sh image_ref does."""
    digest = subprocess.run(
        "find build-image.sh rootfs -type f -print0 | sort -z | xargs -0 sha256sum "
        "| sha256sum | cut -c1-12",
        shell=True,
        cwd=LAB,
        check=True,
        text=True,
        capture_output=True,
    ).stdout.strip()
    return f"localhost/xpu-lab-node:{digest}"


def ensure_image() -> str:
    image = os.environ.get("XPU_PERF_IMAGE") or image_ref()
    if podman("image", "exists", image, check=False).returncode == 0:
        log(f"image {image}")
        return image
    if os.environ.get("XPU_PERF_IMAGE"):
        raise SystemExit(f"perf: XPU_PERF_IMAGE={image} does not exist")
    log(f"image {image} missing: building it with scripts/lab/build-image.sh (about a minute)")
    subprocess.run([str(LAB / "build-image.sh"), image], check=True, timeout=900)
    return image


def slurm_conf(nodes: int) -> str:
    """2,000 CLOUD nodes in three partitions, DOWN until the jobs are submitted; h100 nodes stay
    powering up when resumed (jobs CONFIGURING), the others fail at once like an EC2 capacity
    error (LAB.md)."""
    h100 = nodes * 2 // 5
    l4 = nodes // 10
    cpu = nodes - h100 - l4
    # Addresses given, so slurmctld resolves no names; CLOUD: no slurmd, powered down.
    cloud = "NodeAddr=127.0.0.1 State=CLOUD"
    return f"""\
# xpu perf benchmark (tests/perf/bench_slurm_exporter.py): no slurmd, CLOUD nodes only.
ClusterName=perf
SlurmctldHost=perfhead(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmctldPidFile=/run/slurmctld.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
MaxJobCount=20000
MaxArraySize=20001
PrivateData=cloud
ReturnToService=2
TreeWidth=65533
SuspendProgram=/bin/true
ResumeProgram=/usr/local/sbin/xpu-perf-resume
SuspendTime=600
SuspendTimeout=60
ResumeTimeout=1800
NodeName=gpu-h100-[0001-{h100:04d}] {cloud} CPUs=192 RealMemory=2000000 Gres=gpu:h100:8
NodeName=gpu-l4-[0001-{l4:04d}] {cloud} CPUs=48 RealMemory=192000 Gres=gpu:l4:4
NodeName=cpu-[0001-{cpu:04d}] {cloud} CPUs=64 RealMemory=256000
PartitionName=gpu-h100 Nodes=gpu-h100-[0001-{h100:04d}] Default=YES MaxTime=INFINITE State=DOWN
PartitionName=gpu-l4 Nodes=gpu-l4-[0001-{l4:04d}] MaxTime=INFINITE State=DOWN
PartitionName=cpu Nodes=cpu-[0001-{cpu:04d}] MaxTime=INFINITE State=DOWN
"""


RESUME = """#!/bin/sh
# h100 nodes stay powering up (their jobs stay CONFIGURING); the others fail at once.
for spec in "$@"; do
  case "$spec" in
    gpu-h100-*) ;;
    *) scontrol update nodename="$spec" state=power_down_force reason="perf: no capacity" ;;
  esac
done
"""

WRAPPER = """#!/bin/sh
# Counts the exporter's Slurm commands, then runs the real one.
printf '%s\\n' "$0" >> {inside}/calls.log
exec /usr/bin/{name} "$@"
"""


def stage(tmp: Path) -> Path:
    """Everything the container needs, in one directory copied to /opt/xpu-perf."""
    out = tmp / "xpu-perf"
    (out / "bin").mkdir(parents=True)
    (out / "slurm.conf").write_text(slurm_conf(NODES))
    (out / "resume-program").write_text(RESUME)
    for name in ("sinfo", "squeue", "sdiag"):
        path = out / "bin" / name
        path.write_text(WRAPPER.format(inside=INSIDE, name=name))
        path.chmod(0o755)
    shutil.copy2(EXPORTER, out / "slurm_exporter.py")
    shutil.copy2(HERE / "slurm_exporter_probe.py", out / "slurm_exporter_probe.py")
    shutil.copy2(HERE / "slurm_perf_setup.sh", out / "slurm_perf_setup.sh")
    return out


def ensure_prometheus_client() -> str:
    """The image's python3-prometheus-client (Debian's 0.16) or, on an older image without
    it, the controller venv's copy of the pure-Python package."""
    probe = ["exec", NAME, "python3", "-c", "import prometheus_client"]
    if podman(*probe, check=False).returncode == 0:
        return "image (python3-prometheus-client)"
    import prometheus_client

    source = Path(prometheus_client.__file__).parent
    podman("exec", NAME, "mkdir", "-p", f"{INSIDE}/lib")
    podman("cp", str(source), f"{NAME}:{INSIDE}/lib/prometheus_client")
    return f"copied from {source}"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def report(result: dict, setup_s: float, client: str) -> bool:
    scrape = result["scrape"]
    collections = [c for c in result["collections"] if c["duration"] is not None]
    durations = [c["duration"] for c in collections]
    counted = [c["commands_counted"] for c in collections if c["commands_counted"] is not None]
    reported = [c["commands_reported"] for c in collections]
    content = result["content"]
    down = result["down"]
    worst_commands = max(counted + reported)
    rows = [
        (
            f"scrape latency ({scrape['count']} scrapes, 10 ms apart)",
            f"p50 {fmt_ms(scrape['p50'])}, p95 {fmt_ms(scrape['p95'])}, "
            f"max {fmt_ms(scrape['max'])}",
            f"< {fmt_ms(TARGET_SCRAPE_S)}",
            scrape["p95"] < TARGET_SCRAPE_S,
        ),
        (
            f"Slurm commands per collection ({len(counted)} counted)",
            f"counted {sorted(set(counted))}, reported {sorted(set(reported))}",
            f"<= {TARGET_COMMANDS}",
            bool(counted) and worst_commands <= TARGET_COMMANDS,
        ),
        (
            f"collection time ({len(durations)} collections)",
            f"mean {sum(durations) / len(durations):.3f} s, max {max(durations):.3f} s",
            f"< {TARGET_COLLECTION_S:g} s",
            max(durations) < TARGET_COLLECTION_S,
        ),
        (
            "slurmctld stopped: still serving, slurm_up 0",
            f"slurm_up {down['up']:g}, {down['nodes_still_served']:g} node and "
            f"{down['jobs_still_served']:g} job samples kept, max scrape "
            f"{fmt_ms(down['scrape_max'])}",
            "slurm_up 0, values kept",
            down["up"] == 0 and down["nodes_still_served"] == content["nodes"],
        ),
    ]
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print()
    print(
        f"slurm_exporter benchmark: {NODES} CLOUD nodes, {JOBS} jobs "
        f"(setup {setup_s:.0f} s; prometheus_client {client})"
    )
    for index, c in enumerate(collections, 1):
        parts = ", ".join(f"{k} {float(v):.3f}" for k, v in sorted(c["command_seconds"].items()))
        print(f"  collection {index}: {c['duration']:.3f} s ({parts})")
    for name, info in result["commands"].items():
        print(f"  {name:<7} alone: {info['seconds']:.3f} s, {info['bytes']} bytes")
    print(
        f"  served: {content['nodes']:g} node-partition states, {content['jobs']:g} jobs, "
        f"{content['unavailable']:g} unavailable nodes, GPUs {content['gpus_allocated']:g}"
        f"/{content['gpus_total']:g} allocated, {content['user_gpus']:g} by users, "
        f"{scrape['bytes']} bytes per scrape"
    )
    print()
    print(f"{'measure':<{width}}  {'result':<{value_width}}  {'target':<14}  verdict")
    ok = True
    for name, value, target, passed in rows:
        ok &= passed
        verdict = "PASS" if passed else "FAIL"
        print(f"{name:<{width}}  {value:<{value_width}}  {target:<14}  {verdict}")
    sane = content["nodes"] == NODES and content["jobs"] == JOBS and content["up"] == 1
    if not sane:
        print(
            f"content check FAIL: expected {NODES} nodes and {JOBS} jobs with slurm_up 1, "
            f"served {content['nodes']:g} nodes, {content['jobs']:g} jobs, "
            f"slurm_up {content['up']}"
        )
    return ok and sane


def main() -> int:
    if shutil.which("podman") is None:
        raise SystemExit("perf: podman is missing (make deps)")
    os.environ.setdefault("CONTAINERS_CONF", str(LAB / "containers.conf"))
    begin = time.monotonic()
    image = ensure_image()
    podman("rm", "-f", "-t", "0", NAME, check=False)
    try:
        podman(
            "run",
            "-d",
            "--name",
            NAME,
            "--hostname",
            "perfhead",
            "--label",
            "io.xpu.perf=slurm_exporter",
            image,
            "sleep",
            "infinity",
        )
        with tempfile.TemporaryDirectory() as tmp:
            podman("cp", str(stage(Path(tmp))), f"{NAME}:{INSIDE}")
        client = ensure_prometheus_client()
        log(f"slurmctld with {NODES} CLOUD nodes, submitting {JOBS} jobs")
        setup = podman(
            "exec",
            NAME,
            "bash",
            f"{INSIDE}/slurm_perf_setup.sh",
            str(JOBS),
            str(ARRAY_TASKS),
            check=False,
        )
        if setup.returncode != 0:
            log(setup.stdout[-2000:] + setup.stderr[-3000:])
            return 1
        log(setup.stdout.strip().splitlines()[-1])
        setup_s = time.monotonic() - begin
        log("measuring the exporter")
        probe = podman("exec", NAME, "python3", f"{INSIDE}/slurm_exporter_probe.py", check=False)
        if probe.returncode != 0:
            log(probe.stdout[-2000:] + probe.stderr[-3000:])
            log(podman("exec", NAME, "tail", "-20", f"{INSIDE}/exporter.log", check=False).stdout)
            return 1
        result = json.loads(probe.stdout.strip().splitlines()[-1])
        ok = report(result, setup_s, client)
        print(f"\ntotal {time.monotonic() - begin:.0f} s: {'PASS' if ok else 'FAIL'}")
        return 0 if ok else 1
    finally:
        if os.environ.get("XPU_PERF_KEEP") == "1":
            log(f"container {NAME} kept (XPU_PERF_KEEP=1); remove it with podman rm -f {NAME}")
        else:
            podman("rm", "-f", "-t", "0", NAME, check=False)


if __name__ == "__main__":
    sys.exit(main())
