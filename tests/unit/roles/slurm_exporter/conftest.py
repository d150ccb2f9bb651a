"""Helpers for the slurm_exporter tests: the daemon as a module, fixtures, a fake Slurm bin dir.

The fake bin dir holds ``sinfo``, ``squeue`` and ``sdiag`` shell scripts. Each appends one line
(its name and arguments) to ``calls.log`` and then does what ``mode/<command>`` says:

* ``ok`` (default) - print ``output/<command>`` (a fixture) and exit 0;
* ``down``         - print ``stderr/<command>`` (the recorded "Unable to contact slurm
                     controller" message) to stderr and exit 1, as Slurm does with slurmctld down;
* ``fail``         - print a message to stderr and exit 2;
* ``hang``         - sleep far longer than any test's timeout (the exporter must kill it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from ..harness import ROOT, executable, load_script

ROLE = ROOT / "roles" / "slurm_exporter"
SCRIPT = ROLE / "files" / "slurm_exporter.py"
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "slurm_exporter"
COMMANDS = ("sinfo", "squeue", "sdiag")


def load_exporter() -> ModuleType:
    """roles/slurm_exporter/files/slurm_exporter.py as a module (a file the role installs)."""
    return load_script(SCRIPT, "slurm_exporter_under_test", keep=True)


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


STUB = """#!/bin/sh
here=$(dirname "$0")
printf '%s\\n' "$(basename "$0") $*" >> "$here/calls.log"
mode=$(cat "$here/mode/{name}" 2>/dev/null || echo ok)
case "$mode" in
  ok) exec cat "$here/output/{name}" ;;
  down) cat "$here/stderr/{name}" >&2; exit 1 ;;
  fail) echo "{name}: error: something broke" >&2; exit 2 ;;
  hang) exec sleep 300 ;;
esac
"""


@dataclass
class FakeSlurm:
    bin_dir: Path

    def calls(self) -> list[str]:
        log = self.bin_dir / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def set_mode(self, command: str, mode: str) -> None:
        (self.bin_dir / "mode" / command).write_text(mode)

    def set_all(self, mode: str) -> None:
        for command in COMMANDS:
            self.set_mode(command, mode)

    def set_output(self, command: str, text: str) -> None:
        (self.bin_dir / "output" / command).write_text(text)


def make_fake_slurm(bin_dir: Path, version: str = "22.05") -> FakeSlurm:
    for sub in ("mode", "output", "stderr"):
        (bin_dir / sub).mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        executable(bin_dir / name, STUB.replace("{name}", name))
        (bin_dir / "stderr" / name).write_text(fixture(f"{name}_22.05_controller_down.stderr"))
    fake = FakeSlurm(bin_dir)
    suffix = "22.05" if version == "22.05" else "24.11_synthesized"
    fake.set_output("sinfo", fixture(f"sinfo_{suffix}.txt"))
    fake.set_output("squeue", fixture(f"squeue_{suffix}.txt"))
    fake.set_output("sdiag", fixture("sdiag_22.05.txt"))
    return fake


@pytest.fixture
def exporter() -> ModuleType:
    return load_exporter()


@pytest.fixture
def fake_slurm(tmp_path: Path) -> FakeSlurm:
    return make_fake_slurm(tmp_path / "bin")
