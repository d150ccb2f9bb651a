#!/usr/bin/env python3
"""Prometheus exporter for Slurm: nodes, partitions, jobs, GPUs and scheduler statistics.

A background thread collects every ``--interval`` seconds with at most three Slurm commands,
each under a deadline (``--timeout``):

* ``sinfo -h -a -N -O ...``  one line per node and partition: state with its flags (cloud
  power states, drain, fail, maintenance...), reason, CPUs and GRES configured / in use;
* ``squeue -h -a -O ...``    one line per job or pending array (array tasks are counted from
  the task expression): state, partition, user, node / task counts and the GPU requests;
* ``sdiag``                  scheduler statistics (text).

The HTTP handler serves what the last collection cached and never runs a Slurm command, so a
scrape costs the same whatever the size of the cluster. When a command fails or times out the
previous values stay served, ``slurm_up`` drops to 0, ``slurm_exporter_command_errors_total``
counts the failure and ``slurm_exporter_cache_age_seconds`` grows.

Runs on Python 3.9+ with prometheus_client 0.16 or newer; needs no privileges (Slurm clients
talk to slurmctld through munge). ``SLURM_CONF`` in the environment is passed to the commands.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    Runner = Callable[[list[str], float, dict[str, str]], "CommandResult"]

LOG = logging.getLogger("slurm_exporter")

DELIMITER = "|"
# Output fields, in order. The free-text field (Reason) comes last: it is the only one that may
# contain the delimiter, and the parser gives the last field the rest of the line.
SINFO_FIELDS = (
    "NodeList",
    "PartitionName",
    "StateComplete",
    "StateCompact",
    "CPUsState",
    "Gres",
    "GresUsed",
    "Reason",
)
SQUEUE_FIELDS = (
    "ArrayTaskID",
    "State",
    "Partition",
    "UserName",
    "NumNodes",
    "NumTasks",
    "tres-per-job",
    "tres-per-node",
    "tres-per-task",
    "tres-per-socket",
    "tres-alloc",
)
COMMANDS = ("sinfo", "squeue", "sdiag")

# Primary node states, as in the monitoring contract (one per node and partition).
NODE_STATES = (
    "allocated",
    "mixed",
    "idle",
    "completing",
    "drained",
    "draining",
    "down",
    "fail",
    "reserved",
    "maintenance",
    "powered_down",
    "powering_up",
    "powering_down",
    "unknown",
)
UNAVAILABLE_STATES = ("drained", "draining", "down", "fail")
# Job states whose GRES are held by the job (squeue lists these; PENDING holds nothing).
HOLDING_STATES = frozenset(
    {"running", "completing", "configuring", "suspended", "stopped", "signaling", "stage_out"}
)
REASON_MAX = 200


def format_option(fields: Iterable[str]) -> str:
    """The --Format / -O value: every field unpadded (size 0), each followed by the delimiter."""
    return ",".join(f"{name}:0{DELIMITER}" for name in fields)


def split_line(line: str, count: int) -> list[str] | None:
    """Split one output line into ``count`` fields; the last field keeps any delimiter it holds."""
    if line.endswith(DELIMITER):
        line = line[: -len(DELIMITER)]
    parts = line.split(DELIMITER, count - 1)
    return parts if len(parts) == count else None


# --- GRES and TRES ------------------------------------------------------------------------------

_SUFFIX = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_COUNT = re.compile(r"^(\d+)([KMGTP]?)$")


def _count(text: str) -> int | None:
    match = _COUNT.match(text.strip())
    if not match:
        return None
    return int(match.group(1)) * _SUFFIX[match.group(2)]


def split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses: 'gpu:h100:4(S:0,1),nic:1' -> 2 items."""
    items, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        if char == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def gres_gpus(text: str) -> int:
    """GPUs in an sinfo Gres / GresUsed string.

    'gpu:h100:8(S:0-1)' -> 8, 'gpu:8' -> 8, 'gpu:h100:8(IDX:0-7)' -> 8, 'gpu:h100:0(IDX:N/A)' -> 0,
    'gpu' -> 1, '(null)' -> 0, 'gpu:a100:2(S:0),gpu:h100:4(S:1),nic:1' -> 6.
    """
    total = 0
    for item in split_top_level(text):
        item = item.split("(", 1)[0]
        parts = item.split(":")
        if parts[0] != "gpu":
            continue
        if len(parts) == 1:
            total += 1
            continue
        count = _count(parts[-1])
        # 'gpu:h100' (a type and no count) is one GPU; an unreadable count is none.
        total += count if count is not None else (1 if len(parts) == 2 else 0)
    return total


