# Copyright: (c) 2026, xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)
"""The instance catalog: what each EC2 instance type brings to a training cluster.

One data source for the cluster spec (EFA and placement-group defaults, architecture checks),
the rendered ParallelCluster configuration, the cost summary and the acceptance tests (expected
NCCL bus bandwidth per node count). Every figure names where it comes from, in the type's
``sources`` mapping or in a comment; "inferred" marks arithmetic on published numbers, and
"verify" a figure that should be checked with
``aws ec2 describe-instance-types --instance-types <type>`` before relying on it.

Units: GiB for memory, Gbps for network links, GB/s (10^9 bytes per second, the unit nccl-tests
prints) for NVLink and bus bandwidth. ``line_rate_GBps`` is the node's network bandwidth in GB/s
(Gbps / 8).

Corrections to the seed material (do not reintroduce them):

- p5en.48xlarge carries 8x H200 (141 GB) with 16 EFA interfaces of 200 Gbps, not H100 with 32
  (aws-ofi-nccl ``src/nccl_ofi_net.cpp``; awsome-distributed-ai aws-pcs ``compute-test.md``).
- "1.2-1.4 TB/s single node" and "> 800 GB/s 2-node" all_reduce targets are above the physical
  ceilings (NVLink 450/900 GB/s per GPU per direction; 400 GB/s of node network on
  p5/p5en/p6-b200); so are awsome's healthcheck minimums (p5 800, p6-b200 900 multi-node).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

ACCEL_NVIDIA = "nvidia-gpu"
ACCEL_NEURON = "neuron"
ACCEL_NONE = "none"
ACCELERATOR_KINDS = (ACCEL_NVIDIA, ACCEL_NEURON, ACCEL_NONE)
ARCHITECTURES = ("x86_64", "arm64")

# NVLink bandwidth per GPU, per direction, by generation (NVIDIA: NVLink3 600 GB/s, NVLink4
# 900 GB/s, NVLink5 1.8 TB/s total bidirectional per GPU).
NVLINK_GBPS_PER_GPU = MappingProxyType({3: 300.0, 4: 450.0, 5: 900.0})
# PCIe x16 bandwidth per direction, by generation (PCI-SIG: Gen4 16 GT/s, Gen5 32 GT/s per lane,
# 128b/130b encoding): the single-node ceiling of GPUs without an NVLink switch.
PCIE_X16_GBPS = MappingProxyType({4: 31.5, 5: 63.0})

# ---------------------------------------------------------------------------------------------
# Sources (cited from each type's ``sources`` mapping).
# ---------------------------------------------------------------------------------------------
SRC_REFERENCE = "shared/REFERENCE.md, Instances table"
SRC_AWS_AC = (
    "AWS EC2 instance types, accelerated computing specifications "
    "(docs.aws.amazon.com/ec2/latest/instancetypes/ac.html)"
)
SRC_AWS_CO = (
    "AWS EC2 instance types, compute optimized specifications "
    "(docs.aws.amazon.com/ec2/latest/instancetypes/co.html)"
)
SRC_AWS_GP = (
    "AWS EC2 instance types, general purpose specifications "
    "(docs.aws.amazon.com/ec2/latest/instancetypes/gp.html)"
)
SRC_AWS_HPC = (
    "AWS EC2 instance types, HPC specifications "
    "(docs.aws.amazon.com/ec2/latest/instancetypes/hpc.html)"
)
SRC_EFA_COUNTS = (
    "awslabs/awsome-distributed-ai architectures/aws-pcs/tests/compute-test.md: "
    "'found N nics', N = 32 p5/p5e, 16 p5en, 8 p6-b200, 16 p6-b300"
)
SRC_OFI_P5EN = "aws-ofi-nccl src/nccl_ofi_net.cpp (200 Gbps per EFA link on p5en)"
SRC_EFA_P4 = "aws-samples/aws-efa-eks README (p4d: 4x100 Gbps EFA with GPUDirect RDMA)"
SRC_CHEATSHEET = (
    "aws-samples/awsome-distributed-training 1.architectures/efa-cheatsheet.md "
    "(p4de 12x NVLink3, p5 18x NVLink4 per GPU)"
)
SRC_G6E_EFA = (
    "AWS EC2 user guide, EFA on accelerated instances: 'G6e instances support up to four network "
    "cards and up to 400 Gbps'"
)
SRC_NEURON_TRN1 = (
    "AWS Neuron docs, Trn1/Trn1n architecture (16 Trainium, 128 vCPU, 512 GiB, EFA 800/1600 Gbps) "
    "and trn1 multi-node setup (trn1.32xlarge 8 EFA devices, trn1n.32xlarge 16)"
)
SRC_NEURON_TRN2 = (
    "AWS Neuron docs, Trainium2 architecture (96 GiB HBM per chip, NeuronLink-v3) and training "
    "best practices (16 Trainium2 per trn2.48xlarge)"
)
SRC_GB200 = (
    "AWS P6e-GB200 UltraServer announcement (up to 72 B200 per NVL72 domain, 28.8 Tbps EFAv4 per "
    "UltraServer of 18 instances = 1.6 Tbps per instance); aws-parallelcluster 3.16.1 "
    "pcluster/constants.py (p6e-gb200 only through UltraServer Capacity Blocks of 9 or 18)"
)
SRC_B300 = "AWS P6-B300 specifications (8x B300, 2.1 TB HBM3e, 4 TB memory, 6.4 Tbps EFAv4)"
SRC_CUDA = (
    "NVIDIA CUDA GPU compute capability table (A100 8.0, A10G 8.6, L4/L40S 8.9, H100/H200 9.0, "
    "B200/GB200 10.0, B300 10.3)"
)
SRC_NVSMI = "nvidia-smi total memory as printed on these GPUs (MiB / 1024)"
SRC_NCCL527 = "NVIDIA/nccl #527: p4d.24xlarge single node all_reduce ~231 GB/s"
SRC_PCTEST = (
    "aws-parallelcluster tests/integration-tests/tests/efa/test_efa.py: p4d 2-node ring 45.7 GB/s "
    "at 1 GiB (gate > 26), p5 2-node ring gate > 250"
)
SRC_P5_1NODE = (
    "awsome-distributed-ai nccl-tests aws-batch README: p5 single node ~483 GB/s with NVLS"
)
SRC_P5EN_16 = "awsome-distributed-ai topology-aware nccl-tests README: p5en 16 nodes ~370 GB/s"
SRC_P6B200_4 = (
    "awsome-distributed-ai aws-pcs compute-test.md: p6-b200 x4 377 GB/s at 16 GiB "
    "(367 at 1 GiB, 295 at 128 MiB)"
)
SRC_P6B300_2 = (
    "awsome-distributed-ai aws-pcs compute-test.md: p6-b300 x2 654 GB/s at 16 GiB, 751 at 64 GiB"
)
SRC_B200_1NODE = "NVIDIA/nccl #1807: 8x B200 single node ~830 GB/s (not on AWS)"

# How the ``expected`` figures are set (documented in docs/cluster.md):
#   all_reduce bus bandwidth, GB/s, large messages (>= 1 GiB), NCCL_ALGO=Ring for multi-node runs
#   (2-node tree/NVLS numbers exceed the line rate and are not comparable).
#   - single node: 85 % of the published single-node figure, never above the per-GPU NVLink
#     bandwidth per direction (NVLS figures above it are capped there first); 75 % of the NVLink
#     figure where nothing is published ("inferred").
#   - 2 nodes: 75 % of the line rate; 4 nodes and more: 85 % of the line rate (published runs at
#     4+ nodes reach ~91-94 % of it), and never above 90 % of a published figure for that count.
#   - no GPUDirect RDMA (G family): 50 % of the line rate, 25 % of PCIe Gen4 x16 on one node.
SINGLE_NODE_SHARE = 0.85
SINGLE_NODE_UNPUBLISHED_SHARE = 0.75
TWO_NODE_SHARE = 0.75
MULTI_NODE_SHARE = 0.85
NO_GDR_NETWORK_SHARE = 0.5
PCIE_SHARE = 0.25
NODE_COUNTS = (2, 4, 8, 16)


class UnknownInstanceTypeError(ValueError):
    """An instance type the catalog does not know; carries close matches for a 'did you mean'."""

    def __init__(self, name: str, suggestions: list[str]):
        self.name = name
        self.suggestions = suggestions
        self.problem = f"unknown instance type '{name}'"
        if suggestions:
            hint = "did you mean " + " or ".join(f"'{s}'" for s in suggestions) + "?"
        else:
            hint = (
                "the catalog knows the families "
                + ", ".join(sorted({t.family for t in CATALOG.values()}))
                + " (docs/cluster.md lists every size; add a type to "
                "plugins/module_utils/catalog.py with its sources)"
            )
        self.hint = hint
        super().__init__(f"{self.problem}; {hint}")


@dataclass(frozen=True)
class InstanceType:
    """One EC2 instance type and the facts a cluster needs about it."""

    name: str
    vcpus: int
    memory_gib: float
    arch: str
    network_gbps: float
    # True when the network figure is an "up to" burst figure (small sizes).
    network_burst: bool = False
    accelerator_kind: str = ACCEL_NONE
    accelerator_model: str | None = None
    accelerator_count: int = 0
    accelerator_memory_gib: float = 0.0
    nvlink_generation: int = 0
    # NVLink bandwidth per GPU, per direction (GB/s); 0 without NVLink.
    nvlink_GBps_per_gpu: float = 0.0
    # GPUs in one NVLink domain: 8 on HGX boards, 72 across a GB200 NVL72 UltraServer.
    nvlink_domain_gpus: int = 0
    pcie_gen: int = 0
    efa_interfaces: int = 0
    efa_gbps_per_interface: float | None = None
    # GPUDirect RDMA over EFA (ParallelCluster Efa/GdrSupport).
    gdr_support: bool = False
    placement_group: bool = True
    cuda_arch: str | None = None
    # {"all_reduce": {node_count: bus bandwidth GB/s}}; see the policy above.
    expected: Mapping[str, Mapping[int, float]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def line_rate_GBps(self) -> float:
        return self.network_gbps / 8.0

    @property
    def efa_supported(self) -> bool:
        return self.efa_interfaces > 0

    @property
    def is_gpu(self) -> bool:
        return self.accelerator_kind == ACCEL_NVIDIA

    @property
    def single_node_ceiling_GBps(self) -> float:
        """The physical ceiling of a single-node collective's bus bandwidth, per GPU."""
        if self.nvlink_GBps_per_gpu:
            return self.nvlink_GBps_per_gpu
        return PCIE_X16_GBPS.get(self.pcie_gen, 0.0)


