"""One harness for running a module's main() in-process, shared by the module unit tests.

``run_module(main, args, check=..., diff=...)`` runs ``main()`` under ansible-core's
``patch_module_args`` and reads the result the way Ansible does: the JSON that exit_json or
fail_json prints before ``sys.exit``. That path is the same for ``AnsibleModule`` and amazon.aws's
``AnsibleAWSModule`` (which hands both calls to its ``AnsibleModule``), and the result carries
what ansible-core adds on the way out (warnings, deprecations), JSON-encoded as a controller
would see it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import pytest
from ansible.module_utils import basic
from ansible.module_utils.common import warnings as module_warnings
from ansible.module_utils.testing import patch_module_args
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import (
    AWSRetry,
    RetryingBotoClientWrapper,
)
from ansible_collections.xpu.parallelcluster.plugins.module_utils import pcluster_cli as pc

from tests.unit.plugins.module_utils.test_pcluster_cli import FakePcluster


class ModuleResult(dict[str, Any]):
    """A module's result as Ansible receives it, without the ``invocation`` echo of its args."""

    @property
    def failed(self) -> bool:
        """True when the module ended in fail_json."""
        return self.get("failed") is True


class RunModule(Protocol):
    def __call__(
        self,
        main: Callable[[], None],
        args: dict[str, Any],
        *,
        check: bool = False,
        diff: bool = False,
    ) -> ModuleResult: ...


@pytest.fixture
def run_module(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> RunModule:
    """Run a module's ``main`` with ``args`` (plus check and diff mode); return its result.

    Each run starts with empty module warning and deprecation stores, as a fresh module process
    would, and keeps its remote tmp under ``tmp_path``.
    """

    def run(
        main: Callable[[], None],
        args: dict[str, Any],
        *,
        check: bool = False,
        diff: bool = False,
    ) -> ModuleResult:
        monkeypatch.setattr(module_warnings, "_global_warnings", {})
        monkeypatch.setattr(module_warnings, "_global_deprecations", {})
        module_args = {
            "_ansible_remote_tmp": str(tmp_path / "remote-tmp"),
            **args,
            "_ansible_check_mode": check,
            "_ansible_diff": diff,
        }
        capsys.readouterr()  # only what this run prints
        with patch_module_args(module_args), pytest.raises(SystemExit):
            main()
        result = ModuleResult(json.loads(capsys.readouterr().out))
        result.pop("invocation", None)
        return result

    return run


@pytest.fixture
def warnings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The messages a module passes to ``module.warn``, in order, for either module class."""
    seen: list[str] = []

    def warn(self: Any, warning: str) -> None:
        seen.append(warning)

    monkeypatch.setattr(basic.AnsibleModule, "warn", warn)
    monkeypatch.setattr(AnsibleAWSModule, "warn", warn)
    return seen


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakePcluster:
    """A scripted pcluster in place of ``pcluster_cli.run_command``."""
    runner = FakePcluster()
    monkeypatch.setattr(pc, "run_command", runner)
    return runner


@pytest.fixture
def pcluster_exe(tmp_path: Path) -> Path:
    """An executable ``pcluster`` for ``pcluster_path``; the fake answers in its place."""
    exe = tmp_path / "bin" / "pcluster"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\nexit 99\n")
    exe.chmod(0o755)
    return exe


@pytest.fixture
def aws_clients(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Stand-ins for every ``AnsibleAWSModule.client(service)``, by service, made on first use.

    No boto3 client is built, so no credential lookup runs: without credentials in the
    environment botocore would look for them on the network (the instance metadata service,
    through the proxy the fence sets). Tests hand the stand-in to whatever they fake in its
    place and can check that the module passed it on.
    """
    made: dict[str, Any] = {}

    def client(self: Any, service: str, retry_decorator: Any = None, **kwargs: Any) -> Any:
        return made.setdefault(service, SimpleNamespace(service=service))

    monkeypatch.setattr(AnsibleAWSModule, "client", client)
    return made


ROOT = Path(__file__).resolve().parents[4]


@contextlib.contextmanager
def stubbed_client(monkeypatch: pytest.MonkeyPatch, service: str) -> Iterator[Any]:
    """An AWS client of ``service`` behind a botocore Stubber, handed to every
    ``AnsibleAWSModule.client()`` call as amazon.aws would wrap it (retries, no delay). Yields
    ``(stubber, raw client)``; every scripted response must have been used when the block ends."""
    import boto3
    from botocore.stub import Stubber

    raw = boto3.client(
        service,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    wrapped = RetryingBotoClientWrapper(raw, AWSRetry.jittered_backoff(retries=1, delay=0))

    def fake_client(self, name, retry_decorator=None, **kwargs):
        assert name == service
        return wrapped

    monkeypatch.setattr(AnsibleAWSModule, "client", fake_client)
    with Stubber(raw) as stubber:
        yield stubber, raw
        stubber.assert_no_pending_responses()


def ansible_doc(module: str) -> subprocess.CompletedProcess:
    """``ansible-doc xpu.parallelcluster.<module>`` with the project's collections."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"))
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-doc"), f"xpu.parallelcluster.{module}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
