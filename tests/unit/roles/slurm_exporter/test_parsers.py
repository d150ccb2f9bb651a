"""The exporter's parsers on recorded (Slurm 22.05) and synthesized (23.02-24.11) outputs."""

from __future__ import annotations

import ast

import pytest

from .conftest import SCRIPT, fixture, load_exporter

exp = load_exporter()


def nonzero(stats) -> dict[str, int]:
    return {state: count for state, count in stats.nodes.items() if count}


def test_daemon_is_python_3_9_syntax() -> None:
    # Lab nodes and older head nodes run Python 3.9-3.11; ruff targets 3.11 for the repo.
    ast.parse(SCRIPT.read_text(), feature_version=(3, 9))


def test_sinfo_22_05_recorded_states_per_partition() -> None:
    snap = exp.parse_sinfo(fixture("sinfo_22.05.txt"))
    assert snap.bad_lines == 0
    assert set(snap.partitions) == {"cpu", "gpu", "debug"}
    assert nonzero(snap.partitions["cpu"]) == {
        "powered_down": 4,  # idle~ (two of them in a plain reservation)
        "drained": 2,  # drain~
        "maintenance": 2,  # maint reservation on powered-down nodes
        "powering_down": 2,  # idle%
    }
    assert nonzero(snap.partitions["gpu"]) == {
        "down": 2,  # down~ and a node rebooting (boot^)
        "fail": 1,
        "powering_down": 2,  # idle! (power down pending)
        "powered_down": 2,  # mix~: allocated to jobs, not yet powered up
        "draining": 1,  # drng
    }
    assert nonzero(snap.partitions["debug"]) == {"down": 1, "draining": 1}
    # Every state of the contract is present (zeros included) for stable dashboards.
    assert list(snap.partitions["cpu"].nodes) == list(exp.NODE_STATES)


def test_sinfo_22_05_recorded_cpus_and_gpus() -> None:
    parts = exp.parse_sinfo(fixture("sinfo_22.05.txt")).partitions
    gpu, cpu, debug = parts["gpu"], parts["cpu"], parts["debug"]
    assert (gpu.nodes_total, gpu.gpus_total, gpu.gpus_allocated) == (8, 6 * 8 + 2 * 4, 8 + 8 + 4)
    assert (gpu.cpus_total, gpu.cpus_allocated) == (6 * 192 + 2 * 2, 1 + 1 + 2)
    # CPU-only nodes print Gres '(null)' and GresUsed 'gpu:0': no GPUs.
    assert (cpu.gpus_total, cpu.gpus_allocated, cpu.cpus_total) == (0, 0, 10 * 64)
    assert (debug.gpus_total, debug.gpus_allocated) == (8, 4)


def test_sinfo_22_05_unavailable_nodes_with_reasons() -> None:
    snap = exp.parse_sinfo(fixture("sinfo_22.05.txt"))
    assert snap.unavailable == {
        "cpu-0030": ("drained", ""),  # reason "none" -> empty
        "cpu-0010": ("drained", "disk: /scratch full | ticket 42"),
        "gpu-0020": ("down", "EC2 capacity: InsufficientInstanceCapacity"),
        "gpu-0021": ("fail", "health check failed: nvidia-smi ERR!"),
        # In two partitions, listed once.
        "st-gpu-1": ("down", "kernel update : reboot issued"),
        "st-gpu-2": ("draining", "xid 79: GPU fell off the bus (ticket OPS-1234)"),
    }


def test_sinfo_22_05_invalid_registration_is_drained() -> None:
    snap = exp.parse_sinfo(fixture("sinfo_22.05_invalid_reg.txt"))
    state, reason = snap.unavailable["st-gpu-1"]
    assert state == "drained"
    assert reason.startswith("gres/gpu count reported lower than configured (0 < 8), Low socket")