@dataclass(frozen=True)
class Price:
    """An approximate on-demand price (Linux, us-east-1 unless the note says otherwise)."""

    usd_per_hour: float
    note: str = "on-demand list price"


# ---------------------------------------------------------------------------------------------
# Builders: families share most facts; each call names what differs.
# ---------------------------------------------------------------------------------------------


def _freeze(d: dict) -> Mapping:
    return MappingProxyType(
        {k: MappingProxyType(v) if isinstance(v, dict) else v for k, v in d.items()}
    )


def _expected_nvlink(
    *,
    nvlink: float,
    line_rate: float,
    single: float | None,
    published: dict[int, float] | None = None,
    two_node_share: float = TWO_NODE_SHARE,
    multi_share: float = MULTI_NODE_SHARE,
    counts: tuple[int, ...] = NODE_COUNTS,
) -> Mapping:
    """all_reduce gates for an NVLink + GPUDirect-RDMA type, by the policy above."""
    if single is None:
        one = SINGLE_NODE_UNPUBLISHED_SHARE * nvlink
    else:
        one = SINGLE_NODE_SHARE * min(single, nvlink)
    figures = {1: round(one, 1)}
    for n in counts:
        share = two_node_share if n == 2 else multi_share
        value = share * line_rate
        if published and n in published:
            value = min(value, 0.9 * published[n])
        figures[n] = round(value, 1)
    return _freeze({"all_reduce": figures})


