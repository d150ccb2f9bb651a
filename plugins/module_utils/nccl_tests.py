"""Parse NVIDIA nccl-tests output: the text table (every format since 2.x) and the ``-J`` JSON file.

Text rows, newest first (nccl-tests ``src/util.cu``, ``doc/PERFORMANCE.md``):

* 2.13 and later: ``size count type redop root | time algbw busbw #wrong | time algbw busbw #wrong``
  (out-of-place, then in-place); ``#wrong`` reads ``N/A`` when data checks are off (``-c 0``);
  per-iteration columns (``i_min i_max i_p99 i_cv%``) and a timestamp may follow each half.
* 2.12 and older: no ``root`` column, and a float ``error`` instead of ``#wrong``.

Numbers are printed with a fixed width, so large times lose their decimals (``13552``) and very
large ones switch to exponent notation (``1.2e+05``). Lines may carry a launcher prefix
(``0: `` from ``srun -l``, ``[1,0]<stdout>:`` from Open MPI's ``--tag-output``) and NCCL's own
``NCCL INFO`` lines are interleaved. The footer gives ``# Out of bounds values : N OK|FAILED``
and ``# Avg bus bandwidth : X`` (a mean over every size: acceptance uses the large sizes).

Bus bandwidth is algorithm bandwidth times a factor that depends on the collective and the rank
count (``busbw_factor``); ``busbw_mismatches`` recomputes it as a sanity check on what was
parsed, and ``infer_ranks`` recovers the rank count from the two columns when the output does
not list the ranks.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

COLLECTIVES = (
    "all_reduce",
    "all_gather",
    "reduce_scatter",
    "alltoall",
    "sendrecv",
    "broadcast",
    "reduce",
    "gather",
    "scatter",
    "hypercube",
)

# srun -l ("0: ", " 12: "), Open MPI --tag-output ("[1,0]<stdout>:"), both stacked.
_PREFIX = re.compile(r"^(?:\s*\d+:\s?|\[\d+,\d+\]<std(?:out|err)>:\s?)+")
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_VALUE = rf"(?:{_NUMBER}|N/A|nan|-nan|inf)"
_ROW = re.compile(
    rf"^\s*(?P<size>\d+)\s+(?P<count>\d+)\s+(?P<type>[a-z_0-9]+)\s+(?P<redop>[a-z_0-9]+)"
    rf"(?P<rest>(?:\s+{_VALUE})+)\s*(?P<stamp>\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d)?\s*$"
)
_HEADER_ROOT = re.compile(r"^#\s+size\s+count\s+type\s+redop\s+root\b")
_HEADER_LEGACY = re.compile(r"^#\s+size\s+count\s+type\s+redop\s+time\b")
_HEADER_ANY = re.compile(r"^#\s+size\s+count\s+type\b")
_PER_ITER = re.compile(r"\bi_min\b")
_VERSION = re.compile(
    r"^# nccl-tests version (?P<tests>\S+) nccl-headers=(?P<headers>\d+)"
    r" nccl-library=(?P<library>\d+)"
)
_STARTING = re.compile(r"^# Collective test starting: (?P<program>\S+)")
_RANK = re.compile(
    r"^#\s+Rank\s+(?P<rank>\d+)\s+(?:Group\s+(?P<group>\d+)\s+)?Pid\s+(?P<pid>\d+)\s+on\s+(?P<host>\S+)"
    r"\s+device\s+(?P<device>\d+)\s+\[(?P<bus>[^\]]*)\]\s*(?P<name>.*?)\s*$"
)
_OOB = re.compile(r"^#\s*Out of bounds values\s*:\s*(?P<count>\d+)\s*(?P<verdict>OK|FAILED)?")
_AVG = re.compile(
    rf"^#\s*Avg bus bandwidth\s*:\s*(?P<value>{_NUMBER}|nan|-nan)\s*(?P<verdict>OK|FAILED)?"
)
_FAILURE = re.compile(r"Test (?:NCCL |CUDA |MPI |NCCL_TESTS )?failure|Test .*failure\b")
_WARN = re.compile(r"NCCL WARN (?P<text>.*)$")
_PROVIDER = re.compile(
    r"Selected [Pp]rovider is (?P<provider>[\w;-]+?)(?:, fabric is (?P<fabric>[\w-]+))?"
    r"\s*\(found (?P<nics>\d+) nics?\)"
)
_NCCL_VERSION = re.compile(
    r"NCCL INFO NCCL version (?P<version>\d+\.\d+\.\d+)(?:\+cuda(?P<cuda>[\d.]+))?"
)
_OFI_VERSION = re.compile(r"NET/OFI (?:Initializing|Using) aws-ofi-nccl (?P<version>v?[\d.]+\S*)")
_NET = re.compile(r"NCCL INFO Using network (?P<net>.+?)\s*$")


class ParseError(ValueError):
    """The text is not nccl-tests output (no result table) or the JSON has the wrong shape."""


@dataclass
class Measurement:
    """One half of a row: out-of-place or in-place. ``None`` stands for ``N/A``."""

    time_us: float | None
    algbw: float | None
    busbw: float | None
    wrong: float | None = None
    error: float | None = None  # 2.12 and older: the largest numeric error, not a count


@dataclass
class Row:
    size: int
    count: int
    type: str
    redop: str
    root: int | None
    out_of_place: Measurement | None
    in_place: Measurement | None

    def best_busbw(self) -> float | None:
        values = [m.busbw for m in (self.out_of_place, self.in_place) if m and m.busbw is not None]
        return max(values) if values else None

    def wrong(self) -> float:
        """Wrong elements in either half (0 when the run had data checks off)."""
        return sum(m.wrong or 0 for m in (self.out_of_place, self.in_place) if m)


@dataclass
class Result:
    collective: str | None = None
    format: str | None = None  # "2.13+" | "legacy" | "json"
    tests_version: str | None = None
    nccl_version: str | None = None
    nccl_library_code: int | None = None
    cuda_version: str | None = None
    ofi_version: str | None = None
    network: str | None = None
    ranks: list[dict[str, Any]] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    avg_busbw: float | None = None
    avg_busbw_verdict: str | None = None
    out_of_bounds: int | None = None
    providers: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    data_checked: bool | None = None

    @property
    def nranks(self) -> int | None:
        return len({r["rank"] for r in self.ranks}) or None

    @property
    def hosts(self) -> list[str]:
        return sorted({r["host"] for r in self.ranks})

    def total_wrong(self) -> float:
        return sum(row.wrong() for row in self.rows)

    def peak_busbw(self, min_size: int = 0) -> float | None:
        values = [
            bw for row in self.rows if row.size >= min_size and (bw := row.best_busbw()) is not None
        ]
        return max(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["nranks"] = self.nranks
        data["hosts"] = self.hosts
        return data


def strip_prefix(line: str) -> str:
    """A line without its launcher prefix (``srun -l``, Open MPI ``--tag-output``)."""
    return _PREFIX.sub("", line, count=1)


def _number(text: str) -> float | None:
    if text in ("N/A",):
        return None
    value = float(text)
    return None if math.isnan(value) else value


def busbw_factor(collective: str | None, nranks: int) -> float:
    """nccl-tests' bus bandwidth factor for a collective over ``nranks`` ranks."""
    name = normalise_collective(collective)
    if nranks < 1:
        raise ValueError(f"rank count must be positive, got {nranks}")
    if name == "all_reduce":
        return 2 * (nranks - 1) / nranks
    if name in ("all_gather", "reduce_scatter", "alltoall", "gather", "scatter"):
        return (nranks - 1) / nranks
    if name in ("sendrecv", "broadcast", "reduce", "hypercube"):
        return 1.0
    raise ValueError(f"unknown collective {collective!r}; expected one of {', '.join(COLLECTIVES)}")


