"""pcluster_cluster's main() flows on pcluster fixtures, with a fake clock and no real pcluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible_collections.xpu.parallelcluster.plugins.module_utils import pcluster_cli as pc
from ansible_collections.xpu.parallelcluster.plugins.modules import pcluster_cluster

from tests.unit.plugins.module_utils.test_pcluster_cli import (
    Answer,
    FakeClock,
    FakePcluster,
    answer,
    fleet,
)

CONFIG = """\
Region: us-east-1
Image:
  Os: ubuntu2204
HeadNode:
  InstanceType: m6i.xlarge
  Networking:
    SubnetId: subnet-0123456789abcdef0
Scheduling:
  Scheduler: slurm
  SlurmQueues:
    - Name: cpu
      ComputeResources:
        - Name: c6i
          InstanceType: c7i.xlarge
          MinCount: 0
          MaxCount: 4
      Networking:
        SubnetIds: [subnet-0fedcba9876543210]
"""


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake_clock = FakeClock()
    monkeypatch.setattr(pc, "Clock", lambda: fake_clock)
    return fake_clock


@pytest.fixture
def run(run_module, tmp_path: Path, pcluster_exe: Path, fake: FakePcluster, clock: FakeClock):
    """pcluster_cluster's main() for cluster ml1 from ``run.config``; returns its result."""
    config = tmp_path / "ml1.yaml"
    config.write_text(CONFIG)

    def runner(check_mode: bool = False, diff: bool = False, **options):
        args = {
            "name": "ml1",
            "region": "us-east-1",
            "config": str(config),
            "pcluster_path": str(pcluster_exe),
            "poll_interval": 30,
            "_ansible_keep_remote_files": False,
            **options,
        }
        args = {k: v for k, v in args.items() if v is not None}
        return run_module(pcluster_cluster.main, args, check=check_mode, diff=diff)

    runner.config = config
    return runner


def failure_logs(fake: FakePcluster, stack_events: str = "get_cluster_stack_events") -> None:
    """What the module reads after a failure: the stack's events, then a node's log tail."""
    fake.on("get-cluster-stack-events", stack_events)
    fake.on("list-cluster-log-streams", "list_cluster_log_streams")
    fake.on("get-cluster-log-events", "get_cluster_log_events")


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


# --------------------------------------------------------------------------- create


def test_create_and_wait(run, fake: FakePcluster, clock: FakeClock) -> None:
    fake.on(
        "describe-cluster",
        "describe_not_found",
        "describe_create_in_progress",
        "describe_create_in_progress",
        "describe_create_in_progress",
        "describe_create_complete",
    )
    fake.on("create-cluster", "create_cluster")
    result = run(suppress_validators=["type:InstanceTypeBaseAMICompatibleValidator"])
    assert result["changed"] is True
    assert result["status"] == "CREATE_COMPLETE"
    assert result["cluster"]["headNode"]["privateIpAddress"] == "10.0.0.10"
    assert result["validation_messages"][0]["type"] == "AmiOsCompatibleValidator"
    create = fake.argv_of("create-cluster")
    assert flag(create, "--cluster-configuration") == str(run.config)
    assert flag(create, "--dryrun") == "false"
    assert flag(create, "--rollback-on-failure") == "true"
    assert flag(create, "--suppress-validators") == "type:InstanceTypeBaseAMICompatibleValidator"
    assert flag(create, "--region") == "us-east-1"
    assert clock.sleeps == [30, 30, 30]
    assert result["progress"] == [
        "+0s cluster ml1: create-cluster accepted (CREATE_IN_PROGRESS)",
        "+0s cluster ml1: CREATE_IN_PROGRESS, fleet UNKNOWN",
        "+90s cluster ml1: CREATE_COMPLETE, fleet RUNNING",
    ]