def _expected_no_gdr(*, gpus: int, line_rate: float, pcie_gen: int) -> Mapping:
    figures: dict[int, float] = {}
    if gpus > 1:
        figures[1] = round(PCIE_SHARE * PCIE_X16_GBPS[pcie_gen], 1)
    for n in NODE_COUNTS:
        figures[n] = round(NO_GDR_NETWORK_SHARE * line_rate, 1)
    return _freeze({"all_reduce": figures})


CATALOG_ENTRIES: list[InstanceType] = []


def _add(entry: InstanceType) -> None:
    CATALOG_ENTRIES.append(entry)


# --- NVIDIA HGX / Grace-Blackwell ------------------------------------------------------------
# vCPU 192 and 2 TiB RAM on p5/p5en/p6-b200 (REFERENCE.md).

_add(
    InstanceType(
        name="p6-b200.48xlarge",
        vcpus=192,
        memory_gib=2048,
        arch="x86_64",
        network_gbps=3200,
        accelerator_kind=ACCEL_NVIDIA,
        accelerator_model="B200",
        accelerator_count=8,
        accelerator_memory_gib=179.0,  # 183359 MiB (nvidia-smi); AWS: 1440 GB HBM3e per instance
        nvlink_generation=5,
        nvlink_GBps_per_gpu=900,
        nvlink_domain_gpus=8,
        pcie_gen=5,
        efa_interfaces=8,
        efa_gbps_per_interface=400,
        gdr_support=True,
        cuda_arch="sm_100",
        expected=_expected_nvlink(
            nvlink=900, line_rate=400, single=830, published={4: 377, 8: 377, 16: 377}
        ),
        sources=_freeze(
            {
                "specs": f"{SRC_REFERENCE}; {SRC_AWS_AC}",
                "efa": f"{SRC_EFA_COUNTS} (8 x 400 Gbps)",
                "accelerator_memory_gib": SRC_NVSMI,
                "cuda_arch": SRC_CUDA,
                "expected.all_reduce": (
                    f"1 node: {SRC_B200_1NODE}, x0.85 (inferred for AWS); "
                    f"4+ nodes: {SRC_P6B200_4}, capped at 90 %; 2 nodes: 75 % of line rate"
                ),
            }
        ),
    )
)