def normalise_collective(name: str | None) -> str | None:
    """``all_reduce_perf`` / ``./build/all_reduce_perf_mpi`` / ``allreduce`` -> ``all_reduce``."""
    if not name:
        return None
    base = name.rsplit("/", 1)[-1]
    base = re.sub(r"(_perf)?(_mpi)?$", "", base)
    aliases = {
        "allreduce": "all_reduce",
        "allgather": "all_gather",
        "reducescatter": "reduce_scatter",
    }
    return aliases.get(base, base)


def _halves(
    values: list[str], legacy: bool, per_iter: bool
) -> tuple[Measurement | None, Measurement | None]:
    step = 4 + (4 if per_iter else 0)
    numbers = [_number(v) for v in values]
    halves: list[Measurement | None] = []
    for start in (0, step):
        chunk = numbers[start : start + 4]
        raw = values[start : start + 4]
        if len(chunk) < 4:
            halves.append(None)
            continue
        if legacy:
            halves.append(Measurement(chunk[0], chunk[1], chunk[2], wrong=None, error=chunk[3]))
        else:
            halves.append(
                Measurement(
                    chunk[0], chunk[1], chunk[2], wrong=None if raw[3] == "N/A" else chunk[3]
                )
            )
    return halves[0], halves[1]


def parse_text(text: str, collective: str | None = None) -> Result:
    """Parse nccl-tests stdout (any launcher, NCCL INFO lines interleaved)."""
    result = Result(collective=normalise_collective(collective))
    legacy: bool | None = None
    per_iter = False
    seen_table = False
    for raw_line in text.splitlines():
        line = strip_prefix(raw_line).rstrip()
        if not line:
            continue
        if match := _VERSION.match(line):
            result.tests_version = match["tests"]
            result.nccl_library_code = int(match["library"])
            continue
        if match := _STARTING.match(line):
            result.collective = result.collective or normalise_collective(match["program"])
            continue
        if match := _RANK.match(line):
            rank = int(match["rank"])
            if rank not in {r["rank"] for r in result.ranks}:
                result.ranks.append(
                    {
                        "rank": rank,
                        "host": match["host"],
                        "device": int(match["device"]),
                        "bus_id": match["bus"],
                        "name": match["name"],
                    }
                )
            continue
        if _HEADER_ANY.match(line):
            seen_table = True
            if _HEADER_ROOT.match(line):
                legacy = False
            elif _HEADER_LEGACY.match(line):
                legacy = True
            per_iter = bool(_PER_ITER.search(line))
            if "#wrong" in line:
                legacy = False if legacy is None else legacy
            continue
        if match := _OOB.match(line):
            result.out_of_bounds = int(match["count"])
            continue
        if match := _AVG.match(line):
            result.avg_busbw = _number(match["value"])
            result.avg_busbw_verdict = match["verdict"]
            continue
        if match := _PROVIDER.search(line):
            entry = {
                "provider": match["provider"],
                "fabric": match["fabric"],
                "nics": int(match["nics"]),
            }
            if entry not in result.providers:
                result.providers.append(entry)
            continue
        if match := _NCCL_VERSION.search(line):
            result.nccl_version = match["version"]
            result.cuda_version = match["cuda"] or result.cuda_version
            continue
        if match := _OFI_VERSION.search(line):
            result.ofi_version = match["version"].lstrip("v")
            continue
        if match := _NET.search(line):
            result.network = match["net"]
            continue
        if match := _WARN.search(line):
            if len(result.warnings) < 50:
                result.warnings.append(match["text"].strip())
            continue
        if line.startswith("#"):
            continue
        if match := _ROW.match(line):
            row = _row(match, legacy, per_iter)
            if row is not None:
                seen_table = True
                result.rows.append(row)
            continue
        if _FAILURE.search(line):
            result.failures.append(line.strip())
    if not seen_table and not result.failures:
        raise ParseError("no nccl-tests result table found (is this nccl-tests output?)")
    result.format = "legacy" if legacy else "2.13+"
    if result.rows:
        checked = [
            m.wrong is not None for r in result.rows for m in (r.out_of_place, r.in_place) if m
        ]
        result.data_checked = all(checked) if not legacy else None
    return result