_TRES_GPU = re.compile(r"^gres[:/]gpu(?::[^:=]+)?(?::(\d+[KMGTP]?))?$")


def tres_request_gpus(text: str) -> int | None:
    """GPUs in a tres-per-{job,node,task,socket} value, or None when it requests none.

    22.05 prints 'gres:gpu:h100:2', 23.02+ 'gres/gpu:h100:2'; items are comma separated and may
    include other resources ('cpu:2,gres/gpu:1'). A typed item without a count is one GPU.
    """
    if not text or text in ("N/A", "(null)"):
        return None
    found = None
    for item in split_top_level(text):
        match = _TRES_GPU.match(item)
        if not match:
            continue
        if match.group(1) is not None:
            number = _count(match.group(1)) or 0
        else:
            # 'gres/gpu:2' parses as type '2' without a count: it is a count.
            tail = item.split(":")[-1]
            number = _count(tail) if _count(tail) is not None else 1
        found = (found or 0) + number
    return found


def tres_alloc_gpus(text: str) -> int | None:
    """'gres/gpu=16' of a tres-alloc string (only where AccountingStorageTRES tracks GPUs)."""
    typed = None
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key == "gres/gpu":
            return _count(value)
        if key.startswith("gres/gpu:"):
            typed = (typed or 0) + (_count(value) or 0)
    return typed


def job_gpus(fields: dict[str, str]) -> int:
    """GPUs a job holds: tres-alloc when Slurm tracks gres/gpu, else its request scaled."""
    alloc = tres_alloc_gpus(fields["tres-alloc"])
    if alloc is not None:
        return alloc
    nodes = _int(fields["NumNodes"], 1)
    for key, scale in (
        ("tres-per-job", 1),
        ("tres-per-node", nodes),
        ("tres-per-task", _int(fields["NumTasks"], 1)),
        # Sockets per node are not in the output: one socket per node is a lower bound.
        ("tres-per-socket", nodes),
    ):
        request = tres_request_gpus(fields[key])
        if request is not None:
            return request * scale
    return 0