_add(
    InstanceType(
        name="p6-b300.48xlarge",
        vcpus=192,
        memory_gib=4096,
        arch="x86_64",
        network_gbps=6400,
        accelerator_kind=ACCEL_NVIDIA,
        accelerator_model="B300",
        accelerator_count=8,
        accelerator_memory_gib=249.6,  # inferred: 2144 GB HBM3e / 8 = 268 GB = 249.6 GiB
        nvlink_generation=5,
        nvlink_GBps_per_gpu=900,
        nvlink_domain_gpus=8,
        pcie_gen=5,
        efa_interfaces=16,
        efa_gbps_per_interface=400,
        gdr_support=True,
        # Blackwell Ultra is compute capability 10.3; sm_100 SASS also runs on it (same major).
        cuda_arch="sm_103",
        # 16 EFA cards are not saturated at 16 GiB (654 GB/s at 2 nodes, 751 at 64 GiB), so
        # every multi-node count uses the 2-node share of the line rate (inferred).
        expected=_expected_nvlink(
            nvlink=900,
            line_rate=800,
            single=None,
            published={2: 654},
            multi_share=TWO_NODE_SHARE,
        ),
        sources=_freeze(
            {
                "specs": f"{SRC_B300}; {SRC_REFERENCE} (16 EFA, 'verify')",
                "efa": f"{SRC_EFA_COUNTS}; 16 x 400 Gbps = 6400 Gbps (inferred from {SRC_B300})",
                "accelerator_memory_gib": "inferred from AWS's 2.1 TB HBM3e per instance",
                "cuda_arch": SRC_CUDA,
                "expected.all_reduce": (
                    f"1 node: 75 % of NVLink5 (inferred, nothing published); multi-node: "
                    f"{SRC_P6B300_2}; 75 % of the 800 GB/s line rate (inferred)"
                ),
            }
        ),
    )
)

_add(
    InstanceType(
        name="p6e-gb200.36xlarge",
        vcpus=144,
        memory_gib=960,
        arch="arm64",
        network_gbps=1600,
        accelerator_kind=ACCEL_NVIDIA,
        accelerator_model="GB200",
        accelerator_count=4,
        accelerator_memory_gib=172.3,  # inferred: 740 GB HBM3e per instance / 4
        nvlink_generation=5,
        nvlink_GBps_per_gpu=900,
        nvlink_domain_gpus=72,
        pcie_gen=5,
        efa_interfaces=4,
        efa_gbps_per_interface=400,
        gdr_support=True,
        cuda_arch="sm_100",
        # Multi-node traffic inside an NVL72 domain travels over NVLink (MNNVL), not EFA: the
        # line rate is not its ceiling and nothing is published yet, so only one node is gated.
        expected=_freeze({"all_reduce": {1: 675.0}}),
        sources=_freeze(
            {
                "specs": f"{SRC_GB200}; {SRC_REFERENCE} ('4 used by NCCL', 'verify')",
                "efa": "inferred: 28.8 Tbps per UltraServer / 18 instances = 4 x 400 Gbps",
                "accelerator_memory_gib": "inferred from AWS's per-instance HBM3e total",
                "cuda_arch": SRC_CUDA,
                "expected.all_reduce": "1 node: 75 % of NVLink5 per GPU (inferred, unpublished)",
            }
        ),
    )
)

_P5_COMMON = dict(
    vcpus=192,
    memory_gib=2048,
    arch="x86_64",
    network_gbps=3200,
    accelerator_kind=ACCEL_NVIDIA,
    accelerator_count=8,
    nvlink_generation=4,
    nvlink_GBps_per_gpu=450,
    nvlink_domain_gpus=8,
    pcie_gen=5,
    gdr_support=True,
    cuda_arch="sm_90",
)

_add(
    InstanceType(
        name="p5en.48xlarge",
        accelerator_model="H200",
        accelerator_memory_gib=140.4,  # 143771 MiB (nvidia-smi); 141 GB HBM3e
        efa_interfaces=16,
        efa_gbps_per_interface=200,
        expected=_expected_nvlink(nvlink=450, line_rate=400, single=483, published={16: 370}),
        sources=_freeze(
            {
                "specs": f"{SRC_REFERENCE}; {SRC_AWS_AC}",
                "efa": f"{SRC_EFA_COUNTS}; {SRC_OFI_P5EN} (the seed's 'H100, 32 EFA' is wrong)",
                "accelerator_memory_gib": SRC_NVSMI,
                "cuda_arch": SRC_CUDA,
                "expected.all_reduce": (
                    f"1 node: as p5 (same NVLink4 board; {SRC_P5_1NODE}, capped at NVLink); "
                    f"16 nodes: {SRC_P5EN_16}"
                ),
            }
        ),
        **_P5_COMMON,
    )
)

for _name, _model, _mem, _mem_src in (
    ("p5.48xlarge", "H100", 79.6, "81559 MiB (nvidia-smi); 80 GB HBM3"),
    ("p5e.48xlarge", "H200", 140.4, "143771 MiB (nvidia-smi); 141 GB HBM3e"),
):
    _add(
        InstanceType(
            name=_name,
            accelerator_model=_model,
            accelerator_memory_gib=_mem,
            efa_interfaces=32,
            efa_gbps_per_interface=100,
            expected=_expected_nvlink(nvlink=450, line_rate=400, single=483),
            sources=_freeze(
                {
                    "specs": f"{SRC_REFERENCE}; {SRC_AWS_AC}; {SRC_CHEATSHEET}",
                    "efa": f"{SRC_EFA_COUNTS} (32 x 100 Gbps)",
                    "accelerator_memory_gib": f"{SRC_NVSMI}: {_mem_src}",
                    "cuda_arch": SRC_CUDA,
                    "expected.all_reduce": (
                        f"1 node: {SRC_P5_1NODE}, capped at NVLink4 450; 2 nodes: {SRC_PCTEST} "
                        "(our 75 % of line rate is stricter); 4+ nodes: 85 % of line rate"
                    ),
                }
            ),
            **_P5_COMMON,
        )
    )