def test_sinfo_24_synthesized_cloud_power_states_and_flags() -> None:
    snap = exp.parse_sinfo(fixture("sinfo_24.11_synthesized.txt"))
    assert nonzero(snap.partitions["p5"]) == {
        "allocated": 1,
        "mixed": 2,  # mix and mix@ (reboot requested)
        "powering_up": 2,  # alloc# and mix#
        "powered_down": 1,  # idle~
        "powering_down": 2,  # idle% and idle! (power down pending)
        "idle": 2,  # idle* (not responding) and planned
        "draining": 1,
        "down": 1,
        "fail": 1,  # failing (allocated+fail)
        "unknown": 1,  # future
    }
    assert nonzero(snap.partitions["g6"]) == {"mixed": 1, "completing": 1, "idle": 1}
    assert nonzero(snap.partitions["cpu"]) == {"maintenance": 1, "reserved": 1, "unknown": 1}
    assert nonzero(snap.partitions["debug"]) == {"unknown": 1}
    p5, g6 = snap.partitions["p5"], snap.partitions["g6"]
    assert (p5.gpus_total, p5.gpus_allocated) == (14 * 8, 8 + 3 + 8 + 2 + 1 + 4 + 8)
    assert (p5.cpus_total, p5.cpus_allocated) == (14 * 192, 192 + 96 + 192 + 64 + 8 + 96 + 192)
    # Two GPU types on one node, untyped gpu:4, shard GRES never counted as GPUs.
    assert (g6.gpus_total, g6.gpus_allocated) == (4 + 4 + 4, 2)
    assert snap.partitions["cpu"].gpus_total == 0
    assert snap.unavailable == {
        "p5-dy-p5-8": (
            "draining",
            "Scheduler health check failed: DCGM diag level 1 | xid=79 at 2025-01-02T03:04:05",
        ),
        "p5-dy-p5-9": ("down", "(Code:InsufficientInstanceCapacity)Failure when resuming nodes"),
        "p5-dy-p5-10": ("fail", "ECC: uncorrectable errors on GPU 3"),
    }


def test_sinfo_skips_short_lines_and_caps_reasons() -> None:
    long_reason = "x" * 500
    text = (
        f"broken line without fields\nn1|p|idle+drain|drain|0/0/4/4|(null)|(null)|{long_reason}|\n"
    )
    snap = exp.parse_sinfo(text)
    assert snap.bad_lines == 1
    assert snap.unavailable["n1"] == ("drained", "x" * exp.REASON_MAX)


@pytest.mark.parametrize(
    ("complete", "compact", "state"),
    [
        ("idle+cloud+powered_down", "idle~", "powered_down"),
        ("allocated+cloud+powering_up", "alloc#", "powering_up"),
        ("mixed+cloud+powering_up", "mix#", "powering_up"),
        ("idle+cloud+powering_down", "idle%", "powering_down"),
        ("idle+cloud+power_down+not_responding", "idle!", "powering_down"),
        ("mixed+reboot_requested", "mix@", "mixed"),
        ("idle+not_responding", "idle*", "idle"),
        ("idle+cloud+drain+powered_down", "drain~", "drained"),
        ("allocated+drain", "drng", "draining"),
        ("idle+completing+drain", "drng", "draining"),
        ("down+cloud+powered_down", "down~", "down"),
        ("down+drain+reboot_issued", "boot^", "down"),
        ("idle+cloud+fail+powered_down", "fail", "fail"),
        ("allocated+fail", "failg", "fail"),
        ("idle+cloud+maintenance+powered_down+reserved", "maint", "maintenance"),
        ("idle+cloud+powered_down+reserved", "idle~", "powered_down"),
        ("idle+reserved", "resv", "reserved"),
        ("idle+completing+not_responding", "comp*", "completing"),
        ("completing", "comp", "completing"),
        ("allocated", "alloc", "allocated"),
        ("mixed", "mix", "mixed"),
        ("idle", "idle", "idle"),
        ("future+cloud", "futr", "unknown"),
        ("unknown", "unk", "unknown"),
        # Without StateComplete (older Slurm): the compact state and its suffixes.
        ("", "idle~", "powered_down"),
        ("", "alloc#", "powering_up"),
        ("", "mix%", "powering_down"),
        ("", "idle!", "powering_down"),
        ("", "drain~", "drained"),
        ("", "drng", "draining"),
        ("", "down*", "down"),
        ("", "maint", "maintenance"),
        ("", "resv", "reserved"),
        ("", "mix@", "mixed"),
        ("", "idle*", "idle"),
    ],
)
def test_primary_state(complete: str, compact: str, state: str) -> None:
    assert exp.primary_state(complete, compact) == state
    assert state in exp.NODE_STATES


@pytest.mark.parametrize(
    ("gres", "gpus"),
    [
        ("gpu:h100:8(S:0-1)", 8),
        ("gpu:8", 8),
        ("gpu:h100:8(IDX:0-7)", 8),
        ("gpu:h100:3(IDX:0,2,5)", 3),
        ("gpu:h100:0(IDX:N/A)", 0),
        ("gpu:0", 0),
        ("gpu", 1),
        ("gpu:h100", 1),
        ("(null)", 0),
        ("", 0),
        ("gpu:l4:4(S:0),gpu:l4:0(S:1)", 4),
        ("gpu:a100:2(S:0),gpu:h100:4(S:1),nic:1", 6),
        ("gpu:l4:4(S:0),shard:l4:16(S:0)", 4),
        ("shard:l4:0(0/4,0/4,0/4,0/4)", 0),
        ("mps:100K", 0),
    ],
)
def test_gres_gpus(gres: str, gpus: int) -> None:
    assert exp.gres_gpus(gres) == gpus


