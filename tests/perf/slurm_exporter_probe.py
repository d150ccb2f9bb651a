"""Measures slurm_exporter inside the benchmark container; prints one JSON line.

Run by tests/perf/bench_slurm_exporter.py as ``python3 slurm_exporter_probe.py``. It starts the
exporter on 127.0.0.1 with ``--slurm-bin-dir`` pointing at counting wrappers of sinfo, squeue
and sdiag (each appends a line to calls.log, then execs the real command), then:

1. times each Slurm command once by itself (for reference);
2. follows COLLECTIONS collections (every INTERVAL seconds), reading each one's duration and
   command count (reported by the exporter, and counted: wrapper log lines between two);
3. scrapes /metrics SCRAPES times, 10 ms apart, while the exporter goes on collecting;
4. stops slurmctld and checks the exporter still answers, with slurm_up 0 and the old values.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = "/opt/xpu-perf"
PORT = 9102
URL = f"http://127.0.0.1:{PORT}/metrics"
INTERVAL = float(os.environ.get("PERF_INTERVAL", "2"))
SCRAPES = int(os.environ.get("PERF_SCRAPES", "200"))
COLLECTIONS = int(os.environ.get("PERF_COLLECTIONS", "10"))
CALLS = f"{HERE}/calls.log"
COMMAND_SECONDS = re.compile(
    r'^slurm_exporter_command_duration_seconds\{command="(\w+)"\} (\S+)$', re.MULTILINE
)


def scrape() -> tuple[float, str]:
    begin = time.perf_counter()
    with urllib.request.urlopen(URL, timeout=10) as response:
        body = response.read().decode()
    return time.perf_counter() - begin, body


def metric(body: str, name: str) -> float | None:
    match = re.search(rf"^{name} (\S+)$", body, re.MULTILINE)
    return float(match.group(1)) if match else None


def total(body: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", body, re.MULTILINE))


def calls() -> int:
    try:
        with open(CALLS) as handle:
            return sum(1 for _ in handle)
    except FileNotFoundError:
        return 0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    env = dict(os.environ, PYTHONPATH=f"{HERE}/lib")
    sys.path[:0] = [HERE, f"{HERE}/lib"]
    import prometheus_client
    import slurm_exporter

    # The exporter's own command lines, run once each against the real binaries on PATH.
    reference = slurm_exporter.SlurmCollector(bin_dir="")
    commands = {}
    for name in slurm_exporter.COMMANDS:
        begin = time.perf_counter()
        out = subprocess.run(
            reference.argv(name), capture_output=True, check=True, env=reference.environment()
        ).stdout
        commands[name] = {"seconds": time.perf_counter() - begin, "bytes": len(out)}

    exporter = subprocess.Popen(
        [
            sys.executable,
            f"{HERE}/slurm_exporter.py",
            "--listen-address",
            "127.0.0.1",
            "--port",
            str(PORT),
            "--interval",
            str(INTERVAL),
            "--timeout",
            "10",
            "--slurm-bin-dir",
            f"{HERE}/bin",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(f"{HERE}/exporter.log", "w"),  # noqa: SIM115 - lives as long as the process
    )
    result: dict = {"commands": commands}
    try:
        deadline = time.monotonic() + 30
        body = ""
        while time.monotonic() < deadline:
            try:
                _, body = scrape()
                if (metric(body, "slurm_exporter_last_collection_timestamp_seconds") or 0) > 0:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        else:
            raise SystemExit("exporter did not finish a collection in 30 s")
        result["prometheus_client"] = os.path.dirname(prometheus_client.__file__)
        # Phase 1: collections, with a scrape every 0.25 s to read each one's figures.
        collections: list[dict] = []
        last_ts = metric(body, "slurm_exporter_last_collection_timestamp_seconds")
        last_calls = calls()
        deadline = time.monotonic() + 120
        while len(collections) < COLLECTIONS and time.monotonic() < deadline:
            _, body = scrape()
            ts = metric(body, "slurm_exporter_last_collection_timestamp_seconds")
            if ts != last_ts:
                now_calls = calls()
                in_time = ts is not None and last_ts is not None and ts - last_ts < 2 * INTERVAL
                collections.append(
                    {
                        "duration": metric(body, "slurm_exporter_collection_duration_seconds"),
                        "commands_reported": metric(body, "slurm_exporter_commands_per_collection"),
                        # Wrapper log lines since the previous collection (none missed).
                        "commands_counted": now_calls - last_calls if in_time else None,
                        "up": metric(body, "slurm_up"),
                        "command_seconds": dict(COMMAND_SECONDS.findall(body)),
                    }
                )
                last_ts, last_calls = ts, now_calls
            time.sleep(0.25)
        # Phase 2: SCRAPES scrapes 10 ms apart while the exporter goes on collecting.
        latencies: list[float] = []
        for _ in range(SCRAPES):
            seconds, body = scrape()
            latencies.append(seconds)
            time.sleep(0.01)
        result["scrape"] = {
            "count": len(latencies),
            "p50": statistics.median(latencies),
            "p95": pct(latencies, 0.95),
            "max": max(latencies),
            "bytes": len(body.encode()),
        }
        result["collections"] = collections
        result["content"] = {
            "nodes": total(body, "slurm_nodes"),
            "partition_nodes": total(body, "slurm_partition_nodes_total"),
            "jobs": total(body, "slurm_jobs"),
            "unavailable": total(body, "slurm_node_unavailable"),
            "gpus_total": total(body, "slurm_partition_gpus_total"),
            "gpus_allocated": total(body, "slurm_partition_gpus_allocated"),
            "user_gpus": total(body, "slurm_user_gpus_allocated"),
            "up": metric(body, "slurm_up"),
        }

        # slurmctld goes away: the exporter keeps serving the last values with slurm_up 0.
        subprocess.run(["scontrol", "shutdown", "slurmctld"], check=True, env=env)
        deadline = time.monotonic() + 60
        down_latencies = []
        while time.monotonic() < deadline:
            seconds, body = scrape()
            down_latencies.append(seconds)
            if metric(body, "slurm_up") == 0:
                break
            time.sleep(0.1)
        result["down"] = {
            "up": metric(body, "slurm_up"),
            "nodes_still_served": total(body, "slurm_nodes"),
            "jobs_still_served": total(body, "slurm_jobs"),
            "errors_sinfo": total(body, "slurm_exporter_command_errors_total"),
            "scrape_max": max(down_latencies),
        }
    finally:
        exporter.terminate()
        try:
            exporter.wait(timeout=15)
        except subprocess.TimeoutExpired:
            exporter.kill()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