for _name, _mem, _mem_src in (
    ("p4d.24xlarge", 40.0, "40960 MiB (nvidia-smi); A100-SXM4-40GB"),
    ("p4de.24xlarge", 80.0, "81920 MiB (nvidia-smi); A100-SXM4-80GB"),
):
    _add(
        InstanceType(
            name=_name,
            vcpus=96,
            memory_gib=1152,
            arch="x86_64",
            network_gbps=400,
            accelerator_kind=ACCEL_NVIDIA,
            accelerator_model="A100",
            accelerator_count=8,
            accelerator_memory_gib=_mem,
            nvlink_generation=3,
            nvlink_GBps_per_gpu=300,
            nvlink_domain_gpus=8,
            pcie_gen=4,
            efa_interfaces=4,
            efa_gbps_per_interface=100,
            gdr_support=True,
            cuda_arch="sm_80",
            expected=_expected_nvlink(nvlink=300, line_rate=50, single=231, published={2: 45.7}),
            sources=_freeze(
                {
                    "specs": f"{SRC_REFERENCE}; {SRC_AWS_AC}; {SRC_CHEATSHEET}",
                    "efa": f"{SRC_REFERENCE} (4 x 100 Gbps); {SRC_EFA_P4}",
                    "accelerator_memory_gib": f"{SRC_NVSMI}: {_mem_src}",
                    "cuda_arch": SRC_CUDA,
                    "expected.all_reduce": f"1 node: {SRC_NCCL527}; 2 nodes: {SRC_PCTEST}",
                }
            ),
        )
    )

# --- NVIDIA G family (PCIe GPUs, no NVLink switch) -------------------------------------------
# (size, gpus, vcpus, memory GiB, network Gbps, burst, EFA interfaces)
_G_SIZES = {
    "g5": (
        ("xlarge", 1, 4, 16, 10, True, 0),
        ("2xlarge", 1, 8, 32, 10, True, 0),
        ("8xlarge", 1, 32, 128, 25, False, 1),
        ("12xlarge", 4, 48, 192, 40, False, 1),
        ("16xlarge", 1, 64, 256, 25, False, 1),
        ("24xlarge", 4, 96, 384, 50, False, 1),
        ("48xlarge", 8, 192, 768, 100, False, 1),
    ),
    "g6": (
        ("xlarge", 1, 4, 16, 10, True, 0),
        ("2xlarge", 1, 8, 32, 10, True, 0),
        ("8xlarge", 1, 32, 128, 25, False, 1),
        ("12xlarge", 4, 48, 192, 40, False, 1),
        ("16xlarge", 1, 64, 256, 25, False, 1),
        ("24xlarge", 4, 96, 384, 50, False, 1),
        ("48xlarge", 8, 192, 768, 100, False, 1),
    ),
    "g6e": (
        ("xlarge", 1, 4, 32, 20, True, 0),
        ("2xlarge", 1, 8, 64, 20, True, 0),
        ("8xlarge", 1, 32, 256, 25, False, 1),
        ("12xlarge", 4, 48, 384, 100, False, 1),
        ("16xlarge", 1, 64, 512, 35, False, 1),
        ("24xlarge", 4, 96, 768, 200, False, 2),
        ("48xlarge", 8, 192, 1536, 400, False, 4),
    ),
}
_G_GPU = {
    # family: (model, GiB per GPU, nvidia-smi MiB, cuda arch)
    "g5": ("A10G", 22.5, "23028 MiB; 24 GB GDDR6", "sm_86"),
    "g6": ("L4", 22.5, "23034 MiB; 24 GB GDDR6", "sm_89"),
    "g6e": ("L40S", 45.0, "46068 MiB; 48 GB GDDR6", "sm_89"),
}
for _family, _sizes in _G_SIZES.items():
    _model, _gpu_mem, _gpu_mem_src, _sm = _G_GPU[_family]
    for _size, _gpus, _vcpus, _mem, _net, _burst, _efa in _sizes:
        _add(
            InstanceType(
                name=f"{_family}.{_size}",
                vcpus=_vcpus,
                memory_gib=_mem,
                arch="x86_64",
                network_gbps=_net,
                network_burst=_burst,
                accelerator_kind=ACCEL_NVIDIA,
                accelerator_model=_model,
                accelerator_count=_gpus,
                accelerator_memory_gib=_gpu_mem,
                pcie_gen=4,
                efa_interfaces=_efa,
                efa_gbps_per_interface=(_net / _efa) if _efa else None,
                # AWS documents GPUDirect RDMA over EFA for the P family; not for G sizes.
                gdr_support=False,
                cuda_arch=_sm,
                expected=(
                    _expected_no_gdr(gpus=_gpus, line_rate=_net / 8, pcie_gen=4)
                    if _efa
                    else MappingProxyType({})
                ),
                sources=_freeze(
                    {
                        "specs": f"{SRC_AWS_AC} ('verify' per size in {SRC_REFERENCE})",
                        "efa": (
                            SRC_G6E_EFA
                            if _family == "g6e" and _efa > 1
                            else f"{SRC_AWS_AC}: EFA on the 8xlarge and larger sizes"
                        ),
                        "accelerator_memory_gib": f"{SRC_NVSMI}: {_gpu_mem_src}",
                        "cuda_arch": SRC_CUDA,
                        "expected.all_reduce": (
                            "inferred, nothing published for AWS: 1 node 25 % of PCIe Gen4 x16; "
                            "multi-node 50 % of the line rate (no GPUDirect RDMA)"
                        ),
                    }
                ),
            )
        )

