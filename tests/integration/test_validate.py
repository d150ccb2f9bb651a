"""playbooks/validate.yml on the lab: MPI acceptance runs on the CPU queue through real Slurm.

Two runs (all_reduce and sendrecv, one rank on each of the two compute containers) go through
sbatch as the default user, write their results under the shared /fsx, come back to the
controller and are gated by module acceptance_report; the report lands on both sides.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from .conftest import LAB_VARS, LOGIN, STATE, TIMINGS, on_node, playbook

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def validated(lab_up) -> tuple[str, Path]:
    started = time.monotonic()
    proc = playbook("-e", LAB_VARS, "playbooks/validate.yml", timeout=900)
    TIMINGS["validate.yml on the lab CPU queue (2 MPI runs)"] = time.monotonic() - started
    match = re.search(r"Report: (\S+/report\.md)", proc.stdout)
    assert match, proc.stdout[-3000:]
    return proc.stdout, Path(match[1])


def test_runs_pass_their_gates_and_the_report_is_written(validated: tuple[str, Path]) -> None:
    out, markdown = validated
    assert "Acceptance passed: 2 runs" in out, out[-3000:]
    assert "cpu-all_reduce-2n | correctness | pass" in out
    assert "cpu-sendrecv-2n | efa | skip | no EFA on this instance type" in out
    report = json.loads((markdown.parent / "report.json").read_text())
    runs = {r["name"]: r for r in report["runs"]}
    assert set(runs) == {"cpu-all_reduce-2n", "cpu-sendrecv-2n"}
    for run in runs.values():
        meta = run["meta"]
        assert meta["exit_code"] == 0 and meta["nodes"] == 2 and meta["ranks"] == 2
        assert meta["nodelist"] == "cpu-st-c6i-[1-2]"
        assert meta["versions"]["mpi"].startswith("mpirun (Open MPI)")
        result = run["result"]
        # Both compute containers ran a rank, every size was checked and none was wrong.
        assert {r["host"] for r in result["ranks"]} == {"cpu-st-c6i-1", "cpu-st-c6i-2"}
        assert result["rows"] and all(row["out_of_place"]["wrong"] == 0 for row in result["rows"])
        assert run["peak_busbw"] > 0
    pngs = sorted(p.name for p in markdown.parent.glob("*.png"))
    assert pngs == ["busbw_all_reduce.png", "busbw_sendrecv.png", "scaling.png"]


def test_results_and_report_are_on_the_cluster(validated: tuple[str, Path]) -> None:
    _, markdown = validated
    run_id = markdown.parent.parent.name
    remote = f"/fsx/acceptance/xpu-lab/{run_id}"
    listing = on_node(LOGIN, "find", remote, "-name", "*.json", "-o", "-name", "*.md").stdout
    assert f"{remote}/cpu-all_reduce-2n/meta.json" in listing
    assert f"{remote}/report/report.md" in listing
    owner = on_node(
        LOGIN, "stat", "-c", "%U", f"{remote}/cpu-all_reduce-2n/output.txt"
    ).stdout.strip()
    assert owner == "ubuntu"  # jobs run as the default user, never root


def test_a_passing_report_becomes_the_clusters_reference(validated: tuple[str, Path]) -> None:
    # The next validation's regression gate compares against it.
    reference = STATE.parent / "acceptance-history" / "xpu-lab" / "latest.json"
    assert reference.is_file()
    assert json.loads(reference.read_text())["passed"] is True