def _row(match: re.Match[str], legacy: bool | None, per_iter: bool) -> Row | None:
    values = match["rest"].split()
    if legacy is None:
        # No header seen: 2.13+ rows have a root column, so 9 (or 17 with per-iteration
        # columns) values; legacy rows have 8.
        legacy = len(values) % 4 == 0
    root: int | None = None
    if not legacy:
        if not values:
            return None
        try:
            root = int(values[0])
        except ValueError:
            return None
        values = values[1:]
    if len(values) < 4:
        return None
    out_of_place, in_place = _halves(values, legacy, per_iter)
    return Row(
        size=int(match["size"]),
        count=int(match["count"]),
        type=match["type"],
        redop=match["redop"],
        root=root,
        out_of_place=out_of_place,
        in_place=in_place,
    )


def parse_json(document: str | dict[str, Any], collective: str | None = None) -> Result:
    """Parse the file ``-J <file>`` writes (nccl-tests 2.17.3 and later)."""
    data = json.loads(document) if isinstance(document, str) else document
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise ParseError("not an nccl-tests JSON report: no 'results' list")
    result = Result(collective=normalise_collective(collective), format="json")
    args = data.get("args") or []
    if args and not result.collective:
        result.collective = normalise_collective(str(args[0]))
    if isinstance(data.get("nccl_version"), int):
        result.nccl_library_code = data["nccl_version"]
        result.nccl_version = version_from_code(data["nccl_version"])
    devices = (data.get("config") or {}).get("devices") or data.get("devices") or []
    for device in devices:
        if isinstance(device, dict) and "rank" in device:
            result.ranks.append(
                {
                    "rank": int(device["rank"]),
                    "host": str(device.get("hostname", "")),
                    "device": int(device.get("device", 0)),
                    "bus_id": str(device.get("device_hex", "")),
                    "name": str(device.get("device_info", "")),
                }
            )
    for entry in data["results"]:
        if not isinstance(entry, dict):
            continue
        root = entry.get("root")
        try:
            root_value = int(str(root).strip()) if root is not None else None
        except ValueError:
            root_value = None
        result.rows.append(
            Row(
                size=int(entry["size"]),
                count=int(entry.get("count", 0)),
                type=str(entry.get("type", "")),
                redop=str(entry.get("redop", "")).strip(),
                root=root_value,
                out_of_place=_json_half(entry.get("out_of_place")),
                in_place=_json_half(entry.get("in_place")),
            )
        )
    oob = data.get("out_of_bounds")
    if isinstance(oob, dict):
        result.out_of_bounds = int(oob.get("count", 0))
    avg = data.get("average_bus_bandwidth")
    if isinstance(avg, dict):
        result.avg_busbw = _json_number(avg.get("bandwidth"))
    for error in data.get("errors") or []:
        if error:
            result.failures.append(str(error))
    checked = [m.wrong is not None for r in result.rows for m in (r.out_of_place, r.in_place) if m]
    result.data_checked = all(checked) if checked else None
    return result


