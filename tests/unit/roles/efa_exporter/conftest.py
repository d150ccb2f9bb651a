"""Helpers for the efa_exporter tests: fake sysfs trees with EFA hw_counters and scrapes.

``roles/efa_exporter/files/efa_exporter.py`` is a file the role ships, not a package: the tests
load it by path and run its collector in-process against trees built under tmp_path, laid out as
sysfs lays them out (``class/infiniband/<dev>`` links to
``devices/pci0000:00/<bdf>/infiniband/<dev>``, whose ``device`` links to the PCI function).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ..harness import ROOT, load_script

ROLE = ROOT / "roles" / "efa_exporter"
SCRIPT = ROLE / "files" / "efa_exporter.py"
DASHBOARD = ROLE / "files" / "dashboards" / "efa.json"
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "efa_exporter"

AMAZON = "0x1d0f"
MELLANOX = "0x15b3"


def load_exporter() -> ModuleType:
    return load_script(SCRIPT, "efa_exporter")


def recorded_counters(name: str) -> dict[str, int]:
    """A `grep . <dir>/*` listing of a hw_counters directory: {file name: value}."""
    counters = {}
    for line in (FIXTURES / name).read_text().splitlines():
        path, _, value = line.rpartition(":")
        counters[path.rsplit("/", 1)[1]] = int(value)
    return counters


PORT_COUNTERS = recorded_counters("grep_port_hw_counters.txt")
DEVICE_COUNTERS = recorded_counters("grep_device_hw_counters.txt")


def efa_names(count: int) -> list[str]:
    """EFA device names in the rdmap<bus>s<slot> form: p4d-like for up to 4, else p5-like."""
    if count <= 4:
        return ["rdmap16s27", "rdmap32s27", "rdmap144s27", "rdmap160s27"][:count]
    return [f"rdmap{bus}s0" for bus in range(79, 79 + count)]


def expected_value(counters: dict[str, int], name: str, index: int) -> int:
    """The value device number ``index`` holds: distinct for every device (lifespan stays)."""
    base = counters[name]
    return base if name == "lifespan" else base + index * 1_000_003


@dataclass
class Tree:
    root: Path
    efa: list[str]
    other: list[str]

    def device_dir(self, name: str) -> Path:
        return (self.root / "class" / "infiniband" / name).resolve()

    def port_file(self, device: str, counter: str, port: str = "1") -> Path:
        return self.device_dir(device) / "ports" / port / "hw_counters" / counter

    def device_file(self, device: str, counter: str) -> Path:
        return self.device_dir(device) / "hw_counters" / counter


def make_sysfs(
    root: Path,
    efa: int | list[str],
    mellanox: int = 0,
    states: dict[str, str] | None = None,
) -> Tree:
    """A sysfs tree with EFA devices (real counter files and values) and Mellanox ones.

    ``states`` maps device names to their port 1 state (default ``4: ACTIVE``).
    """
    names = efa if isinstance(efa, list) else efa_names(efa)
    devices = [(n, AMAZON) for n in names] + [(f"mlx5_{i}", MELLANOX) for i in range(mellanox)]
    klass = root / "class" / "infiniband"
    klass.mkdir(parents=True, exist_ok=True)
    for index, (name, vendor) in enumerate(devices):
        pci = root / "devices" / "pci0000:00" / f"0000:{index // 32:02x}:{index % 32:02x}.0"
        node = pci / "infiniband" / name
        (node / "hw_counters").mkdir(parents=True)
        (node / "ports" / "1" / "hw_counters").mkdir(parents=True)
        (pci / "vendor").write_text(vendor + "\n")
        (node / "device").symlink_to(pci)
        state = (states or {}).get(name, "4: ACTIVE")
        (node / "ports" / "1" / "state").write_text(state + "\n")
        for counter in PORT_COUNTERS:
            value = expected_value(PORT_COUNTERS, counter, index)
            (node / "ports" / "1" / "hw_counters" / counter).write_text(f"{value}\n")
        for counter in DEVICE_COUNTERS:
            value = expected_value(DEVICE_COUNTERS, counter, index)
            (node / "hw_counters" / counter).write_text(f"{value}\n")
        (klass / name).symlink_to(node)
    return Tree(root=root, efa=names, other=[d for d, v in devices if v != AMAZON])


@dataclass
class Scrape:
    text: str
    families: dict

    def samples(self, name: str) -> dict[tuple, float]:
        """{sorted label items: value} of every sample called ``name``."""
        found = {}
        for family in self.families.values():
            for sample in family.samples:
                if sample.name == name:
                    found[tuple(sorted(sample.labels.items()))] = sample.value
        return found

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples(name).get(tuple(sorted(labels.items())))

    def type_of(self, family: str) -> str:
        return self.families[family].type

    def errors(self) -> dict[str, float]:
        return {
            dict(k)["kind"]: v for k, v in self.samples("efa_exporter_read_errors_total").items()
        }


def scrape(registry) -> Scrape:
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return Scrape(text=text, families=families)