# --- AWS Trainium (Neuron SDK; no CUDA) ------------------------------------------------------
# Collectives run through the Neuron runtime (nccom-test), not NCCL: no NCCL figure is gated.
for _name, _vcpus, _mem, _chips, _chip_mem, _model, _efa, _per, _src in (
    ("trn1.32xlarge", 128, 512, 16, 32.0, "Trainium", 8, 100, SRC_NEURON_TRN1),
    ("trn1n.32xlarge", 128, 512, 16, 32.0, "Trainium", 16, 100, SRC_NEURON_TRN1),
    ("trn2.48xlarge", 192, 2048, 16, 96.0, "Trainium2", 16, 200, SRC_NEURON_TRN2),
):
    _add(
        InstanceType(
            name=_name,
            vcpus=_vcpus,
            memory_gib=_mem,
            arch="x86_64",
            network_gbps=_efa * _per,
            accelerator_kind=ACCEL_NEURON,
            accelerator_model=_model,
            accelerator_count=_chips,
            accelerator_memory_gib=_chip_mem,
            efa_interfaces=_efa,
            efa_gbps_per_interface=_per,
            cuda_arch=None,
            sources=_freeze(
                {
                    "specs": f"{_src}; {SRC_REFERENCE}",
                    "efa": (
                        f"{_src}"
                        if _name.startswith("trn1")
                        else f"{SRC_REFERENCE} (16 EFA); 3.2 Tbps EFAv3 = 16 x 200 Gbps (inferred)"
                    ),
                    "expected": "none: Neuron collectives (nccom-test) are not calibrated yet",
                }
            ),
        )
    )