def _int(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default


_RANGE = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$")


def array_tasks(text: str) -> int:
    """Jobs a squeue line stands for: 1, or the tasks of a pending array's expression.

    'N/A' -> 1, '7' -> 1, '1-100' -> 100, '1-20%2' -> 20, '0-998:2' -> 500, '1,3,5-7' -> 5.
    An expression cut short by Slurm (SLURM_BITSTR_LEN) counts what it shows.
    """
    text = text.strip().strip("[]")
    if not text or text == "N/A":
        return 1
    text = text.split("%", 1)[0]
    total = 0
    for part in text.split(","):
        match = _RANGE.match(part.strip())
        if not match:
            continue
        first, last, step = match.groups()
        if last is None:
            total += 1
        else:
            span = int(last) - int(first)
            total += span // int(step or 1) + 1 if span >= 0 else 0
    return max(total, 1)


# --- node states --------------------------------------------------------------------------------

_FLAG_ORDER = (
    ("fail", "fail"),
    ("maintenance", "maintenance"),
    ("powering_up", "powering_up"),
    ("powering_down", "powering_down"),
    ("power_down", "powering_down"),
    ("powered_down", "powered_down"),
    ("reserved", "reserved"),
    ("completing", "completing"),
)
_BASE = {
    "allocated": "allocated",
    "alloc": "allocated",
    "mixed": "mixed",
    "mix": "mixed",
    "idle": "idle",
    "completing": "completing",
    "comp": "completing",
    "down": "down",
}
# StateCompact suffixes, for Slurm versions or outputs without StateComplete flags.
_SUFFIX_FLAGS = {
    "~": "powered_down",
    "#": "powering_up",
    "%": "powering_down",
    "!": "power_down",
    "@": "reboot_requested",
    "^": "reboot_issued",
    "*": "not_responding",
    "$": "maintenance",
}
_COMPACT = {
    "drain": ("idle", {"drain"}),
    "drng": ("allocated", {"drain"}),
    "drained": ("idle", {"drain"}),
    "draining": ("allocated", {"drain"}),
    "fail": ("idle", {"fail"}),
    "failg": ("allocated", {"fail"}),
    "maint": ("idle", {"maintenance"}),
    "resv": ("idle", {"reserved"}),
    "plnd": ("idle", {"planned"}),
    "boot": ("down", {"reboot_issued"}),
    "pow_dn": ("idle", {"powering_down"}),
    "pow_up": ("allocated", {"powering_up"}),
}


def state_parts(complete: str, compact: str) -> tuple[str, set[str]]:
    """Base state and flags from StateComplete ('idle+cloud+drain+powered_down'), falling back
    on StateCompact ('drain~', 'mix#', 'idle*') when StateComplete is empty."""
    complete = complete.strip().lower()
    if complete and complete not in ("n/a", "(null)"):
        base, *flags = complete.split("+")
        return base, set(flags)
    text = compact.strip().lower()
    flags: set[str] = set()
    while text and text[-1] in _SUFFIX_FLAGS:
        flags.add(_SUFFIX_FLAGS[text[-1]])
        text = text[:-1]
    if text in _COMPACT:
        base, extra = _COMPACT[text]
        return base, flags | extra
    return text, flags


def primary_state(complete: str, compact: str = "") -> str:
    """The one state a node counts under (precedence: down, fail, drained/draining,
    maintenance, power states, reserved, completing, then the base state)."""
    base, flags = state_parts(complete, compact)
    if base == "down":
        return "down"
    busy = base in ("allocated", "mixed", "completing") or "completing" in flags
    if "fail" in flags:
        return "fail"
    if "drain" in flags:
        return "draining" if busy else "drained"
    for flag, state in _FLAG_ORDER:
        if flag in flags:
            return state
    return _BASE.get(base, "unknown")


# --- parsed outputs -----------------------------------------------------------------------------


@dataclass
class PartitionStats:
    nodes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(NODE_STATES, 0))
    nodes_total: int = 0
    cpus_total: int = 0
    cpus_allocated: int = 0
    gpus_total: int = 0
    gpus_allocated: int = 0


@dataclass
class NodeSnapshot:
    partitions: dict[str, PartitionStats]
    # node -> (state, reason) for drained, draining, down and failed nodes.
    unavailable: dict[str, tuple[str, str]]
    bad_lines: int = 0


@dataclass
class JobSnapshot:
    # (partition, state, user) -> jobs
    jobs: dict[tuple[str, str, str], int]
    # (user, partition) -> GPUs held
    user_gpus: dict[tuple[str, str], int]
    bad_lines: int = 0


def parse_sinfo(text: str) -> NodeSnapshot:
    """One line per node and partition. Lines that differ only by node name (most of a big
    cluster) are grouped first, so each distinct line is parsed once."""
    groups: dict[str, list[str]] = {}
    bad = 0
    for line in text.splitlines():
        node, sep, rest = line.partition(DELIMITER)
        if sep:
            groups.setdefault(rest, []).append(node.strip())
        elif line.strip():
            bad += 1
    partitions: dict[str, PartitionStats] = {}
    unavailable: dict[str, tuple[str, str]] = {}
    for rest, nodes in groups.items():
        parts = split_line(rest, len(SINFO_FIELDS) - 1)
        if parts is None:
            bad += len(nodes)
            continue
        partition, complete, compact, cpus, gres, gres_used, reason = parts
        count = len(nodes)
        partition = partition.strip().rstrip("*")
        state = primary_state(complete, compact)
        stats = partitions.setdefault(partition, PartitionStats())
        stats.nodes[state] += count
        stats.nodes_total += count
        cpu_fields = cpus.split("/")
        if len(cpu_fields) == 4:
            stats.cpus_allocated += _int(cpu_fields[0], 0) * count
            stats.cpus_total += _int(cpu_fields[3], 0) * count
        stats.gpus_total += gres_gpus(gres) * count
        stats.gpus_allocated += gres_gpus(gres_used) * count
        if state in UNAVAILABLE_STATES:
            reason = reason.strip()
            if reason.lower() in ("none", "(null)", "n/a"):
                reason = ""
            for node in nodes:
                unavailable[node] = (state, reason[:REASON_MAX])
    return NodeSnapshot(partitions, unavailable, bad)


