"""What the role playbook tests share: ansible-playbook runs against fake nodes on this machine.

A role test writes an inventory whose every host is one scenario (``ansible_connection: local``
and this interpreter, see ``local_inventory``) and a playbook (``role_playbook``), then runs them
with ``Lab.run`` as often as it needs (first run, second run for idempotence, check mode). Each
run's JSON report (the ``ansible.posix.json`` callback) comes back as a ``Run``, which answers what
a test asks of it: the results of a task for a host, whether it ran or was skipped, what failed,
what changed, the status fact a role recorded.

A role whose tests need more subclasses ``Run`` (its status fact, the failures to leave out, the
message to read from a failed result) or ``Lab`` (the ``Run`` class, timeout, pipelining,
environment, extra fields). The small helpers below (``executable``, ``log_call`` / ``calls``,
``load_script``, ``free_port``) are what the roles' stand-ins and fake nodes are made of.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import ClassVar, Self

import yaml

ROOT = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = ROOT / ".venv" / "bin" / "ansible-playbook"


@dataclass
class Run:
    """One ansible-playbook run: its exit status, its JSON report and its stderr."""

    rc: int
    output: dict
    stderr: str

    # What status() reads: the fact the role records and (part of) the recording task's name.
    status_fact: ClassVar[str] = ""
    status_task: ClassVar[str] = "record what was found"
    # Tasks (part of their names) whose failures failure() leaves out: a later task reports them.
    quiet_failures: ClassVar[tuple[str, ...]] = ()

    @property
    def stats(self) -> dict:
        return self.output["stats"]

    def _tasks(self, host: str) -> Iterator[tuple[str, dict]]:
        """(task name, result) of every task reached for ``host``, in order."""
        for play in self.output["plays"]:
            for item in play["tasks"]:
                if host in item["hosts"]:
                    yield item["task"]["name"], item["hosts"][host]

    def results(self, host: str, task: str) -> list[dict]:
        """Results of every task whose name contains ``task``, for ``host``, in order."""
        return [result for name, result in self._tasks(host) if task in name]

    def ran(self, host: str, task: str) -> list[dict]:
        """Like results(), without the results of skipped tasks."""
        return [r for r in self.results(host, task) if not r.get("skipped")]

    def skipped(self, host: str, task: str) -> bool:
        """The task was reached for ``host`` and skipped every time."""
        results = self.results(host, task)
        return bool(results) and all(r.get("skipped") for r in results)

    def facts(self, host: str, task: str, fact: str) -> list:
        """Every value of ``fact`` that tasks named like ``task`` set for ``host``, in order."""
        return [r["ansible_facts"][fact] for r in self.ran(host, task) if "ansible_facts" in r]

    def status(self, host: str) -> dict:
        """The last status fact (``status_fact``) the role recorded for ``host``."""
        facts = self.facts(host, self.status_task, self.status_fact)
        assert facts, f"{host}: no {self.status_fact} recorded\n{self.stderr[-2000:]}"
        return facts[-1]

    def message(self, result: dict) -> str:
        """What failure() reports of one failed result."""
        return str(result.get("msg", ""))

    def failure(self, host: str) -> str:
        """The messages of every failed task for ``host`` (but ``quiet_failures``), joined."""
        return " | ".join(
            self.message(result)
            for name, result in self._tasks(host)
            if result.get("failed") and not any(quiet in name for quiet in self.quiet_failures)
        )

    def changed_tasks(self, host: str) -> list[str]:
        return [name for name, result in self._tasks(host) if result.get("changed")]

    def changed(self) -> dict[str, int]:
        """Host -> number of changed tasks, for the hosts where anything changed."""
        return {h: s["changed"] for h, s in self.stats.items() if s["changed"]}


@dataclass
class Lab:
    """The fake nodes of one role test (one directory each under ``tmp``), their inventory and
    the playbook that applies the role to them."""

    tmp: Path
    inventory: Path
    playbook: Path

    # What run() returns; how long a run may take; pipelining: run modules over stdin, with no
    # temporary files (faster, same result on the local connection).
    run_class: ClassVar[type[Run]] = Run
    timeout: ClassVar[int] = 300
    pipelining: ClassVar[bool] = False

    @classmethod
    def create(cls, tmp: Path, inventory: dict, playbook: str, *args, **kwargs) -> Self:
        """Write ``inventory`` (see local_inventory) and ``playbook`` (YAML text) under ``tmp``;
        ``args`` and ``kwargs`` are the subclass's own fields."""
        (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory))
        (tmp / "playbook.yml").write_text(playbook)
        return cls(tmp, tmp / "inventory.yml", tmp / "playbook.yml", *args, **kwargs)

    def node(self, name: str) -> Path:
        return self.tmp / name

    def command(self, *args: str) -> list[str]:
        return [
            str(ANSIBLE_PLAYBOOK),
            *("-i", str(self.inventory), *args),
            str(self.playbook),
        ]

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".cache" / "collections"),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "ANSIBLE_NOCOLOR": "1",
            **({"ANSIBLE_PIPELINING": "1"} if self.pipelining else {}),
        }

    def report(self, returncode: int, stdout: str, stderr: str) -> Run:
        """The Run of a finished ansible-playbook process (which must have printed its report)."""
        assert stdout.strip(), stderr[-3000:]
        return self.run_class(returncode, json.loads(stdout), stderr)

    def run(self, *args: str) -> Run:
        proc = subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=self.timeout,
            check=False,
        )
        return self.report(proc.returncode, proc.stdout, proc.stderr)


def local_inventory(
    hosts: dict[str, dict] | None = None,
    *,
    children: dict[str, dict] | None = None,
    group_vars: dict | None = None,
) -> dict:
    """An inventory of fake nodes on this machine: every host over the local connection, with
    this interpreter (and ``group_vars``), listed in ``hosts`` or in the groups of ``children``."""
    group: dict = {
        "vars": {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            **(group_vars or {}),
        }
    }
    if hosts is not None:
        group["hosts"] = hosts
    if children is not None:
        group["children"] = children
    return {"all": group}


def role_playbook(role: str, name: str | None = None, **play) -> str:
    """A playbook of one play that applies xpu.parallelcluster.<role> to every host without
    gathering facts; ``play``: more keywords of the play (environment, handlers...)."""
    return yaml.safe_dump(
        [
            {
                "name": name or f"Role {role} on fake nodes",
                "hosts": "all",
                "gather_facts": False,
                "roles": [{"role": f"xpu.parallelcluster.{role}"}],
                **play,
            }
        ],
        sort_keys=False,
    )


def executable(path: Path, text: str) -> Path:
    """An executable file (a stand-in script) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def log_call(node: Path, name: str) -> str:
    """Shell lines for a stand-in ``name``: record its arguments in <node>/calls/<name>.log."""
    return f'mkdir -p {node}/calls; echo "$*" >> {node}/calls/{name}.log\n'


def calls(node: Path, name: str) -> list[str]:
    """The argument lines a stand-in recorded (log_call), in order."""
    log = node / "calls" / f"{name}.log"
    return log.read_text().splitlines() if log.exists() else []


def load_script(path: Path, name: str, *, keep: bool = False) -> ModuleType:
    """A script a role ships (a file, not a package) as a module called ``name``.

    ``keep``: load it once and keep it in sys.modules (the same module on every call).
    """
    if keep and name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    if keep:
        sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