# --- CPU types ---------------------------------------------------------------------------------
# (name, vcpus, memory GiB, network Gbps, burst, EFA interfaces, arch, source)
_CPU = (
    ("c5n.9xlarge", 36, 96, 50, False, 1, "x86_64", SRC_AWS_CO),
    ("c5n.18xlarge", 72, 192, 100, False, 1, "x86_64", SRC_AWS_CO),
    ("c6i.large", 2, 4, 12.5, True, 0, "x86_64", SRC_AWS_CO),
    ("c6i.xlarge", 4, 8, 12.5, True, 0, "x86_64", SRC_AWS_CO),
    ("c6i.2xlarge", 8, 16, 12.5, True, 0, "x86_64", SRC_AWS_CO),
    ("c6i.4xlarge", 16, 32, 12.5, True, 0, "x86_64", SRC_AWS_CO),
    ("c6i.8xlarge", 32, 64, 12.5, False, 0, "x86_64", SRC_AWS_CO),
    ("c6i.12xlarge", 48, 96, 18.75, False, 0, "x86_64", SRC_AWS_CO),
    ("c6i.16xlarge", 64, 128, 25, False, 0, "x86_64", SRC_AWS_CO),
    ("c6i.24xlarge", 96, 192, 37.5, False, 0, "x86_64", SRC_AWS_CO),
    ("c6i.32xlarge", 128, 256, 50, False, 1, "x86_64", SRC_AWS_CO),
    ("c7i.large", 2, 4, 12.5, True, 0, "x86_64", SRC_AWS_CO),
    ("c7i.xlarge", 4, 8, 12.5, True, 0, "x86_64", SRC_AWS_CO),
    ("c7i.2xlarge", 8, 16, 12.5, True, 0, "x86_64", SRC_AWS_CO),
    ("c7i.4xlarge", 16, 32, 12.5, True, 0, "x86_64", SRC_AWS_CO),
    ("c7i.8xlarge", 32, 64, 12.5, False, 0, "x86_64", SRC_AWS_CO),
    ("c7i.12xlarge", 48, 96, 18.75, False, 0, "x86_64", SRC_AWS_CO),
    ("c7i.16xlarge", 64, 128, 25, False, 0, "x86_64", SRC_AWS_CO),
    ("c7i.24xlarge", 96, 192, 37.5, False, 0, "x86_64", SRC_AWS_CO),
    ("c7i.48xlarge", 192, 384, 50, False, 1, "x86_64", SRC_AWS_CO),
    ("c7g.xlarge", 4, 8, 12.5, True, 0, "arm64", SRC_AWS_CO),
    ("c7g.2xlarge", 8, 16, 15, True, 0, "arm64", SRC_AWS_CO),
    # hpc7a: 192 physical cores (SMT off) at every size, 768 GiB, 300 Gbps EFA ("verify" the
    # interface split: two network cards, per-card bandwidth not published).
    ("hpc7a.12xlarge", 24, 768, 300, False, 2, "x86_64", SRC_AWS_HPC),
    ("hpc7a.24xlarge", 48, 768, 300, False, 2, "x86_64", SRC_AWS_HPC),
    ("hpc7a.48xlarge", 96, 768, 300, False, 2, "x86_64", SRC_AWS_HPC),
    ("hpc7a.96xlarge", 192, 768, 300, False, 2, "x86_64", SRC_AWS_HPC),
    ("m5.large", 2, 8, 10, True, 0, "x86_64", SRC_AWS_GP),
    ("m5.xlarge", 4, 16, 10, True, 0, "x86_64", SRC_AWS_GP),
    ("m5.2xlarge", 8, 32, 10, True, 0, "x86_64", SRC_AWS_GP),
    ("m5.4xlarge", 16, 64, 10, True, 0, "x86_64", SRC_AWS_GP),
    ("m5.8xlarge", 32, 128, 10, False, 0, "x86_64", SRC_AWS_GP),
    ("m5.12xlarge", 48, 192, 12, False, 0, "x86_64", SRC_AWS_GP),
    ("m5.16xlarge", 64, 256, 20, False, 0, "x86_64", SRC_AWS_GP),
    ("m5.24xlarge", 96, 384, 25, False, 0, "x86_64", SRC_AWS_GP),
    ("m6i.large", 2, 8, 12.5, True, 0, "x86_64", SRC_AWS_GP),
    ("m6i.xlarge", 4, 16, 12.5, True, 0, "x86_64", SRC_AWS_GP),
    ("m6i.2xlarge", 8, 32, 12.5, True, 0, "x86_64", SRC_AWS_GP),
    ("m6i.4xlarge", 16, 64, 12.5, True, 0, "x86_64", SRC_AWS_GP),
    ("m6i.8xlarge", 32, 128, 12.5, False, 0, "x86_64", SRC_AWS_GP),
    ("m6i.12xlarge", 48, 192, 18.75, False, 0, "x86_64", SRC_AWS_GP),
    ("m6i.16xlarge", 64, 256, 25, False, 0, "x86_64", SRC_AWS_GP),
    ("m6i.24xlarge", 96, 384, 37.5, False, 0, "x86_64", SRC_AWS_GP),
    ("m6i.32xlarge", 128, 512, 50, False, 1, "x86_64", SRC_AWS_GP),
    # Graviton head / login nodes for arm64 clusters (p6e-gb200).
    ("m7g.large", 2, 8, 12.5, True, 0, "arm64", SRC_AWS_GP),
    ("m7g.xlarge", 4, 16, 12.5, True, 0, "arm64", SRC_AWS_GP),
    ("m7g.2xlarge", 8, 32, 15, True, 0, "arm64", SRC_AWS_GP),
    ("m7g.4xlarge", 16, 64, 15, True, 0, "arm64", SRC_AWS_GP),
    ("t3.medium", 2, 4, 5, True, 0, "x86_64", SRC_AWS_GP),
)
for _name, _vcpus, _mem, _net, _burst, _efa, _arch, _src in _CPU:
    _add(
        InstanceType(
            name=_name,
            vcpus=_vcpus,
            memory_gib=_mem,
            arch=_arch,
            network_gbps=_net,
            network_burst=_burst,
            efa_interfaces=_efa,
            efa_gbps_per_interface=(None if _name.startswith("hpc7a") or not _efa else _net / _efa),
            # Burstable (T) instances cannot join a cluster placement group (EC2 user guide).
            placement_group=not _name.startswith("t3."),
            sources=_freeze({"specs": _src}),
        )
    )

CATALOG: Mapping[str, InstanceType] = MappingProxyType({t.name: t for t in CATALOG_ENTRIES})
if len(CATALOG) != len(CATALOG_ENTRIES):  # pragma: no cover - guards against a pasted duplicate
    raise RuntimeError("duplicate instance type in the catalog")

# ---------------------------------------------------------------------------------------------
# Prices: approximate on-demand Linux prices in us-east-1, USD per instance-hour, as listed on
# aws.amazon.com/ec2/pricing/on-demand around PRICES_DATE (after the June 2025 P4/P5 price
# reduction). Approximate by design: for planning, never for billing; Capacity Blocks are priced
# per reservation and Spot below on-demand. "estimate" marks a type without a public on-demand
# price in us-east-1.
# ---------------------------------------------------------------------------------------------
PRICES_DATE = "2025-07-01"
PRICES_REGION = "us-east-1"
PRICES_APPROXIMATE = True