def parse_squeue(text: str) -> JobSnapshot:
    """One line per job or pending array. Lines that differ only by the array task field
    (most of a big queue) are counted first, so each distinct line is parsed once."""
    counts: dict[str, int] = {}
    bad = 0
    for line in text.splitlines():
        tasks, sep, rest = line.partition(DELIMITER)
        if not sep:
            if line.strip():
                bad += 1
            continue
        jobs_here = 1 if tasks in ("N/A", "") or tasks.isdigit() else array_tasks(tasks)
        counts[rest] = counts.get(rest, 0) + jobs_here
    jobs: dict[tuple[str, str, str], int] = {}
    user_gpus: dict[tuple[str, str], int] = {}
    names = SQUEUE_FIELDS[1:]
    for rest, count in counts.items():
        parts = split_line(rest, len(names))
        if parts is None:
            bad += 1
            continue
        fields = {name: parts[i].strip() for i, name in enumerate(names)}
        state = fields["State"].lower()
        # Slurm appends the reason to a few states on some versions ('CANCELLED by 0').
        state = state.split(" ", 1)[0] or "unknown"
        key = (fields["Partition"], state, fields["UserName"])
        jobs[key] = jobs.get(key, 0) + count
        if state in HOLDING_STATES:
            gpus = job_gpus(fields)
            if gpus:
                gkey = (fields["UserName"], fields["Partition"])
                user_gpus[gkey] = user_gpus.get(gkey, 0) + gpus * count
    return JobSnapshot(jobs, user_gpus, bad)


# sdiag line -> metric, per section ('' = the general part before the first section).
SDIAG_METRICS = {
    ("", "server thread count"): "server_threads",
    ("", "agent queue size"): "agent_queue_size",
    ("", "agent thread count"): "agent_threads",
    ("main", "last cycle"): "main_last_cycle",
    ("main", "mean cycle"): "main_mean_cycle",
    ("main", "last queue length"): "main_queue_length",
    ("backfill", "last cycle"): "backfill_last_cycle",
    ("backfill", "mean cycle"): "backfill_mean_cycle",
}


def parse_sdiag(text: str) -> dict[str, float]:
    """The sdiag figures this exporter publishes, by SDIAG_METRICS name (cycles in microseconds)."""
    values: dict[str, float] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        lower = line.lower()
        if lower.startswith("main schedule statistics"):
            section = "main"
            continue
        if lower.startswith("backfilling stats"):
            section = "backfill"
            continue
        if lower.startswith(("latency for", "remote procedure call", "pending rpc")):
            section = "other"
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        name = SDIAG_METRICS.get((section, key.strip().lower()))
        match = re.match(r"\s*(-?\d+(?:\.\d+)?)", value)
        if name and match and name not in values:
            values[name] = float(match.group(1))
    return values


# --- running commands ---------------------------------------------------------------------------


@dataclass
class CommandResult:
    ok: bool
    stdout: str = ""
    error: str = ""
    timed_out: bool = False
    unreachable: bool = False


def run_command(argv: list[str], timeout: float, env: dict[str, str]) -> CommandResult:
    """Run one Slurm client under a deadline; on timeout kill its whole process group."""
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
    except OSError as exc:
        return CommandResult(False, error=f"cannot run {argv[0]}: {exc}")
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=5)
        return CommandResult(False, error=f"timed out after {timeout:g} s", timed_out=True)
    stderr = err.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        return CommandResult(
            False,
            error=f"exit {proc.returncode}: {stderr[-500:]}",
            unreachable="unable to contact slurm controller" in stderr.lower(),
        )
    return CommandResult(True, stdout=out.decode("utf-8", "replace"))


# --- the collector ------------------------------------------------------------------------------


@dataclass
class Cache:
    """What the scrape handler serves; replaced as a whole by the collector thread."""

    nodes: NodeSnapshot | None = None
    jobs: JobSnapshot | None = None
    sdiag: dict[str, float] | None = None
    fetched: dict[str, float] = field(default_factory=dict)
    up: bool = False
    collections: int = 0
    last_collection: float = 0.0
    duration: float = 0.0
    commands: int = 0
    # Seconds each command of the last collection took (only those it ran).
    command_seconds: dict[str, float] = field(default_factory=dict)
    # The Slurm families above, rendered once per collection (scrapes only add health metrics).
    rendered: bytes = b""