def test_create_without_wait_returns_after_pcluster_accepts(run, fake: FakePcluster) -> None:
    fake.on("describe-cluster", "describe_not_found", "describe_create_in_progress")
    fake.on("create-cluster", "create_cluster")
    result = run(wait=False, rollback_on_failure=False)
    assert result["changed"] is True
    assert result["status"] == "CREATE_IN_PROGRESS"
    assert flag(fake.argv_of("create-cluster"), "--rollback-on-failure") == "false"


def test_create_from_config_content(run, fake: FakePcluster) -> None:
    seen: list[str] = []

    def dry_run(argv: list[str]) -> Answer:
        path = Path(flag(argv, "--cluster-configuration"))
        seen.append(path.read_text())
        seen.append(oct(path.stat().st_mode & 0o777))
        return answer("create_dryrun_ok")

    fake.on("describe-cluster", "describe_not_found")
    fake.on("create-cluster", dry_run)
    result = run(check_mode=True, config=None, config_content=CONFIG)
    assert result["changed"] is True
    assert seen == [CONFIG, "0o600"]


def test_create_failure_reports_failures_stack_event_and_log_tail(run, fake: FakePcluster) -> None:
    fake.on(
        "describe-cluster",
        "describe_not_found",
        "describe_create_in_progress",
        "describe_create_failed",
    )
    fake.on("create-cluster", "create_cluster")
    failure_logs(fake)
    result = run(rollback_on_failure=False, log_tail_lines=3)
    assert result.failed
    msg = result["msg"]
    assert msg.startswith(
        "cluster ml1: CREATE_FAILED: HeadNodeBootstrapFailure: Failed to set up the head node.; "
        "first failed resource HeadNodeWaitCondition202601051000"
    )
    assert "; head node log ip-10-0-0-10.i-0123456789abcdef0.cfn-init: " in msg
    assert "Unhandled exception during build: Command chef failed; fix the cause" in msg
    assert "the failed cluster must be deleted first (state: absent)" in msg
    assert result["failures"] == [
        {
            "failureCode": "HeadNodeBootstrapFailure",
            "failureReason": "Failed to set up the head node.",
        }
    ]
    assert result["failed_resource"]["resource_type"] == "AWS::CloudFormation::WaitCondition"
    assert result["log_stream"] == "ip-10-0-0-10.i-0123456789abcdef0.cfn-init"
    assert len(result["log_tail"]) == 3
    assert result["status"] == "CREATE_FAILED"
    assert flag(fake.argv_of("get-cluster-log-events"), "--limit") == "3"
    assert (
        flag(fake.argv_of("get-cluster-log-events"), "--log-stream-name")
        == "ip-10-0-0-10.i-0123456789abcdef0.cfn-init"
    )


def test_create_wait_ends_at_the_deadline(run, fake: FakePcluster, clock: FakeClock) -> None:
    fake.on("describe-cluster", "describe_not_found")
    fake.on("describe-cluster", "describe_create_in_progress", sticky=True)
    fake.on("create-cluster", "create_cluster")
    result = run(wait_timeout=100, poll_interval=30)
    assert result.failed
    assert "still CREATE_IN_PROGRESS after 100s" in result["msg"]
    assert "re-run to keep waiting" in result["msg"]
    assert sum(clock.sleeps) == 100


def test_check_mode_create_is_a_dry_run(run, fake: FakePcluster, warnings) -> None:
    fake.on("describe-cluster", "describe_not_found")
    fake.on("create-cluster", "create_dryrun_warnings")
    result = run(check_mode=True, diff=True)
    assert [w.split(":", 2)[1].strip() for w in warnings] == [
        "CustomAmiTagValidator",
        "AmiOsCompatibleValidator",
    ]
    assert result["changed"] is True
    assert result["cluster"] is None
    assert "would be created (Request would have succeeded" in result["msg"]
    assert [m["level"] for m in result["validation_messages"]] == ["WARNING", "WARNING"]
    assert flag(fake.argv_of("create-cluster"), "--dryrun") == "true"
    assert fake.operations() == ["describe-cluster", "create-cluster"]
    assert result["diff"][0]["before"] == ""
    assert result["diff"][0]["after"] == CONFIG