_PRICE_LIST: dict[str, float | tuple[float, str]] = {
    "p6-b200.48xlarge": 113.93,
    "p6-b300.48xlarge": (142.42, "estimate: B300 capacity is sold through Capacity Blocks"),
    "p6e-gb200.36xlarge": (
        72.00,
        "estimate: only sold as UltraServer Capacity Blocks (per-instance share)",
    ),
    "p5en.48xlarge": 63.30,
    "p5e.48xlarge": (60.00, "estimate: mostly sold through Capacity Blocks"),
    "p5.48xlarge": 55.04,
    "p4de.24xlarge": 27.45,
    "p4d.24xlarge": 21.96,
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "g5.8xlarge": 2.448,
    "g5.12xlarge": 5.672,
    "g5.16xlarge": 4.096,
    "g5.24xlarge": 8.144,
    "g5.48xlarge": 16.288,
    "g6.xlarge": 0.8048,
    "g6.2xlarge": 0.9776,
    "g6.8xlarge": 2.0144,
    "g6.12xlarge": 4.6016,
    "g6.16xlarge": 3.3968,
    "g6.24xlarge": 6.6752,
    "g6.48xlarge": 13.3504,
    "g6e.xlarge": 1.861,
    "g6e.2xlarge": 2.242,
    "g6e.8xlarge": 4.5286,
    "g6e.12xlarge": 10.4926,
    "g6e.16xlarge": 7.5777,
    "g6e.24xlarge": 15.0656,
    "g6e.48xlarge": 30.1312,
    "trn1.32xlarge": 21.50,
    "trn1n.32xlarge": 24.78,
    "trn2.48xlarge": (46.00, "estimate: trn2 on-demand is listed in us-east-2, not us-east-1"),
    "c5n.9xlarge": 1.944,
    "c5n.18xlarge": 3.888,
    "m5.large": 0.096,
    "m5.xlarge": 0.192,
    "m5.2xlarge": 0.384,
    "m5.4xlarge": 0.768,
    "m5.8xlarge": 1.536,
    "m5.12xlarge": 2.304,
    "m5.16xlarge": 3.072,
    "m5.24xlarge": 4.608,
    "t3.medium": 0.0416,
}
# Linear families: price per vCPU-hour times vCPUs (AWS prices these sizes linearly).
_PER_VCPU = {"c6i": 0.0425, "c7i": 0.044625, "m6i": 0.048, "c7g": 0.03625, "m7g": 0.0408}
for _t in CATALOG_ENTRIES:
    if _t.family in _PER_VCPU and _t.name not in _PRICE_LIST:
        _PRICE_LIST[_t.name] = round(_PER_VCPU[_t.family] * _t.vcpus, 4)
    if _t.family == "hpc7a":
        # One price for every hpc7a size (the smaller sizes disable cores, not hardware).
        _PRICE_LIST[_t.name] = (7.20, "us-east-2 price: hpc7a is not offered in us-east-1")

PRICES: Mapping[str, Price] = MappingProxyType(
    {
        name: Price(float(value)) if isinstance(value, (int, float)) else Price(*value)
        for name, value in _PRICE_LIST.items()
    }
)


# ---------------------------------------------------------------------------------------------
# Lookups
# ---------------------------------------------------------------------------------------------


def suggestions(name: str) -> list[str]:
    """The catalog name closest to ``name`` (difflib), or an empty list.

    A size typo within a known family ("p5.48xlarg", "p5.32xlarge") is matched against that
    family's sizes only, so the answer stays in the family the user meant.
    """
    name = name.strip().lower()
    family = name.split(".", 1)[0]
    same_family = [n for n in CATALOG if n.split(".", 1)[0] == family]
    if same_family:
        return difflib.get_close_matches(name, same_family, n=1, cutoff=0.0)
    return difflib.get_close_matches(name, list(CATALOG), n=1, cutoff=0.6)


def lookup(name: str) -> InstanceType:
    """The catalog entry for ``name``; raises :class:`UnknownInstanceTypeError` with suggestions."""
    try:
        return CATALOG[name]
    except KeyError:
        raise UnknownInstanceTypeError(name, suggestions(name)) from None


def price(name: str) -> Price | None:
    return PRICES.get(name)


def expected_busbw(name: str, nodes: int, collective: str = "all_reduce") -> float | None:
    """The expected bus bandwidth (GB/s) for ``nodes`` nodes, or None when not calibrated.

    A node count between calibrated ones takes the figure of the next smaller count; above the
    largest it takes the largest count's figure (bus bandwidth per node is flat at scale).
    """
    figures = lookup(name).expected.get(collective)
    if not figures:
        return None
    known = sorted(n for n in figures if n <= nodes)
    if not known:
        return None
    return float(figures[known[-1]])
