"""plugins/module_utils/nccl_tests.py on public sample outputs and generated edge cases.

Fixtures and where they come from: tests/unit/fixtures/nccl_tests/README.md. Generated rows use
the column widths and number formatting of nccl-tests' ``src/util.cu`` (``getFloatStr``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from plugins.module_utils import nccl_tests as nt

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "nccl_tests"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def float_str(value: float, width: int) -> str:
    """nccl-tests' getFloatStr: fewer decimals as the value grows, exponent past the width."""
    power = 0
    limit = 1
    while value >= limit:
        power += 1
        limit *= 10
    if power < width - 2:
        return f"{value:{width}.2f}"
    if power < width - 1:
        return f"{value:{width}.1f}"
    if power < width + 1:
        return f"{value:{width}.0f}"
    return f"{value:{width}.1e}"


def row(
    size: int,
    time_us: float,
    nranks: int,
    collective: str = "all_reduce",
    wrong: int | None = 0,
    redop: str = "sum",
    per_iter: bool = False,
    stamp: str | None = None,
) -> str:
    """One 2.13+ result row as nccl-tests prints it."""
    algbw = size / time_us / 1e3
    busbw = algbw * nt.busbw_factor(collective, nranks)
    half = f"  {float_str(time_us, 7)}  {float_str(algbw, 6)}  {float_str(busbw, 6)}"
    half += "    N/A" if wrong is None else f"  {wrong:6g}"
    if per_iter:
        half += "  " + "  ".join(
            float_str(v, 7) for v in (time_us * 0.9, time_us * 1.2, time_us * 1.1, 3.5)
        )
    line = f"{size:12d}  {size // 4:12d}  {'float':>8s}  {redop:>6s}  {-1:6d}{half}{half}"
    if stamp:
        line += f"{stamp:>21s}"
    return line


def header(per_iter: bool = False) -> str:
    columns = "size count type redop root time algbw busbw #wrong"
    if per_iter:
        columns += " i_min i_max i_p99 i_cv%"
    return f"# {columns} {columns.split(' ', 5)[5]}"


# -- public samples ------------------------------------------------------------------------------


def test_awsome_p4de_two_nodes_with_srun_prefix() -> None:
    result = nt.parse_text(fixture("awsome_p4de_2node_all_reduce.txt"), "all_reduce_perf")
    assert result.format == "2.13+"
    assert result.collective == "all_reduce"
    assert len(result.rows) == 15
    last = result.rows[-1]
    assert (last.size, last.count, last.type, last.redop, last.root) == (
        2147483648,
        536870912,
        "float",
        "sum",
        -1,
    )
    assert last.out_of_place == nt.Measurement(51406.0, 41.78, 78.33, wrong=0.0)
    assert last.in_place.busbw == 78.33
    # No rank lines in the excerpt: 16 ranks (2 x 8 GPUs) explain busbw/algbw = 2*15/16.
    assert nt.infer_ranks(result) == 16
    assert nt.busbw_mismatches(result) == []
    assert result.total_wrong() == 0
    assert result.peak_busbw(min_size=1 << 30) == 78.33
    assert result.data_checked is True


def test_awsome_p5_two_nodes_peak_and_exponent_free_large_times() -> None:
    result = nt.parse_text(fixture("awsome_p5_2node_all_reduce.txt"), "all_reduce")
    assert result.rows[-1].out_of_place.time_us == 66132.0
    assert result.peak_busbw() == 487.26
    assert nt.infer_ranks(result) == 16
    assert nt.busbw_mismatches(result) == []


def test_current_format_with_open_mpi_prefix_and_nccl_info_lines() -> None:
    result = nt.parse(fixture("b200_2node_ring_tagged.txt"))
    assert result.tests_version == "2.16.9"
    assert result.nccl_library_code == 22707
    assert result.nccl_version == "2.27.7" and result.cuda_version == "12.9"
    assert result.ofi_version == "1.16.3"
    assert result.network == "Libfabric"
    assert result.collective == "all_reduce"
    assert result.nranks == 16
    assert result.hosts == ["p6-dy-b200-1", "p6-dy-b200-2"]
    assert result.ranks[15] == {
        "rank": 15,
        "host": "p6-dy-b200-2",
        "device": 7,
        "bus_id": "0000:0e:00",
        "name": "NVIDIA B200",
    }
    assert result.providers == [{"provider": "efa", "fabric": "efa-direct", "nics": 8}]
    assert len(result.rows) == 8  # the interleaved "Channel" INFO line is not a row
    assert result.out_of_bounds == 0
    assert result.avg_busbw == pytest.approx(188.564)
    assert result.failures == []
    assert nt.busbw_mismatches(result) == []
    assert result.peak_busbw() == 379.39