def test_check_mode_create_reports_validation_errors(run, fake: FakePcluster) -> None:
    fake.on("describe-cluster", "describe_not_found")
    fake.on("create-cluster", "create_dryrun_efa")
    result = run(check_mode=True)
    assert result.failed
    assert (
        "failed ParallelCluster validation: [ERROR] EfaValidator: Instance type " in (result["msg"])
    )
    assert [m["type"] for m in result["validation_messages"]] == [
        "EfaValidator",
        "EfaPlacementGroupValidator",
    ]
    assert result["changed"] is False


# --------------------------------------------------------------------------- update


def test_no_change_when_pcluster_finds_none(run, fake: FakePcluster) -> None:
    fake.on("describe-cluster", "describe_create_complete")
    fake.on("update-cluster", "update_no_changes")
    result = run()
    assert result["changed"] is False
    assert result["msg"] == "cluster ml1 is up to date"
    assert result["status"] == "CREATE_COMPLETE"
    assert fake.operations() == ["describe-cluster", "update-cluster"]
    assert flag(fake.argv_of("update-cluster"), "--dryrun") == "true"


def test_update_needing_fleet_stop_is_refused_with_the_changes(run, fake: FakePcluster) -> None:
    fake.on("describe-cluster", "describe_create_complete")
    fake.on("update-cluster", "update_dryrun_fleet_stop")
    result = run()
    assert result.failed
    assert result["msg"].startswith(
        "cluster ml1: the update needs the compute fleet stopped for: "
        "Scheduling.SlurmQueues[cpu].ComputeResources[c6i].InstanceType "
        "(c6i.xlarge -> c7i.xlarge); set allow_fleet_restart: true"
    )
    assert [r["update_policy"] for r in result["change_set"]] == ["SUPPORTED", "COMPUTE_FLEET_STOP"]
    assert fake.operations() == ["describe-cluster", "update-cluster"]


def test_update_with_fleet_restart_stops_updates_and_starts(
    run, fake: FakePcluster, clock: FakeClock
) -> None:
    fake.on(
        "describe-cluster",
        "describe_create_complete",
        "describe_update_in_progress",
        "describe_update_complete",
    )
    fake.on("update-cluster", "update_dryrun_fleet_stop", "update_cluster")
    fake.on(
        "update-compute-fleet",
        answer("update_compute_fleet", status="STOP_REQUESTED"),
        answer("update_compute_fleet", status="START_REQUESTED"),
    )
    fake.on(
        "describe-compute-fleet",
        fleet("STOPPING"),
        fleet("STOPPED"),
        fleet("STARTING"),
        fleet("RUNNING"),
    )
    result = run(allow_fleet_restart=True)
    assert result["changed"] is True
    assert result["fleet_restart"] is True
    assert result["status"] == "UPDATE_COMPLETE"
    assert fake.operations() == [
        "describe-cluster",
        "update-cluster",  # dry run: refused until the fleet stops
        "update-compute-fleet",
        "describe-compute-fleet",
        "describe-compute-fleet",
        "update-cluster",
        "describe-cluster",
        "describe-cluster",
        "update-compute-fleet",
        "describe-compute-fleet",
        "describe-compute-fleet",
    ]
    assert flag(fake.argv_of("update-compute-fleet", 0), "--status") == "STOP_REQUESTED"
    assert flag(fake.argv_of("update-compute-fleet", 1), "--status") == "START_REQUESTED"
    assert flag(fake.argv_of("update-cluster", 1), "--dryrun") == "false"
    assert "compute fleet stopped and started again" in result["msg"]
    assert [r["update_policy"] for r in result["change_set"]] == ["SUPPORTED", "COMPUTE_FLEET_STOP"]
    assert [line.split(" ", 1)[1] for line in result["progress"]] == [
        "cluster ml1: compute fleet STOP_REQUESTED",
        "cluster ml1: compute fleet STOPPING",
        "cluster ml1: compute fleet STOPPED",
        "cluster ml1: update-cluster accepted",
        "cluster ml1: UPDATE_IN_PROGRESS, fleet STOPPED",
        "cluster ml1: UPDATE_COMPLETE, fleet STOPPED",
        "cluster ml1: compute fleet START_REQUESTED",
        "cluster ml1: compute fleet STARTING",
        "cluster ml1: compute fleet RUNNING",
    ]


