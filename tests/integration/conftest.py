"""Integration tests run against one shared local lab (scripts/lab.sh).

The first test that needs the lab brings it up through the real entry point,
`scripts/lab.sh up`; every later test reuses it. Tests marked ``lab_teardown``
run last, whatever their file name, because they take the lab down.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fence import assert_loopback_endpoint

ROOT = Path(__file__).resolve().parents[2]
LAB_SH = ROOT / "scripts" / "lab.sh"
CLUSTER = "xpu-lab"
HEAD = f"{CLUSTER}-head"
LOGIN = f"{CLUSTER}-login"
COMPUTE = [f"{CLUSTER}-cpu-st-c6i-1", f"{CLUSTER}-cpu-st-c6i-2"]
NODES = [HEAD, LOGIN, *COMPUTE]


def run(argv: list[str], timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command from the repository root with the test environment."""
    proc = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=os.environ.copy()
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}"
            f"\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def lab(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    return run([str(LAB_SH), *args], timeout=timeout, check=check)


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["podman", *args], timeout=120, check=check)


def on_node(node: str, *argv: str, user: str = "root", check: bool = True):
    return podman("exec", "-u", user, "-w", "/tmp", node, *argv, check=check)


def containers_started_at() -> dict[str, str]:
    out = podman("inspect", "--format", "{{.Name}} {{.Id}} {{.State.StartedAt}}", *NODES).stdout
    return {line.split()[0]: " ".join(line.split()[1:]) for line in out.splitlines()}


@dataclass
class Lab:
    up_seconds: float
    up_output: str


# Figures the session measured, printed in the closing summary.
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session")
def lab_up() -> Lab:
    """Bring the lab up once for the whole session (cold or warm)."""
    started = time.monotonic()
    proc = lab("up")
    seconds = time.monotonic() - started
    built = "building node image" in proc.stdout
    TIMINGS["lab up, first (image built)" if built else "lab up, first (image cached)"] = seconds
    return Lab(up_seconds=seconds, up_output=proc.stdout)


def pytest_terminal_summary(terminalreporter) -> None:
    if TIMINGS:
        terminalreporter.section("lab timings")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name}: {seconds:.1f}s")


def plain(value):
    """ansible-inventory marks templated values as {"__ansible_unsafe": v}; unwrap them."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def inventory_list(source: str) -> dict:
    """`ansible-inventory --list` of an inventory source, as plain data."""
    proc = run(
        [str(ROOT / ".venv/bin/ansible-inventory"), "-i", source, "--list"],
        timeout=120,
    )
    return plain(json.loads(proc.stdout))


def emulator_answers(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url + "/moto-api/data.json", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def emulator() -> str:
    """The local AWS emulator's URL (AWS_ENDPOINT_URL, loopback only).

    Tests that need AWS but no lab nodes use this: an emulator already answering at
    AWS_ENDPOINT_URL is used as it is; otherwise the lab is brought up, which starts it.
    """
    url = assert_loopback_endpoint(os.environ["AWS_ENDPOINT_URL"])
    if not emulator_answers(url):
        lab("up")
    return url


LAB_VARS = "@playbooks/lab/vars/lab.yml"
STATE = ROOT / ".cache" / "state" / CLUSTER


def playbook(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """ansible-playbook from the repository root with the lab's inventory."""
    return run(
        [str(ROOT / ".venv/bin/ansible-playbook"), "-i", "inventories/lab", *args],
        timeout=timeout,
        check=check,
    )


@pytest.fixture(scope="session")
def lab_infra(lab_up: Lab) -> dict:
    """The lab's infra stage in the emulator (as `make demo` runs it); returns its outputs."""
    playbook("-e", LAB_VARS, "playbooks/infra.yml", "playbooks/lab/emulator-gaps.yml")
    return json.loads((STATE / "infra-outputs.json").read_text())


@pytest.fixture(scope="session")
def inventory(lab_up: Lab) -> dict:
    return inventory_list("inventories/lab")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Stable: keep every other test's order, move teardown tests to the end.
    items.sort(key=lambda item: item.get_closest_marker("lab_teardown") is not None)