def _json_number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _json_half(half: Any) -> Measurement | None:
    if not isinstance(half, dict):
        return None
    return Measurement(
        time_us=_json_number(half.get("time", half.get("cpu_time"))),
        algbw=_json_number(half.get("alg_bw")),
        busbw=_json_number(half.get("bus_bw")),
        wrong=_json_number(half.get("nwrong")),
    )


def version_from_code(code: int) -> str:
    """NCCL_VERSION_CODE -> "2.27.7" (codes since 2.9 are major*10000 + minor*100 + patch)."""
    if code >= 10000:
        return f"{code // 10000}.{code % 10000 // 100}.{code % 100}"
    return f"{code // 1000}.{code % 1000 // 100}.{code % 100}"


def _tolerance(value: float) -> float:
    """Half a unit of the last digit nccl-tests prints for a 6-wide bandwidth, plus 1 %."""
    digits = len(str(int(abs(value)))) if abs(value) >= 1 else 1
    last = 0.01 if digits < 4 else 0.1 if digits < 5 else 1.0
    return last / 2 + 0.01 * abs(value) + 0.005


def busbw_mismatches(result: Result, nranks: int | None = None) -> list[dict[str, Any]]:
    """Rows whose printed busbw is not algbw x factor(collective, ranks)."""
    ranks = nranks or result.nranks or infer_ranks(result)
    if not ranks or not result.collective:
        return []
    try:
        factor = busbw_factor(result.collective, ranks)
    except ValueError:
        return []
    bad = []
    for row in result.rows:
        for label, half in (("out_of_place", row.out_of_place), ("in_place", row.in_place)):
            if not half or half.algbw is None or half.busbw is None:
                continue
            expected = half.algbw * factor
            if abs(half.busbw - expected) > _tolerance(expected) + _tolerance(half.busbw):
                bad.append(
                    {"size": row.size, "half": label, "busbw": half.busbw, "expected": expected}
                )
    return bad


def infer_ranks(result: Result, max_ranks: int = 4096) -> int | None:
    """The rank count that explains busbw/algbw on the largest rows (all_reduce and friends)."""
    try:
        # A factor that does not depend on the rank count says nothing about it.
        if not result.collective or busbw_factor(result.collective, 3) == 1.0:
            return None
    except ValueError:
        return None
    rows = sorted(
        (r for r in result.rows if r.out_of_place and (r.out_of_place.algbw or 0) >= 1.0),
        key=lambda r: r.size,
    )[-4:]
    if not rows:
        return None
    ratios = [r.out_of_place.busbw / r.out_of_place.algbw for r in rows]  # type: ignore[union-attr,operator]
    ratio = sum(ratios) / len(ratios)
    best = min(
        range(2, max_ranks + 1), key=lambda n: abs(busbw_factor(result.collective, n) - ratio)
    )
    if abs(busbw_factor(result.collective, best) - ratio) > 0.02 * ratio:
        return None
    return best


def parse(text: str, collective: str | None = None) -> Result:
    """Text or JSON, whichever ``text`` is."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            return parse_json(stripped, collective)
        except json.JSONDecodeError:
            pass
    return parse_text(text, collective)