@pytest.mark.parametrize(
    ("tres", "gpus"),
    [
        ("gres:gpu:h100:2", 2),
        ("gres:gpu:8", 8),
        ("gres/gpu:h100:8", 8),
        ("gres/gpu:2", 2),
        ("gres/gpu", 1),
        ("gres/gpu:h100", 1),
        ("cpu:2,gres/gpu:1", 1),
        ("cpu:4", None),
        ("gres/shard:4", None),
        ("N/A", None),
        ("", None),
    ],
)
def test_tres_request_gpus(tres: str, gpus: int | None) -> None:
    assert exp.tres_request_gpus(tres) == gpus


@pytest.mark.parametrize(
    ("alloc", "gpus"),
    [
        ("cpu=384,mem=3800G,node=2,billing=384,gres/gpu=16,gres/gpu:h100=16", 16),
        ("cpu=8,node=1,gres/gpu:h100=2,gres/gpu:a100=1", 3),
        ("cpu=1,node=1,billing=1", None),
    ],
)
def test_tres_alloc_gpus(alloc: str, gpus: int | None) -> None:
    assert exp.tres_alloc_gpus(alloc) == gpus


@pytest.mark.parametrize(
    ("tasks", "count"),
    [
        ("N/A", 1),
        ("7", 1),
        ("1-100", 100),
        ("[1-100]", 100),
        ("1-20%2", 20),
        ("0-998:2", 500),
        ("1,3,5-7", 5),
        ("1-9:2,20-29%4", 15),
    ],
)
def test_array_tasks(tasks: str, count: int) -> None:
    assert exp.array_tasks(tasks) == count


def test_squeue_22_05_recorded() -> None:
    snap = exp.parse_squeue(fixture("squeue_22.05.txt"))
    assert snap.bad_lines == 0
    assert snap.jobs == {
        ("cpu", "pending", "carol"): 1,
        ("debug", "pending", "alice"): 1,
        ("debug", "pending", "carol"): 20,  # array 1-20%2, one line
        ("debug", "running", "bob"): 1,
        ("gpu", "configuring", "alice"): 12,  # array tasks on nodes powering up
        ("gpu", "pending", "alice"): 488,  # 0-998:2 (500) less the 12 started
        ("gpu", "pending", "bob"): 2,  # one held
        ("gpu,debug", "pending", "carol"): 1,  # pending in two partitions, no nodes yet
    }
    # 22.05 tres-alloc has no gres/gpu: the requests (per job, per node x nodes) count.
    assert snap.user_gpus == {("bob", "debug"): 4, ("alice", "gpu"): 12 * 4 * 8}


def test_squeue_24_synthesized() -> None:
    snap = exp.parse_squeue(fixture("squeue_24.11_synthesized.txt"))
    assert snap.jobs == {
        ("p5", "running", "alice"): 1,
        ("p5", "running", "bob"): 2,
        ("g6", "running", "carol"): 1,
        ("g6", "completing", "carol"): 1,
        ("g6", "pending", "carol"): 90,
        ("p5", "pending", "dave"): 15,
        ("p5", "configuring", "erin"): 1,
        ("p5", "suspended", "frank"): 1,
        ("p5,g6", "pending", "grace"): 1,
        ("cpu", "pending", "1234"): 1,
    }
    assert snap.user_gpus == {
        ("alice", "p5"): 16,  # tres-alloc gres/gpu=16 (not 16 + the typed 16)
        ("bob", "p5"): 4 + 2,  # per task x 4 tasks, per job
        ("carol", "g6"): 2 + 2,  # running and completing hold their GPUs
        ("erin", "p5"): 2,  # per socket, one socket per node
        ("frank", "p5"): 4,  # suspended jobs keep their GRES
    }
    # Pending jobs hold no GPUs.
    assert not any(user in ("dave", "grace") for user, _ in snap.user_gpus)


def test_sdiag_22_05_recorded() -> None:
    values = exp.parse_sdiag(fixture("sdiag_22.05.txt"))
    assert values == {
        "server_threads": 3,
        "agent_queue_size": 14,
        "agent_threads": 246,
        "main_last_cycle": 77832,
        "main_mean_cycle": 64966,
        "main_queue_length": 2,
        # The backfill section's own "Last cycle", not the main scheduler's.
        "backfill_last_cycle": 128,
        "backfill_mean_cycle": 117,
    }


def test_sdiag_garbage_gives_nothing() -> None:
    assert exp.parse_sdiag("no statistics here\n\x00\x01: ?\n") == {}
