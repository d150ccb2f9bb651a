"""The instance catalog: internal consistency, the published facts, lookups and prices."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.xpu.parallelcluster.plugins.module_utils import catalog

TYPES = sorted(catalog.CATALOG)
GPU_TYPES = [n for n in TYPES if catalog.CATALOG[n].accelerator_kind == catalog.ACCEL_NVIDIA]
NEURON_TYPES = [n for n in TYPES if catalog.CATALOG[n].accelerator_kind == catalog.ACCEL_NEURON]
CPU_TYPES = [n for n in TYPES if catalog.CATALOG[n].accelerator_kind == catalog.ACCEL_NONE]

# The issue's minimum list.
REQUIRED = [
    "p6-b200.48xlarge",
    "p6-b300.48xlarge",
    "p6e-gb200.36xlarge",
    "p5en.48xlarge",
    "p5.48xlarge",
    "p5e.48xlarge",
    "p4d.24xlarge",
    "p4de.24xlarge",
    "g5.8xlarge",
    "g5.12xlarge",
    "g5.16xlarge",
    "g5.24xlarge",
    "g5.48xlarge",
    "g6.48xlarge",
    "g6e.48xlarge",
    "trn1.32xlarge",
    "trn1n.32xlarge",
    "trn2.48xlarge",
    "c5n.18xlarge",
    "c5n.9xlarge",
    "c6i.xlarge",
    "c7i.48xlarge",
    "hpc7a.96xlarge",
    "m5.2xlarge",
    "m6i.xlarge",
    "t3.medium",
]

# EFA interfaces per shared/REFERENCE.md (awsome-distributed-ai compute-test.md, Neuron docs).
REFERENCE_EFA = {
    "p4d.24xlarge": 4,
    "p4de.24xlarge": 4,
    "p5.48xlarge": 32,
    "p5e.48xlarge": 32,
    "p5en.48xlarge": 16,
    "p6-b200.48xlarge": 8,
    "p6-b300.48xlarge": 16,
    "p6e-gb200.36xlarge": 4,
    "trn1.32xlarge": 8,
    "trn1n.32xlarge": 16,
    "trn2.48xlarge": 16,
}

# CUDA compute capability per GPU model (NVIDIA's table).
CUDA_ARCH = {
    "A100": "sm_80",
    "A10G": "sm_86",
    "L4": "sm_89",
    "L40S": "sm_89",
    "H100": "sm_90",
    "H200": "sm_90",
    "B200": "sm_100",
    "GB200": "sm_100",
    "B300": "sm_103",
}

NVLINK = {3: 300.0, 4: 450.0, 5: 900.0}


def test_the_issue_s_types_are_all_there() -> None:
    missing = [n for n in REQUIRED if n not in catalog.CATALOG]
    assert not missing


@pytest.mark.parametrize("name", TYPES)
def test_every_type_is_well_formed(name: str) -> None:
    t = catalog.CATALOG[name]
    assert t.name == name
    assert t.arch in {"x86_64", "arm64"}
    assert t.accelerator_kind in {"nvidia-gpu", "neuron", "none"}
    assert t.vcpus > 0 and t.memory_gib > 0 and t.network_gbps > 0
    assert t.line_rate_GBps == pytest.approx(t.network_gbps / 8)
    assert t.sources.get("specs"), f"{name} does not say where its figures come from"
    assert t.efa_interfaces >= 0


@pytest.mark.parametrize("name", GPU_TYPES)
def test_gpu_types(name: str) -> None:
    t = catalog.CATALOG[name]
    assert t.accelerator_count > 0
    assert t.accelerator_memory_gib > 0
    assert t.cuda_arch == CUDA_ARCH[t.accelerator_model]
    assert t.sources.get("cuda_arch") and t.sources.get("accelerator_memory_gib")
    if t.family.startswith("p"):
        # HGX / NVL72 boards: NVLink switch, GPUDirect RDMA over EFA.
        assert t.nvlink_GBps_per_gpu == NVLINK[t.nvlink_generation]
        assert t.nvlink_domain_gpus >= t.accelerator_count
        assert t.gdr_support and t.efa_supported
    else:
        # G family: PCIe GPUs, no NVLink switch, EFA without GPUDirect RDMA.
        assert t.nvlink_generation == 0 and t.nvlink_GBps_per_gpu == 0
        assert t.pcie_gen in catalog.PCIE_X16_GBPS
        assert not t.gdr_support


def test_nvlink_generation_matches_the_gpu() -> None:
    generation = {"A100": 3, "H100": 4, "H200": 4, "B200": 5, "GB200": 5, "B300": 5}
    for name in GPU_TYPES:
        t = catalog.CATALOG[name]
        if t.accelerator_model in generation:
            assert t.nvlink_generation == generation[t.accelerator_model], name


@pytest.mark.parametrize(("name", "count"), sorted(REFERENCE_EFA.items()))
def test_efa_counts_match_the_reference(name: str, count: int) -> None:
    assert catalog.CATALOG[name].efa_interfaces == count


@pytest.mark.parametrize("name", [n for n in TYPES if catalog.CATALOG[n].efa_gbps_per_interface])
def test_network_is_efa_interfaces_times_their_speed(name: str) -> None:
    t = catalog.CATALOG[name]
    assert t.network_gbps == pytest.approx(t.efa_interfaces * t.efa_gbps_per_interface)


def test_p_family_nodes_have_the_published_network() -> None:
    for name in ("p5.48xlarge", "p5e.48xlarge", "p5en.48xlarge", "p6-b200.48xlarge"):
        assert catalog.CATALOG[name].network_gbps == 3200, name
    assert catalog.CATALOG["p4d.24xlarge"].line_rate_GBps == 50
    assert catalog.CATALOG["p6-b300.48xlarge"].network_gbps == 6400


def test_seed_errors_are_corrected_p5en_is_h200_with_16_efa_of_200_gbps() -> None:
    t = catalog.CATALOG["p5en.48xlarge"]
    assert (t.accelerator_model, t.efa_interfaces, t.efa_gbps_per_interface) == ("H200", 16, 200)
    assert "wrong" in t.sources["efa"]


@pytest.mark.parametrize("name", [n for n in TYPES if catalog.CATALOG[n].expected])
def test_expected_figures_never_exceed_the_physical_ceiling(name: str) -> None:
    t = catalog.CATALOG[name]
    assert t.sources.get("expected.all_reduce"), f"{name}: expected figures without a source"
    figures = t.expected["all_reduce"]
    assert figures, name
    for nodes, busbw in figures.items():
        assert isinstance(nodes, int) and nodes >= 1
        assert busbw > 0
        if nodes == 1:
            assert busbw <= t.single_node_ceiling_GBps, f"{name} 1 node {busbw} GB/s"
        else:
            assert busbw <= t.line_rate_GBps, f"{name} {nodes} nodes {busbw} GB/s"


def test_expected_figures_sit_below_published_results() -> None:
    # Acceptance gates must pass on hardware that matches the published runs.
    published = {
        ("p4d.24xlarge", 1): 231,
        ("p4d.24xlarge", 2): 45.7,
        ("p5en.48xlarge", 16): 370,
        ("p6-b200.48xlarge", 4): 377,
        ("p6-b300.48xlarge", 2): 654,
    }
    for (name, nodes), measured in published.items():
        assert catalog.expected_busbw(name, nodes) < measured, (name, nodes)
    # ... and above the old, loose gates (aws-parallelcluster test_efa.py).
    assert catalog.expected_busbw("p4d.24xlarge", 2) > 26
    assert catalog.expected_busbw("p5.48xlarge", 2) > 250


def test_the_seed_s_impossible_targets_are_above_every_expected_figure() -> None:
    for name in GPU_TYPES:
        figures = catalog.CATALOG[name].expected.get("all_reduce", {})
        assert all(v < 800 for n, v in figures.items() if n >= 2), name
        assert all(v < 1200 for v in figures.values()), name


@pytest.mark.parametrize("name", NEURON_TYPES)
def test_trainium_has_no_cuda(name: str) -> None:
    t = catalog.CATALOG[name]
    assert t.cuda_arch is None
    assert t.accelerator_model.startswith("Trainium")
    assert t.accelerator_count == 16 and t.nvlink_generation == 0
    assert not t.gdr_support
    # Neuron collectives are not NCCL: nothing is gated yet, and the entry says so.
    assert not t.expected and "nccom" in t.sources["expected"]


@pytest.mark.parametrize("name", CPU_TYPES)
def test_cpu_types(name: str) -> None:
    t = catalog.CATALOG[name]
    assert t.accelerator_count == 0 and t.accelerator_model is None and t.cuda_arch is None
    assert not t.expected and not t.gdr_support


def test_efa_sizes_of_cpu_families() -> None:
    efa = {n for n in CPU_TYPES if catalog.CATALOG[n].efa_supported}
    assert {"c5n.9xlarge", "c5n.18xlarge", "c6i.32xlarge", "c7i.48xlarge", "m6i.32xlarge"} <= efa
    assert not {"m6i.xlarge", "m5.24xlarge", "c7i.24xlarge", "t3.medium"} & efa


def test_g_family_efa_sizes() -> None:
    for family in ("g5", "g6", "g6e"):
        for size in ("8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge"):
            assert catalog.CATALOG[f"{family}.{size}"].efa_supported, f"{family}.{size}"
        assert not catalog.CATALOG[f"{family}.xlarge"].efa_supported
    assert catalog.CATALOG["g6e.48xlarge"].efa_interfaces == 4


def test_arm64_types_and_placement_groups() -> None:
    assert catalog.CATALOG["p6e-gb200.36xlarge"].arch == "arm64"
    assert catalog.CATALOG["m7g.2xlarge"].arch == "arm64"
    assert catalog.CATALOG["p5.48xlarge"].arch == "x86_64"
    assert not catalog.CATALOG["t3.medium"].placement_group
    assert catalog.CATALOG["p5.48xlarge"].placement_group


def test_lookup_returns_the_entry() -> None:
    assert catalog.lookup("p5.48xlarge") is catalog.CATALOG["p5.48xlarge"]


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("p5.48xlarg", "p5.48xlarge"),
        ("p5en.48xl", "p5en.48xlarge"),
        ("p5.32xlarge", "p5.48xlarge"),
        ("p6b200.48xlarge", "p6-b200.48xlarge"),
        ("P4D.24XLARGE", "p4d.24xlarge"),
        ("c7i.48xlarg", "c7i.48xlarge"),
    ],
)
def test_lookup_suggests_the_type_meant(typo: str, meant: str) -> None:
    with pytest.raises(catalog.UnknownInstanceTypeError) as exc:
        catalog.lookup(typo)
    assert str(exc.value) == f"unknown instance type '{typo}'; did you mean '{meant}'?"
    assert exc.value.suggestions == [meant]


def test_lookup_without_a_close_match_lists_the_families() -> None:
    with pytest.raises(catalog.UnknownInstanceTypeError) as exc:
        catalog.lookup("zz9.plural")
    assert "p6-b200" in str(exc.value) and "docs/cluster.md" in str(exc.value)


def test_every_type_has_a_dated_approximate_price() -> None:
    datetime.date.fromisoformat(catalog.PRICES_DATE)
    assert catalog.PRICES_REGION == "us-east-1" and catalog.PRICES_APPROXIMATE
    assert set(catalog.PRICES) == set(catalog.CATALOG)
    for name, price in catalog.PRICES.items():
        assert price.usd_per_hour > 0, name
        assert price.note
    # Bigger nodes of one family cost more.
    assert catalog.price("m6i.32xlarge").usd_per_hour > catalog.price("m6i.xlarge").usd_per_hour
    assert catalog.price("p5.48xlarge").usd_per_hour > catalog.price("p4d.24xlarge").usd_per_hour


def test_expected_busbw_takes_the_nearest_smaller_node_count() -> None:
    assert (
        catalog.expected_busbw("p5.48xlarge", 1)
        == catalog.CATALOG["p5.48xlarge"].expected["all_reduce"][1]
    )
    assert catalog.expected_busbw("p5.48xlarge", 3) == catalog.expected_busbw("p5.48xlarge", 2)
    assert catalog.expected_busbw("p5.48xlarge", 64) == catalog.expected_busbw("p5.48xlarge", 16)
    assert catalog.expected_busbw("g5.8xlarge", 1) is None  # one GPU: no single-node figure
    assert catalog.expected_busbw("trn2.48xlarge", 4) is None


# ---------------------------------------------------------------------------------------------
# docs/cluster.md carries the catalog and the expected figures; they must match the code.
# Regenerate with XPU_UPDATE_GOLDEN=1 after changing the catalog.
# ---------------------------------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[4] / "docs" / "cluster.md"


# Docs list types by family, then size.
DOC_ORDER = sorted(TYPES, key=lambda n: (catalog.CATALOG[n].family, catalog.CATALOG[n].vcpus))


def _fmt(value: float) -> str:
    return f"{value:g}"


def catalog_table() -> str:
    rows = [
        "| type | accelerators | NVLink (GB/s per GPU, per direction) | EFA | network Gbps "
        "| vCPU | memory GiB | arch | CUDA | placement group | USD/h |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in DOC_ORDER:
        t = catalog.CATALOG[name]
        accel = (
            f"{t.accelerator_count}x {t.accelerator_model} {_fmt(t.accelerator_memory_gib)} GiB"
            if t.accelerator_count
            else "-"
        )
        nvlink = (
            f"NVLink{t.nvlink_generation} {_fmt(t.nvlink_GBps_per_gpu)}"
            if t.nvlink_generation
            else "-"
        )
        if t.efa_interfaces:
            efa = f"{t.efa_interfaces}"
            if t.efa_gbps_per_interface:
                efa += f" x {_fmt(t.efa_gbps_per_interface)}"
            if t.gdr_support:
                efa += ", GDR"
        else:
            efa = "-"
        network = ("up to " if t.network_burst else "") + _fmt(t.network_gbps)
        price = catalog.price(name)
        usd = _fmt(price.usd_per_hour) + ("*" if price.note != "on-demand list price" else "")
        rows.append(
            f"| {name} | {accel} | {nvlink} | {efa} | {network} | {t.vcpus} "
            f"| {_fmt(t.memory_gib)} | {t.arch} | {t.cuda_arch or '-'} "
            f"| {'yes' if t.placement_group else 'no'} | {usd} |"
        )
    return "\n".join(rows)


def expected_table() -> str:
    counts = (1, *catalog.NODE_COUNTS)
    rows = [
        "| type | line rate GB/s | "
        + " | ".join(f"{n} node{'s' * (n > 1)}" for n in counts)
        + " |",
        "|---|---|" + "---|" * len(counts),
    ]
    for name in DOC_ORDER:
        t = catalog.CATALOG[name]
        figures = t.expected.get("all_reduce")
        if not figures:
            continue
        cells = [_fmt(figures[n]) if n in figures else "-" for n in counts]
        rows.append(f"| {name} | {_fmt(t.line_rate_GBps)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _between(text: str, marker: str) -> tuple[int, int]:
    start = text.index(f"<!-- {marker}:start -->\n") + len(f"<!-- {marker}:start -->\n")
    return start, text.index(f"<!-- {marker}:end -->")


@pytest.mark.parametrize(
    ("marker", "make"), [("catalog", catalog_table), ("expected", expected_table)]
)
def test_docs_tables_match_the_catalog(marker: str, make: Any) -> None:
    text = DOC.read_text()
    start, end = _between(text, marker)
    wanted = make() + "\n"
    if os.environ.get("XPU_UPDATE_GOLDEN") == "1" and text[start:end] != wanted:
        text = text[:start] + wanted + text[end:]
        DOC.write_text(text)
        start, end = _between(text, marker)
    assert text[start:end] == wanted, f"docs/cluster.md {marker} table is stale"
    assert catalog.PRICES_DATE in text