def test_failed_update_still_restarts_the_fleet(run, fake: FakePcluster) -> None:
    fake.on(
        "describe-cluster",
        "describe_create_complete",
        "describe_update_in_progress",
        "describe_update_failed",
    )
    fake.on("update-cluster", "update_dryrun_fleet_stop", "update_cluster")
    fake.on("update-compute-fleet", "update_compute_fleet", "update_compute_fleet")
    fake.on("describe-compute-fleet", fleet("STOPPED"), fleet("RUNNING"))
    fake.on("get-cluster-stack-events", Answer(0, json.dumps({"events": []})))
    fake.on("list-cluster-log-streams", Answer(0, json.dumps({"logStreams": []})))
    result = run(allow_fleet_restart=True)
    assert result.failed
    assert result["msg"].startswith("cluster ml1: UPDATE_FAILED; CloudFormation rolled")
    assert fake.operations()[-2:] == ["update-compute-fleet", "describe-compute-fleet"]
    assert result["progress"][-1].endswith("compute fleet RUNNING")


def test_unsupported_update_is_refused_even_with_fleet_restart(run, fake: FakePcluster) -> None:
    fake.on("describe-cluster", "describe_create_complete")
    fake.on("update-cluster", "update_dryrun_unsupported")
    result = run(allow_fleet_restart=True)
    assert result.failed
    msg = result["msg"]
    assert msg.startswith("cluster ml1: pcluster refuses the update: HeadNode.InstanceType")
    assert "restore those values in the config" in msg
    assert "update-compute-fleet" not in fake.operations()


def test_check_mode_update_predicts_with_change_set_and_diff(
    run, fake: FakePcluster, monkeypatch, aws_clients
) -> None:
    deployed = CONFIG.replace("c7i.xlarge", "c6i.xlarge").replace("MaxCount: 4", "MaxCount: 2")
    urls: list[str] = []

    def fetch(client, url):
        assert client is aws_clients["s3"]
        urls.append(url)
        return deployed

    monkeypatch.setattr(pc, "fetch_deployed_config", fetch)
    fake.on("describe-cluster", "describe_create_complete")
    fake.on("update-cluster", "update_dryrun_changes")
    result = run(check_mode=True, diff=True)
    assert result["changed"] is True
    assert result["msg"] == "cluster ml1 would be updated"
    assert result["change_set"] == [
        {
            "parameter": "Scheduling.SlurmQueues[cpu].ComputeResources[c6i].MaxCount",
            "current_value": "2",
            "requested_value": "4",
            "update_policy": "SUPPORTED",
            "message": "",
        }
    ]
    assert fake.operations() == ["describe-cluster", "update-cluster"]
    yaml_diff, change_set = result["diff"]
    assert yaml_diff["before"] == deployed
    assert yaml_diff["after"] == CONFIG
    assert "MaxCount: 2 -> 4 [SUPPORTED]" in change_set["prepared"]
    assert urls[0].startswith("https://parallelcluster-89e4e5f1cd12e98b-v1-do-not-delete.s3.")
    assert list(aws_clients) == ["s3"]


def test_check_mode_update_with_fleet_restart_predicts_it(run, fake: FakePcluster) -> None:
    fake.on("describe-cluster", "describe_create_complete")
    fake.on("update-cluster", "update_dryrun_fleet_stop")
    result = run(check_mode=True, allow_fleet_restart=True)
    assert result["changed"] is True
    assert result["fleet_restart"] is True
    assert result["msg"] == "cluster ml1 would be updated with a compute fleet restart"
    assert fake.operations() == ["describe-cluster", "update-cluster"]