class _Families:
    """A registry stand-in for generate_latest(): yields fixed metric families."""

    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self) -> list:
        return self.families


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class SlurmCollector:
    """Collects with sinfo, squeue and sdiag in a background thread; collect() reads the cache."""

    def __init__(
        self,
        bin_dir: str = "",
        interval: float = 30.0,
        timeout: float = 10.0,
        runner: Runner = run_command,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bin_dir = bin_dir
        self.interval = interval
        self.timeout = timeout
        self.runner = runner
        self.clock = clock
        self.started = clock()
        self.cache = Cache()
        self.errors = dict.fromkeys(COMMANDS, 0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # Commands --------------------------------------------------------------------------------

    def binary(self, name: str) -> str:
        if self.bin_dir:
            return os.path.join(self.bin_dir, name)
        return shutil.which(name) or name

    def argv(self, name: str) -> list[str]:
        if name == "sinfo":
            return [self.binary("sinfo"), "-h", "-a", "-N", "-O", format_option(SINFO_FIELDS)]
        if name == "squeue":
            return [self.binary("squeue"), "-h", "-a", "-O", format_option(SQUEUE_FIELDS)]
        return [self.binary("sdiag")]

    @staticmethod
    def environment() -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SINFO_", "SQUEUE_", "SLURM_TIME_FORMAT"))
        }
        env["LC_ALL"] = "C"
        # Print pending arrays' full task expressions (the default cuts them at 64 bytes).
        env["SLURM_BITSTR_LEN"] = "0"
        return env

    # One collection --------------------------------------------------------------------------

    def collect_once(self) -> Cache:
        """Run the commands (at most one each) and publish a new cache; returns it."""
        start = time.monotonic()
        old = self.cache
        new = Cache(
            nodes=old.nodes,
            jobs=old.jobs,
            sdiag=old.sdiag,
            fetched=dict(old.fetched),
            collections=old.collections + 1,
        )
        env = self.environment()
        ran = 0
        all_ok = True
        for name in COMMANDS:
            ran += 1
            began = time.monotonic()
            result = self.runner(self.argv(name), self.timeout, env)
            new.command_seconds[name] = time.monotonic() - began
            if result.ok:
                try:
                    self._store(new, name, result.stdout)
                except Exception:  # never die on bad input: count it and keep serving
                    LOG.exception("cannot parse %s output", name)
                    result = CommandResult(False, error="unparsable output")
                else:
                    new.fetched[name] = self.clock()
            if not result.ok:
                all_ok = False
                self.errors[name] += 1
                LOG.warning("%s failed: %s", name, result.error)
                if result.timed_out or result.unreachable:
                    # slurmctld does not answer: the other commands would wait as long.
                    LOG.warning("slurmctld unreachable: skipping the remaining commands")
                    break
        new.up = all_ok
        new.commands = ran
        new.duration = time.monotonic() - start
        new.last_collection = self.clock()
        try:
            new.rendered = generate_latest(_Families(list(self.slurm_families(new))))
        except Exception:  # keep serving the previous rendering
            LOG.exception("rendering the Slurm metrics failed")
            new.rendered = old.rendered
        self.cache = new
        return new

    @staticmethod
    def _store(cache: Cache, name: str, output: str) -> None:
        if name == "sinfo":
            cache.nodes = parse_sinfo(output)
            bad = cache.nodes.bad_lines
        elif name == "squeue":
            cache.jobs = parse_squeue(output)
            bad = cache.jobs.bad_lines
        else:
            cache.sdiag = parse_sdiag(output)
            bad = 0
        if bad:
            LOG.warning("%s: skipped %d lines that do not have the expected fields", name, bad)

    # Thread ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="slurm-collector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout * 3 + 5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            begin = time.monotonic()
            try:
                self.collect_once()
            except Exception:  # the thread must survive anything
                LOG.exception("collection failed")
            self._stop.wait(max(self.interval - (time.monotonic() - begin), 0.1))

    # Prometheus ------------------------------------------------------------------------------

    def describe(self) -> list:
        return []

    def slurm_families(self, cache: Cache) -> Iterator[GaugeMetricFamily]:
        """The families built from Slurm's outputs (rendered once per collection)."""
        gauge = _gauge
        if cache.nodes is not None:
            nodes = gauge(
                "slurm_nodes",
                "Nodes per partition by primary state (each node once per partition)",
                ["partition", "state"],
            )
            families = {
                "nodes_total": gauge(
                    "slurm_partition_nodes_total", "Nodes in the partition", ["partition"]
                ),
                "cpus_total": gauge(
                    "slurm_partition_cpus_total", "CPUs of the partition's nodes", ["partition"]
                ),
                "cpus_allocated": gauge(
                    "slurm_partition_cpus_allocated",
                    "Allocated CPUs of the partition's nodes",
                    ["partition"],
                ),
                "gpus_total": gauge(
                    "slurm_partition_gpus_total",
                    "GPUs (GRES gpu) of the partition's nodes",
                    ["partition"],
                ),
                "gpus_allocated": gauge(
                    "slurm_partition_gpus_allocated",
                    "GPUs in use (GresUsed) on the partition's nodes",
                    ["partition"],
                ),
            }
            for partition, stats in sorted(cache.nodes.partitions.items()):
                for state in NODE_STATES:
                    nodes.add_metric([partition, state], float(stats.nodes[state]))
                for attr, family in families.items():
                    family.add_metric([partition], float(getattr(stats, attr)))
            yield nodes
            yield from families.values()
            unavailable = gauge(
                "slurm_node_unavailable",
                "1 for each drained, draining, down or failed node, with Slurm's reason",
                ["node", "state", "reason"],
            )
            for node, (state, reason) in sorted(cache.nodes.unavailable.items()):
                unavailable.add_metric([node, state, reason], 1.0)
            yield unavailable

        if cache.jobs is not None:
            jobs = gauge(
                "slurm_jobs",
                "Jobs (array tasks counted one by one) by partition, state and user",
                ["partition", "state", "user"],
            )
            for (partition, state, user), count in sorted(cache.jobs.jobs.items()):
                jobs.add_metric([partition, state, user], float(count))
            yield jobs
            user_gpus = gauge(
                "slurm_user_gpus_allocated",
                "GPUs held by the user's running jobs in the partition",
                ["user", "partition"],
            )
            for (user, partition), count in sorted(cache.jobs.user_gpus.items()):
                user_gpus.add_metric([user, partition], float(count))
            yield user_gpus

        if cache.sdiag is not None:
            s = cache.sdiag
            for name, doc, key, scale in (
                ("slurm_scheduler_threads", "sdiag: Agent thread count", "agent_threads", 1),
                (
                    "slurm_scheduler_server_threads",
                    "sdiag: Server thread count",
                    "server_threads",
                    1,
                ),
                (
                    "slurm_scheduler_agent_queue_size",
                    "sdiag: Agent queue size",
                    "agent_queue_size",
                    1,
                ),
                (
                    "slurm_scheduler_queue_length",
                    "sdiag: main scheduler's last queue length",
                    "main_queue_length",
                    1,
                ),
                (
                    "slurm_scheduler_cycle_last_seconds",
                    "sdiag: main scheduler's last cycle",
                    "main_last_cycle",
                    1e-6,
                ),
                (
                    "slurm_scheduler_cycle_mean_seconds",
                    "sdiag: main scheduler's mean cycle",
                    "main_mean_cycle",
                    1e-6,
                ),
                (
                    "slurm_backfill_cycle_last_seconds",
                    "sdiag: backfill scheduler's last cycle",
                    "backfill_last_cycle",
                    1e-6,
                ),
                (
                    "slurm_backfill_cycle_mean_seconds",
                    "sdiag: backfill scheduler's mean cycle",
                    "backfill_mean_cycle",
                    1e-6,
                ),
            ):
                if key in s:
                    family = gauge(name, doc)
                    family.add_metric([], s[key] * scale)
                    yield family

    def exposition(self, registry: CollectorRegistry) -> bytes:
        """What /metrics answers: the cached Slurm families and the registry's (health)."""
        return self.cache.rendered + generate_latest(registry)

    def collect(self) -> Iterator:
        """Health families, fresh at every scrape (the registry's collector)."""
        cache = self.cache
        now = self.clock()
        up = _gauge("slurm_up", "1 when the last collection reached slurmctld with every command")
        up.add_metric([], 1.0 if cache.up else 0.0)
        yield up
        health = (
            (
                "slurm_exporter_collection_duration_seconds",
                "Seconds the last collection took",
                cache.duration,
            ),
            (
                "slurm_exporter_commands_per_collection",
                "Slurm commands the last collection ran",
                float(cache.commands),
            ),
            (
                "slurm_exporter_last_collection_timestamp_seconds",
                "Unix time the last collection ended (0 before the first)",
                cache.last_collection,
            ),
            (
                "slurm_exporter_cache_age_seconds",
                "Seconds since the oldest served Slurm data was fetched (since start if never)",
                self.cache_age(cache, now),
            ),
        )
        for name, doc, value in health:
            family = _gauge(name, doc)
            family.add_metric([], value)
            yield family
        seconds = _gauge(
            "slurm_exporter_command_duration_seconds",
            "Seconds each Slurm command of the last collection took (those it ran)",
            ["command"],
        )
        for name, value in sorted(cache.command_seconds.items()):
            seconds.add_metric([name], value)
        yield seconds
        errors = CounterMetricFamily(
            "slurm_exporter_command_errors",
            "Slurm commands that failed, timed out or printed what could not be parsed",
            labels=["command"],
        )
        for name in COMMANDS:
            errors.add_metric([name], float(self.errors[name]))
        yield errors

    def cache_age(self, cache: Cache, now: float) -> float:
        if len(cache.fetched) < len(COMMANDS):
            return max(now - self.started, 0.0)
        return max(now - min(cache.fetched.values()), 0.0)


# --- HTTP ---------------------------------------------------------------------------------------


def make_server(
    address: str, port: int, collector: SlurmCollector, registry: CollectorRegistry
) -> ThreadingHTTPServer:
    """A threading HTTP server answering /metrics from the registry (cached values only)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                try:
                    body, status, ctype = collector.exposition(registry), 200, CONTENT_TYPE_LATEST
                except Exception as exc:  # keep serving; say what broke
                    LOG.exception("rendering metrics failed")
                    body, status, ctype = f"error: {exc}\n".encode(), 500, "text/plain"
            elif path in ("/", ""):
                body, status, ctype = (
                    b"<html><body><h1>Slurm exporter</h1>"
                    b'<a href="/metrics">metrics</a></body></html>\n',
                    200,
                    "text/html",
                )
            else:
                body, status, ctype = b"not found\n", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:
            LOG.debug("%s %s", self.address_string(), format % args)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    if ":" in address:
        Server.address_family = socket.AF_INET6
    return Server((address.strip("[]"), port), Handler)


def build_registry(collector: SlurmCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    return registry


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--listen-address", default="0.0.0.0", help="address to bind (0.0.0.0)")
    parser.add_argument("--port", type=int, default=9102, help="port to serve /metrics (9102)")
    parser.add_argument(
        "--interval", type=float, default=30.0, help="seconds between collections (30)"
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds each Slurm command may take (10)"
    )
    parser.add_argument(
        "--slurm-bin-dir",
        default="",
        help="directory of sinfo, squeue and sdiag (/opt/slurm/bin on ParallelCluster); "
        "default: found on PATH",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="collect once, print the metrics and exit (1 when a command failed)",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    args = parser.parse_args(argv)
    if args.interval <= 0 or args.timeout <= 0 or not 0 <= args.port <= 65535:
        parser.error("--interval and --timeout must be positive and --port in 0..65535")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    collector = SlurmCollector(args.slurm_bin_dir, args.interval, args.timeout)
    registry = build_registry(collector)
    if args.once:
        cache = collector.collect_once()
        sys.stdout.write(collector.exposition(registry).decode())
        return 0 if cache.up else 1
    server = make_server(args.listen_address, args.port, collector, registry)
    stopping = threading.Event()

    def _stop(signum: int, _frame) -> None:
        LOG.info("signal %d: stopping", signum)
        stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    collector.start()
    host, port = server.server_address[:2]
    LOG.info(
        "serving http://%s:%d/metrics; collecting every %gs (timeout %gs) with %s",
        host,
        port,
        args.interval,
        args.timeout,
        args.slurm_bin_dir or "the Slurm commands on PATH",
    )
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        collector.stop()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