def test_legacy_format_has_no_root_and_an_error_column() -> None:
    result = nt.parse_text(fixture("legacy_2_11_single_node.txt"), "all_reduce_perf")
    assert result.format == "legacy"
    assert result.nranks == 8 and result.hosts == ["ip-172-31-9-10"]
    first, *_, last = result.rows
    assert first.root is None and first.out_of_place.error == 0.0
    assert last.out_of_place == nt.Measurement(8140.2, 131.91, 230.84, wrong=None, error=5e-07)
    assert result.data_checked is None  # legacy output has no wrong-element count
    assert nt.busbw_mismatches(result) == []


def test_a_failed_run_reports_its_failure_lines_and_the_wrong_provider() -> None:
    result = nt.parse_text(fixture("failure_unhandled_system_error.txt"))
    assert result.rows == []
    assert any("Test NCCL failure common.cu:1008" in line for line in result.failures)
    assert result.providers == [{"provider": "tcp", "fabric": None, "nics": 1}]
    assert result.warnings == ["NET/OFI Unable to find a suitable provider"]


def test_json_report() -> None:
    result = nt.parse(fixture("json_v2_all_reduce.json"))
    assert result.format == "json"
    assert result.collective == "all_reduce"
    assert result.nccl_version == "2.27.7"
    assert result.nranks == 8 and result.hosts == ["p5en-st-h200-1"]
    assert [r.size for r in result.rows] == [1048576, 134217728, 1073741824]
    assert result.rows[0].root == -1
    assert result.rows[-1].out_of_place.busbw == pytest.approx(206.41 * 1.75, abs=0.01)
    assert result.out_of_bounds == 0 and result.avg_busbw == 190.5
    assert result.data_checked is True
    assert nt.busbw_mismatches(result) == []


# -- generated edge cases ------------------------------------------------------------------------


def test_data_checks_off_read_as_not_applicable() -> None:
    text = "\n".join([header(), row(1 << 30, 5000.0, 16, wrong=None)])
    result = nt.parse_text(text, "all_reduce")
    assert result.rows[0].out_of_place.wrong is None
    assert result.data_checked is False
    assert result.total_wrong() == 0


def test_wrong_elements_and_a_failed_out_of_bounds_footer() -> None:
    text = "\n".join(
        [
            header(),
            row(1 << 20, 90.0, 8, wrong=0),
            row(1 << 30, 5000.0, 8, wrong=1234),
            "# Out of bounds values : 1 FAILED",
            "# Avg bus bandwidth    : 101.3 FAILED",
        ]
    )
    result = nt.parse_text(text, "all_reduce")
    assert result.total_wrong() == 2468  # both halves
    assert result.out_of_bounds == 1
    assert result.avg_busbw_verdict == "FAILED"


def test_exponent_notation_for_huge_times() -> None:
    line = row(1 << 34, 2.5e7, 16)
    assert "e+07" in line
    result = nt.parse_text("\n".join([header(), line]), "all_reduce")
    assert result.rows[0].out_of_place.time_us == pytest.approx(2.5e7, rel=0.05)


def test_per_iteration_columns_and_timestamps() -> None:
    text = "\n".join(
        [
            header(per_iter=True),
            row(1 << 26, 700.0, 16, per_iter=True, stamp="2026-11-20 10:01:02"),
            row(1 << 28, 1800.0, 16, per_iter=True, stamp="2026-11-20 10:01:03"),
        ]
    )
    result = nt.parse_text(text, "all_reduce")
    assert len(result.rows) == 2
    second = result.rows[1]
    assert second.out_of_place.time_us == 1800.0
    assert second.in_place.time_us == 1800.0  # not an i_* column
    assert nt.busbw_mismatches(result) == []