def test_diff_without_the_deployed_config_warns_and_keeps_the_change_set(
    run, fake: FakePcluster, monkeypatch, warnings, aws_clients
) -> None:
    def unreachable(client, url):
        assert client is aws_clients["s3"]
        raise ValueError("describe-cluster gave no configuration URL (NOT_AVAILABLE)")

    monkeypatch.setattr(pc, "fetch_deployed_config", unreachable)
    fake.on("describe-cluster", "describe_create_complete")
    fake.on("update-cluster", "update_dryrun_changes")
    result = run(check_mode=True, diff=True)
    assert [list(d) for d in result["diff"]] == [["prepared"]]
    assert "deployed config not shown in the diff" in warnings[0]


def test_existing_failed_cluster_must_be_deleted_first(run, fake: FakePcluster) -> None:
    fake.on("describe-cluster", "describe_create_failed")
    failure_logs(fake)
    result = run()
    assert result.failed
    assert "cannot be updated: delete it (state: absent)" in result["msg"]
    assert "update-cluster" not in fake.operations()


def test_cluster_in_progress_is_waited_for_before_the_update(
    run, fake: FakePcluster, clock
) -> None:
    fake.on(
        "describe-cluster",
        "describe_update_in_progress",
        "describe_update_in_progress",
        "describe_update_complete",
    )
    fake.on("update-cluster", "update_no_changes")
    result = run()
    assert result["changed"] is False
    assert result["progress"][0] == "+0s cluster ml1: UPDATE_IN_PROGRESS, waiting for it to settle"
    assert clock.sleeps == [30]


# --------------------------------------------------------------------------- delete


def test_delete_and_wait_until_gone(run, fake: FakePcluster) -> None:
    fake.on(
        "describe-cluster",
        "describe_create_complete",
        "describe_delete_in_progress",
        "describe_not_found",
    )
    fake.on("delete-cluster", "delete_cluster")
    result = run(state="absent", config=None)
    assert result["changed"] is True
    assert result["cluster"] is None
    assert result["status"] is None
    assert result["progress"][-1].endswith("cluster ml1: deleted")


def test_delete_failed_reports_the_blocking_resource_and_the_log_tail(
    run, fake: FakePcluster, clock: FakeClock
) -> None:
    fake.on(
        "describe-cluster",
        "describe_create_complete",
        "describe_delete_in_progress",
        "describe_delete_in_progress",
        "describe_delete_failed",
    )
    fake.on("delete-cluster", "delete_cluster")
    failure_logs(fake, "get_cluster_stack_events_delete_failed")
    result = run(state="absent", config=None, log_tail_lines=2)
    assert result.failed
    assert result["changed"] is True
    assert result["status"] == "DELETE_FAILED"
    # describe-cluster gives failures for CREATE_FAILED only: the reason is the stack's.
    assert result["failures"] == []
    reason = (
        "resource sg-0c1d2e3f4a5b69788 has a dependent object (Service: Ec2, Status Code: 400, "
        "Request ID: 5f0e6a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b)"
    )
    assert result["failed_resource"] == {
        "logical_resource_id": "ComputeSecurityGroup",
        "resource_type": "AWS::EC2::SecurityGroup",
        "resource_status": "DELETE_FAILED",
        "reason": reason,
        "timestamp": "2026-01-07T08:21:38.000Z",
    }
    # No headNode in a deleting cluster's description: the stream is named, not attributed.
    stream = "ip-10-0-0-10.i-0123456789abcdef0.cfn-init"
    assert result["log_stream"] == stream
    assert result["log_tail"] == [
        "2026-01-05 10:29:45,310 [ERROR] " + "-" * 23 + "BUILD FAILED!" + "-" * 24,
        "2026-01-05 10:29:45,311 [ERROR] Unhandled exception during build: Command chef failed",
    ]
    assert flag(fake.argv_of("get-cluster-log-events"), "--log-stream-name") == stream
    assert flag(fake.argv_of("get-cluster-log-events"), "--limit") == "2"
    msg = result["msg"]
    assert msg.startswith(
        "cluster ml1: DELETE_FAILED; first failed resource ComputeSecurityGroup "
        f"(AWS::EC2::SecurityGroup): {reason}; node log {stream}: "
    )
    assert msg.endswith(
        "; remove what blocks the deletion (see the failed resource) and re-run with state: absent"
    )
    assert "diagnosis_notes" not in result
    assert fake.operations() == [
        "describe-cluster",
        "delete-cluster",
        "describe-cluster",
        "describe-cluster",
        "describe-cluster",
        "get-cluster-stack-events",
        "list-cluster-log-streams",
        "get-cluster-log-events",
    ]
    assert clock.sleeps == [30, 30]
    assert [line.split(" ", 1)[1] for line in result["progress"]] == [
        "cluster ml1: delete-cluster accepted (DELETE_IN_PROGRESS)",
        "cluster ml1: DELETE_IN_PROGRESS, fleet UNKNOWN",
        "cluster ml1: DELETE_FAILED, fleet UNKNOWN",
    ]


