"""pcluster_cluster_info's main() on pcluster fixtures (no real pcluster, no S3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils import basic
from ansible_collections.xpu.parallelcluster.plugins.module_utils import pcluster_cli as pc
from ansible_collections.xpu.parallelcluster.plugins.modules import pcluster_cluster_info

from tests.unit.plugins.module_utils.test_pcluster_cli import FakePcluster, answer

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core < 2.19
    patch_module_args = None

DEPLOYED = "Region: us-east-1\nImage:\n  Os: ubuntu2204\nScheduling:\n  Scheduler: slurm\n"


class ExitJson(Exception):
    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(result.get("msg"))
        self.result = result


class FailJson(ExitJson):
    pass


@pytest.fixture
def fake(monkeypatch) -> FakePcluster:
    runner = FakePcluster()
    monkeypatch.setattr(pc, "run_command", runner)
    return runner


@pytest.fixture
def warnings(monkeypatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, w: seen.append(w))
    return seen


@pytest.fixture
def run(monkeypatch, tmp_path: Path, fake: FakePcluster):
    def exit_json(self, **kwargs):
        raise ExitJson(kwargs)

    def fail_json(self, msg=None, **kwargs):
        raise FailJson({"msg": msg, "failed": True, **kwargs})

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    exe = tmp_path / "pcluster"
    exe.write_text("#!/bin/sh\nexit 99\n")
    exe.chmod(0o755)

    def runner(check_mode: bool = False, **options) -> dict[str, Any]:
        args = {
            "name": "ml1",
            "region": "us-east-1",
            "pcluster_path": str(exe),
            "_ansible_check_mode": check_mode,
            "_ansible_remote_tmp": str(tmp_path / "remote-tmp"),
            **options,
        }
        try:
            if patch_module_args is not None:
                with patch_module_args(args):
                    pcluster_cluster_info.main()
            else:
                monkeypatch.setattr(
                    basic, "_ANSIBLE_ARGS", json.dumps({"ANSIBLE_MODULE_ARGS": args}).encode()
                )
                pcluster_cluster_info.main()
        except FailJson:
            raise
        except ExitJson as done:
            return done.result
        raise AssertionError("main() returned without exit_json")

    return runner


def existing(fake: FakePcluster) -> None:
    fake.on("describe-cluster", "describe_create_complete")
    fake.on("describe-cluster-instances", "describe_cluster_instances")
    fake.on("describe-compute-fleet", "describe_compute_fleet")


def test_info_of_a_running_cluster(run, fake: FakePcluster) -> None:
    existing(fake)
    result = run(check_mode=True)
    assert result["changed"] is False
    assert result["exists"] is True
    assert result["status"] == "CREATE_COMPLETE"
    assert result["head_node"] == {
        "instance_id": "i-0123456789abcdef0",
        "instance_type": "m6i.xlarge",
        "private_ip": "10.0.0.10",
        "public_ip": "203.0.113.10",
        "state": "running",
        "launch_time": "2026-01-05T10:04:00.000Z",
    }
    assert result["login_nodes"] == [
        {
            "pool_name": "login",
            "status": "active",
            "address": "ml1-login-0123456789.elb.us-east-1.amazonaws.com",
            "scheme": "internet-facing",
            "healthy_nodes": 1,
            "unhealthy_nodes": 0,
        }
    ]
    queues = result["instances_by_queue"]
    assert {q: [i["instance_id"] for i in v] for q, v in queues.items()} == {
        "cpu": ["i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2"],
        "gpu": ["i-0ccccccccccccccc3"],
    }
    assert queues["cpu"][0]["private_ip"] == "10.0.16.11"
    assert result["compute_fleet"] == {
        "status": "RUNNING",
        "last_status_updated_time": "2026-01-05T10:16:00.000Z",
    }
    assert "config" not in result
    assert fake.operations() == [
        "describe-cluster",
        "describe-cluster-instances",
        "describe-compute-fleet",
    ]
    assert fake.argv_of("describe-cluster")[-2:] == ["--region", "us-east-1"]


def test_info_of_a_missing_cluster(run, fake: FakePcluster) -> None:
    fake.on("describe-cluster", "describe_not_found")
    result = run()
    assert result == {"changed": False, "exists": False, "status": None}


def test_info_with_the_deployed_config(run, fake: FakePcluster, monkeypatch) -> None:
    existing(fake)
    urls: list[str] = []

    def fetch(client, url):
        urls.append(url)
        return DEPLOYED

    monkeypatch.setattr(pc, "fetch_deployed_config", fetch)
    result = run(include_config=True)
    assert result["config"] == {
        "Region": "us-east-1",
        "Image": {"Os": "ubuntu2204"},
        "Scheduling": {"Scheduler": "slurm"},
    }
    assert "X-Amz-Signature" in urls[0]


def test_unreadable_config_is_a_warning(run, fake: FakePcluster, monkeypatch, warnings) -> None:
    existing(fake)

    def denied(client, url):
        raise ValueError("describe-cluster gave no configuration URL (NOT_AVAILABLE)")

    monkeypatch.setattr(pc, "fetch_deployed_config", denied)
    result = run(include_config=True)
    assert result["config"] is None
    assert "deployed config not read from S3" in warnings[0]
    assert result["status"] == "CREATE_COMPLETE"


def test_fleet_status_falls_back_to_describe_cluster(run, fake: FakePcluster, warnings) -> None:
    fake.on("describe-cluster", "describe_create_complete")
    fake.on("describe-cluster-instances", "describe_cluster_instances")
    fake.on("describe-compute-fleet", answer("create_bad_yaml"))
    result = run()
    assert result["compute_fleet"] == {"status": "RUNNING", "last_status_updated_time": None}
    assert "describe-compute-fleet failed" in warnings[0]


def test_pcluster_errors_fail_with_the_command(run, fake: FakePcluster) -> None:
    fake.on("describe-cluster", answer("create_bad_yaml"))
    with pytest.raises(FailJson) as failed:
        run()
    result = failed.value.result
    assert result["msg"].startswith("cluster ml1: pcluster describe-cluster: Bad Request")
    assert result["pcluster_command"][1] == "describe-cluster"
    assert result["rc"] == 1