@pytest.mark.parametrize(
    ("collective", "nranks", "factor"),
    [
        ("all_reduce", 16, 2 * 15 / 16),
        ("all_gather", 8, 7 / 8),
        ("reduce_scatter", 32, 31 / 32),
        ("alltoall", 16, 15 / 16),
        ("sendrecv", 16, 1.0),
        ("broadcast", 4, 1.0),
    ],
)
def test_bus_factor_and_recomputed_busbw(collective: str, nranks: int, factor: float) -> None:
    assert nt.busbw_factor(collective, nranks) == pytest.approx(factor)
    redop = "sum" if collective in ("all_reduce", "reduce_scatter") else "none"
    text = "\n".join(
        [header()]
        + [row(s, s / 150e3, nranks, collective, redop=redop) for s in (1 << 20, 1 << 26, 1 << 30)]
    )
    result = nt.parse_text(text, f"{collective}_perf")
    assert result.collective == collective
    assert nt.busbw_mismatches(result, nranks) == []
    if factor != 1.0:
        assert nt.infer_ranks(result) == nranks


def test_a_busbw_that_does_not_match_algbw_is_reported() -> None:
    good = row(1 << 30, 5000.0, 16)
    fields = good.split()
    fields[7] = f"{float(fields[7]) * 1.3:.2f}"  # out-of-place busbw inflated by 30 %
    result = nt.parse_text("\n".join([header(), "  ".join(fields)]), "all_reduce")
    bad = nt.busbw_mismatches(result, 16)
    assert [(b["size"], b["half"]) for b in bad] == [(1 << 30, "out_of_place")]


def test_rows_without_a_header_are_told_apart_by_their_columns() -> None:
    current = nt.parse_text(row(1 << 20, 100.0, 8), "all_reduce")
    assert current.rows[0].root == -1 and current.format == "2.13+"
    legacy_line = (
        "     1048576        262144     float     sum"
        "    38.61   27.16   47.53  5e-07    38.02   27.58   48.26  5e-07"
    )
    legacy = nt.parse_text(legacy_line, "all_reduce")
    assert legacy.rows[0].root is None and legacy.rows[0].out_of_place.error == 5e-07


def test_text_that_is_not_nccl_tests_output_is_refused() -> None:
    with pytest.raises(nt.ParseError, match="no nccl-tests result table"):
        nt.parse_text("hello\nworld\n")
    with pytest.raises(nt.ParseError, match="no 'results' list"):
        nt.parse_json({"version": 2})


def test_odd_values_do_not_crash_the_parser() -> None:
    text = "\n".join(
        [
            header(),
            "     1048576        262144     float     sum      -1"
            "     nan    N/A    N/A    N/A     nan    N/A    N/A    N/A",
            "     garbage line that looks like nothing",
            "0:",
            "",
        ]
    )
    result = nt.parse_text(text, "all_reduce")
    assert result.rows[0].out_of_place == nt.Measurement(None, None, None, wrong=None)
    assert result.peak_busbw() is None


def test_json_with_missing_halves_and_nan() -> None:
    doc = {
        "results": [
            {
                "size": 8,
                "count": 2,
                "type": "float",
                "redop": "sum",
                "root": "-1",
                "out_of_place": None,
                "in_place": {"time": 10.0, "alg_bw": "nan", "bus_bw": 0.0, "nwrong": None},
            },
        ],
        "errors": ["unhandled cuda error"],
    }
    result = nt.parse_json(json.dumps(doc))
    assert result.rows[0].out_of_place is None
    assert result.rows[0].in_place.algbw is None
    assert result.failures == ["unhandled cuda error"]
    assert result.data_checked is False


def test_to_dict_is_json_serialisable() -> None:
    data = nt.parse(fixture("b200_2node_ring_tagged.txt")).to_dict()
    again = json.loads(json.dumps(data))
    assert again["nranks"] == 16 and again["rows"][0]["out_of_place"]["busbw"] == 22.24
    assert not any(isinstance(v, float) and math.isnan(v) for v in again.values())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("all_reduce_perf", "all_reduce"),
        ("/fsx/nccl/2.27.7/tests/alltoall_perf_mpi", "alltoall"),
        ("allgather", "all_gather"),
        (None, None),
    ],
)
def test_collective_names(name: str | None, expected: str | None) -> None:
    assert nt.normalise_collective(name) == expected


def test_version_codes() -> None:
    assert nt.version_from_code(22707) == "2.27.7"
    assert nt.version_from_code(21805) == "2.18.5"
    assert nt.version_from_code(2708) == "2.7.8"