def test_delete_of_a_missing_cluster_changes_nothing(run, fake: FakePcluster) -> None:
    fake.on("describe-cluster", "describe_not_found")
    result = run(state="absent", config=None)
    assert result["changed"] is False
    assert fake.operations() == ["describe-cluster"]


def test_check_mode_delete_predicts_without_calling_delete(run, fake: FakePcluster) -> None:
    fake.on("describe-cluster", "describe_create_complete")
    result = run(state="absent", config=None, check_mode=True)
    assert result["changed"] is True
    assert result["msg"] == "cluster ml1 would be deleted"
    assert fake.operations() == ["describe-cluster"]


# --------------------------------------------------------------------------- options


def test_missing_config_file_names_the_next_step(run, fake: FakePcluster, tmp_path) -> None:
    fake.on("describe-cluster", "describe_not_found")
    result = run(config=str(tmp_path / "absent.yaml"))
    assert result.failed
    assert "is not a file; render it first" in result["msg"]
    assert fake.calls == []


def test_config_and_config_content_are_mutually_exclusive(run) -> None:
    result = run(config_content=CONFIG)
    assert result.failed
    assert "mutually exclusive" in result["msg"]


def test_state_present_needs_a_config(run) -> None:
    result = run(config=None)
    assert result.failed
    assert "config, config_content" in result["msg"]


def test_bad_validator_name_is_refused_before_any_call(run, fake: FakePcluster) -> None:
    result = run(suppress_validators=["KeyPairValidator"])
    assert result.failed
    assert "type:<ValidatorName>" in result["msg"]
    assert fake.calls == []


def test_pcluster_missing(run, tmp_path) -> None:
    result = run(pcluster_path=str(tmp_path / "nowhere" / "pcluster"))
    assert result.failed
    assert "is not an executable file" in result["msg"]


def test_fleet_that_does_not_stop_blocks_the_update(run, fake: FakePcluster, clock) -> None:
    fake.on("describe-cluster", "describe_create_complete")
    fake.on("update-cluster", "update_dryrun_fleet_stop")
    fake.on("update-compute-fleet", "update_compute_fleet")
    fake.on("describe-compute-fleet", fleet("STOPPING"), sticky=True)
    result = run(allow_fleet_restart=True, wait_timeout=120)
    assert result.failed
    msg = result["msg"]
    assert msg.startswith("cluster ml1: stopping the compute fleet failed (cluster ml1: compute")
    assert "the update was not started" in msg
    assert fake.operations().count("update-cluster") == 1
    assert sum(clock.sleeps) == 120
