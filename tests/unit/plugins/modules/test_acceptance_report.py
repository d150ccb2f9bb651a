"""acceptance_report: the gates, the report files and the failure message, on fixture runs.

Runs are laid out as role ``acceptance`` leaves them (``<run_dir>/<name>/meta.json`` +
``output.txt``); outputs are the public sample lines and generated rows of the parser tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible_collections.xpu.parallelcluster.plugins.modules import acceptance_report

from tests.unit.plugins.module_utils.test_nccl_tests import fixture, header, row

from .conftest import RunModule

P6 = "p6-b200.48xlarge"


def add_run(run_dir: Path, name: str, output: str, **meta: object) -> None:
    folder = run_dir / name
    folder.mkdir(parents=True)
    (folder / "output.txt").write_text(output)
    (folder / "meta.json").write_text(json.dumps({"name": name, "exit_code": 0, **meta}))


def add_ring_run(run_dir: Path, peak_busbw: float, wrong: int = 0, **meta: object) -> None:
    """The p6-b200 2-node NCCL_ALGO=Ring all_reduce run most tests gate."""
    add_run(
        run_dir,
        "all_reduce-2n-ring",
        ring_output(peak_busbw, wrong=wrong),
        **{
            "collective": "all_reduce",
            "nodes": 2,
            "ranks": 16,
            "variant": "ring",
            "instance_type": P6,
            **meta,
        },
    )


def provider(nics: int) -> str:
    return (
        "node:1:2 [0] NCCL INFO NET/OFI Selected provider is efa, fabric is efa-direct"
        f" (found {nics} nics)"
    )


def ring_output(peak_busbw: float, nranks: int = 16, nics: int = 8, wrong: int = 0) -> str:
    """A ring all_reduce run whose largest message reaches ``peak_busbw``."""
    factor = 2 * (nranks - 1) / nranks
    sizes = (1 << 20, 1 << 28, 1 << 30, 1 << 32)
    rows = []
    for size in sizes:
        busbw = peak_busbw * (0.4 if size < (1 << 30) else 0.98 if size == 1 << 30 else 1.0)
        time_us = size / (busbw / factor) / 1e3
        rows.append(row(size, time_us, nranks, wrong=wrong if size == 1 << 30 else 0))
    return "\n".join([provider(nics), header(), *rows, "# Out of bounds values : 0 OK"])


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "20261128T101500Z"
    path.mkdir()
    return path


def args(run_dir: Path, **extra: object) -> dict:
    return {"run_dir": str(run_dir), "cluster_name": "ml1", "plots": False, **extra}


def gate(result: dict, run: str, name: str) -> dict:
    [found] = [g for g in result["gates"] if g["run"] == run and g["gate"] == name]
    return found


def test_a_healthy_ring_run_passes_every_gate_and_writes_the_report(
    run_module: RunModule, run_dir: Path, tmp_path: Path
) -> None:
    # p6-b200 2 nodes: expectation 0.75 x 400 GB/s = 300 GB/s.
    add_ring_run(run_dir, 340.0, versions={"nccl": "2.27.7"})
    result = run_module(
        acceptance_report.main,
        args(run_dir, plots=True, history_dir=str(tmp_path / "history")),
    )
    assert not result.failed, result.get("msg")
    assert result["passed"] is True and result["changed"] is True
    assert gate(result, "all_reduce-2n-ring", "bandwidth")["status"] == "pass"
    assert "340.0 GB/s >= 0.95 x 300.0" in gate(result, "all_reduce-2n-ring", "bandwidth")["detail"]
    assert gate(result, "all_reduce-2n-ring", "efa")["status"] == "pass"
    assert gate(result, "all_reduce-2n-ring", "regression")["status"] == "skip"
    report = json.loads(Path(result["report"]["json"]).read_text())
    assert report["passed"] is True and report["runs"][0]["peak_busbw"] == pytest.approx(
        340.0, rel=0.01
    )
    md = Path(result["report"]["markdown"]).read_text()
    assert "**PASSED**" in md and "| all_reduce-2n-ring | 2 | 16 | p6-b200.48xlarge | ring |" in md
    assert "nccl 2.27.7" in md
    pngs = [Path(p) for p in result["report"]["plots"]]
    assert {p.name for p in pngs} == {"busbw_all_reduce.png", "scaling.png"}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert Path(result["report"]["reference"]).is_file()


def test_bandwidth_shortfall_fails_naming_the_gate_and_the_gap(
    run_module: RunModule, run_dir: Path
) -> None:
    add_ring_run(run_dir, 200.0)
    result = run_module(acceptance_report.main, args(run_dir))
    assert result.failed
    assert "all_reduce-2n-ring: gate bandwidth failed" in result["msg"]
    assert "peak 200.0 GB/s < 285.0 GB/s (0.95 x 300.0): 85.0 GB/s (30%) short" in result["msg"]
    # The report is written before the failure.
    assert (run_dir / "report" / "report.json").is_file()


def test_wrong_elements_fail_correctness(run_module: RunModule, run_dir: Path) -> None:
    add_ring_run(run_dir, 340.0, wrong=12)
    result = run_module(acceptance_report.main, args(run_dir, fail_on_gate=False))
    assert not result.failed and result["passed"] is False
    assert "24 wrong elements" in gate(result, "all_reduce-2n-ring", "correctness")["detail"]


def test_efa_not_used_or_short_of_nics_fails(run_module: RunModule, run_dir: Path) -> None:
    add_run(
        run_dir,
        "few-nics",
        ring_output(340.0, nics=4),
        collective="all_reduce",
        nodes=2,
        ranks=16,
        variant="ring",
        instance_type=P6,
    )
    add_run(
        run_dir,
        "tcp",
        ring_output(340.0).replace("provider is efa, fabric is efa-direct", "provider is tcp"),
        collective="all_reduce",
        nodes=2,
        ranks=16,
        variant="ring",
        instance_type=P6,
    )
    result = run_module(acceptance_report.main, args(run_dir, fail_on_gate=False))
    assert (
        "efa found 4 nics, p6-b200.48xlarge has 8: 4 EFA interfaces unused"
        in gate(result, "few-nics", "efa")["detail"]
    )
    assert "providers seen: tcp (8 nics)" in gate(result, "tcp", "efa")["detail"]


def test_default_multi_node_runs_are_not_gated_on_bandwidth(
    run_module: RunModule, run_dir: Path
) -> None:
    # Tree / NVLS on 2 nodes exceeds the line rate: not comparable, reported only.
    add_run(
        run_dir,
        "all_reduce-2n",
        ring_output(480.0),
        collective="all_reduce",
        nodes=2,
        ranks=16,
        variant="default",
        instance_type=P6,
    )
    result = run_module(acceptance_report.main, args(run_dir))
    assert gate(result, "all_reduce-2n", "bandwidth")["status"] == "skip"
    assert result["passed"] is True


def test_an_expectation_above_the_physical_ceiling_is_refused(
    run_module: RunModule, run_dir: Path
) -> None:
    add_ring_run(run_dir, 340.0)
    result = run_module(
        acceptance_report.main,
        args(run_dir, expectations={P6: {"all_reduce": {"2": 800.0}}}),
    )
    assert result.failed
    assert "expectation 800.0 GB/s is above the physical ceiling 400.0 GB/s" in result["msg"]


def test_regression_against_the_previous_passing_report(
    run_module: RunModule, run_dir: Path, tmp_path: Path
) -> None:
    history = str(tmp_path / "history")
    add_ring_run(run_dir, 380.0)
    first = run_module(acceptance_report.main, args(run_dir, history_dir=history))
    assert first["passed"] is True
    second_dir = tmp_path / "second"
    add_run(
        second_dir,
        "all_reduce-2n-ring",
        ring_output(320.0),
        collective="all_reduce",
        nodes=2,
        ranks=16,
        variant="ring",
        instance_type=P6,
    )
    second = run_module(acceptance_report.main, args(second_dir, history_dir=history))
    assert second.failed
    assert (
        "gate regression failed - peak 320.00 GB/s is 15.8% below the previous 380.00"
        in second["msg"]
    )
    # A failing report does not become the reference.
    latest = json.loads((tmp_path / "history" / "ml1" / "latest.json").read_text())
    assert latest["runs"][0]["peak_busbw"] == pytest.approx(380.0, rel=0.01)


def test_a_cpu_mpi_run_is_gated_on_correctness_with_the_rest_skipped(
    run_module: RunModule, run_dir: Path
) -> None:
    output = "\n".join([header(), row(1 << 20, 2000.0, 2), row(1 << 24, 30000.0, 2)])
    add_run(
        run_dir,
        "mpi-allreduce-2n",
        output,
        benchmark="mpi",
        collective="all_reduce",
        nodes=2,
        ranks=2,
        instance_type="c6i.xlarge",
    )
    result = run_module(acceptance_report.main, args(run_dir))
    assert result["passed"] is True
    assert gate(result, "mpi-allreduce-2n", "correctness")["status"] == "pass"
    assert gate(result, "mpi-allreduce-2n", "efa")["detail"] == "no EFA on this instance type"
    assert (
        "no calibrated expectation for c6i.xlarge"
        in gate(result, "mpi-allreduce-2n", "bandwidth")["detail"]
    )


def test_a_failed_job_and_a_garbled_output(run_module: RunModule, run_dir: Path) -> None:
    add_run(
        run_dir,
        "crashed",
        fixture("failure_unhandled_system_error.txt"),
        collective="all_reduce",
        nodes=1,
        instance_type=P6,
        exit_code=7,
    )
    add_run(
        run_dir,
        "garbled",
        "segmentation fault\n",
        collective="all_reduce",
        nodes=1,
        instance_type=P6,
    )
    result = run_module(acceptance_report.main, args(run_dir, fail_on_gate=False))
    crashed = gate(result, "crashed", "correctness")["detail"]
    assert "the job exited 7" in crashed and "Test NCCL failure" in crashed
    assert "no nccl-tests result table" in gate(result, "garbled", "correctness")["detail"]


def test_check_mode_writes_nothing(run_module: RunModule, run_dir: Path) -> None:
    add_ring_run(run_dir, 340.0)
    result = run_module(acceptance_report.main, args(run_dir), check=True)
    assert result["passed"] is True and result["changed"] is False and result["report"] == {}
    assert not (run_dir / "report").exists()


def test_bad_input_is_refused(run_module: RunModule, tmp_path: Path) -> None:
    missing = run_module(acceptance_report.main, args(tmp_path / "nope"))
    assert "does not exist: run playbooks/validate.yml first" in missing["msg"]
    empty = run_module(acceptance_report.main, args(tmp_path))
    assert "no benchmark runs" in empty["msg"]
    bad = run_module(acceptance_report.main, args(tmp_path, bandwidth_fraction=0))
    assert "bandwidth_fraction must be in (0, 1.5]" in bad["msg"]
