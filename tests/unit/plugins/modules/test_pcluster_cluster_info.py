"""pcluster_cluster_info's main() on pcluster fixtures (no real pcluster, no S3: the module's S3
client is a stand-in from ``aws_clients``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible_collections.xpu.parallelcluster.plugins.module_utils import pcluster_cli as pc
from ansible_collections.xpu.parallelcluster.plugins.modules import pcluster_cluster_info

from tests.unit.plugins.module_utils.test_pcluster_cli import FakePcluster, answer

DEPLOYED = "Region: us-east-1\nImage:\n  Os: ubuntu2204\nScheduling:\n  Scheduler: slurm\n"


@pytest.fixture
def run(run_module, pcluster_exe: Path, fake: FakePcluster):
    """pcluster_cluster_info's main() for cluster ml1 with ``options``, on the fake pcluster."""

    def runner(check_mode: bool = False, **options):
        args = {"name": "ml1", "region": "us-east-1", "pcluster_path": str(pcluster_exe), **options}
        return run_module(pcluster_cluster_info.main, args, check=check_mode)

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


def test_info_with_the_deployed_config(run, fake: FakePcluster, monkeypatch, aws_clients) -> None:
    existing(fake)
    urls: list[str] = []

    def fetch(client, url):
        assert client is aws_clients["s3"]
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
    assert list(aws_clients) == ["s3"]


def test_unreadable_config_is_a_warning(
    run, fake: FakePcluster, monkeypatch, warnings, aws_clients
) -> None:
    existing(fake)

    def denied(client, url):
        assert client is aws_clients["s3"]
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
    result = run()
    assert result.failed
    assert result["msg"].startswith("cluster ml1: pcluster describe-cluster: Bad Request")
    assert result["pcluster_command"][1] == "describe-cluster"
    assert result["rc"] == 1
