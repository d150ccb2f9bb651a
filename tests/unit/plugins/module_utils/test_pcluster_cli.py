"""The pcluster CLI wrapper on recorded and spec-shaped outputs (tests/unit/fixtures/pcluster).

No test here runs pcluster: ``run_command`` - the wrapper's only process launcher - is replaced
by :class:`FakePcluster`, which answers each operation from a script of fixtures. The module
tests reuse these fakes.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import sys
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest
import yaml
from ansible_collections.xpu.parallelcluster.plugins.module_utils import pcluster_cli as pc

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "pcluster"
# Answers pcluster gives with exit status 1 (see the fixtures README).
EXIT_1 = {
    "create_dryrun_ok",
    "create_dryrun_ok_log_to_stdout",
    "create_dryrun_warnings",
    "create_dryrun_efa",
    "create_dryrun_minmax",
    "create_bad_yaml",
    "describe_not_found",
    "update_not_found",
    "delete_not_found",
    "update_dryrun_changes",
    "update_dryrun_fleet_stop",
    "update_dryrun_unsupported",
    "update_no_changes",
}


def text(name: str) -> str:
    path = FIXTURES / f"{name}.json"
    if not path.exists():
        path = FIXTURES / f"{name}.txt"
    return path.read_text()


def data(name: str) -> dict:
    return json.loads(text(name))


@dataclass
class Answer:
    rc: int
    stdout: str
    stderr: str = ""


def answer(name: str, **changes) -> Answer:
    """A fixture as pcluster prints it, with top-level keys changed if asked."""
    body = text(name)
    if changes:
        doc = json.loads(body)
        doc.update(changes)
        body = json.dumps(doc, indent=2) + "\n"
    return Answer(1 if name in EXIT_1 else 0, body)


def fleet(status: str) -> Answer:
    return answer("describe_compute_fleet", status=status)


class FakePcluster:
    """Replaces pcluster_cli.run_command: per operation, a queue of answers.

    The last answer of a queue is repeated when ``sticky``; otherwise an unexpected call fails
    the test with the operation's name.
    """

    def __init__(self) -> None:
        self.queues: dict[str, deque] = defaultdict(deque)
        self.sticky: dict[str, Answer] = {}
        self.calls: list[list[str]] = []
        self.timeouts: list[float] = []
        self.envs: list[dict] = []

    def on(self, operation: str, *answers, sticky: bool = False) -> FakePcluster:
        """Queue answers: a fixture name, an :class:`Answer`, or a callable(argv) -> Answer."""
        items = [answer(a) if isinstance(a, str) else a for a in answers]
        self.queues[operation].extend(items)
        if sticky:
            self.sticky[operation] = items[-1]
        return self

    def __call__(self, argv, *, timeout, env=None):
        self.calls.append(list(argv))
        self.timeouts.append(timeout)
        self.envs.append(dict(env or {}))
        operation = argv[1]
        queue = self.queues[operation]
        if queue:
            item = queue.popleft()
        elif operation in self.sticky:
            item = self.sticky[operation]
        else:
            raise AssertionError(f"unexpected call: pcluster {operation} ({argv})")
        if callable(item):
            item = item(list(argv))
        return item.rc, item.stdout, item.stderr

    def operations(self) -> list[str]:
        return [argv[1] for argv in self.calls]

    def argv_of(self, operation: str, index: int = 0) -> list[str]:
        return [argv for argv in self.calls if argv[1] == operation][index]


class FakeClock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "a wait slept for nothing (busy loop)"
        self.sleeps.append(seconds)
        self.t += seconds


@pytest.fixture
def fake(monkeypatch) -> FakePcluster:
    runner = FakePcluster()
    monkeypatch.setattr(pc, "run_command", runner)
    return runner


def cli(region: str | None = "us-east-1") -> pc.PclusterCli:
    return pc.PclusterCli("/opt/pcluster/bin/pcluster", region=region, env={"A": "1"})


# --------------------------------------------------------------------------- JSON extraction


def test_extract_json_reads_a_plain_answer() -> None:
    assert pc.extract_json(text("describe_create_complete"))["clusterStatus"] == "CREATE_COMPLETE"


def test_extract_json_skips_log_lines_and_the_traceback_that_embeds_the_json() -> None:
    noisy = text("create_dryrun_ok_log_to_stdout")
    assert not noisy.startswith("{")
    assert pc.extract_json(noisy) == {"message": pc.DRYRUN_SUCCESS}


def test_extract_json_takes_the_last_document_and_ignores_bracketed_log_lines() -> None:
    noisy = (
        "[WARNING] jsii: node 18 is not tested\n"
        '{"message": "an earlier, logged document"}\n'
        + text("describe_compute_fleet")
        + "[INFO] done\n"
    )
    assert pc.extract_json(noisy)["status"] == "RUNNING"


def test_extract_json_does_not_mistake_a_nested_object_for_the_answer() -> None:
    noisy = "warning: something\n" + text("create_dryrun_efa")
    found = pc.extract_json(noisy)
    assert found["message"] == "Invalid cluster configuration."
    assert len(found["configurationValidationErrors"]) == 2


@pytest.mark.parametrize("stdout", ["", "   \n", "usage: pcluster [-h]\nInvalid arguments\n"])
def test_extract_json_returns_none_without_a_document(stdout: str) -> None:
    assert pc.extract_json(stdout) is None


# --------------------------------------------------------------------------- parse_output


def parse(name: str, rc: int | None = None, operation: str = "create-cluster"):
    item = answer(name)
    return pc.parse_output(
        operation, ["pcluster", operation], item.rc if rc is None else rc, item.stdout, ""
    )


def test_dry_run_success_is_read_from_the_message_although_pcluster_exits_1() -> None:
    assert answer("create_dryrun_ok").rc == 1
    result = parse("create_dryrun_ok")
    assert isinstance(result, pc.DryRun)
    assert result.message == "Request would have succeeded, but DryRun flag is set."
    assert result.change_set == []
    assert result.validation_messages == []


def test_dry_run_success_with_noise_before_the_json() -> None:
    result = parse("create_dryrun_ok_log_to_stdout")
    assert isinstance(result, pc.DryRun)


def test_dry_run_success_keeps_warnings() -> None:
    result = parse("create_dryrun_warnings")
    assert isinstance(result, pc.DryRun)
    assert [m["type"] for m in result.validation_messages] == [
        "CustomAmiTagValidator",
        "AmiOsCompatibleValidator",
    ]
    assert {m["level"] for m in result.validation_messages} == {"WARNING"}


def test_update_dry_run_success_carries_the_change_set() -> None:
    result = parse("update_dryrun_changes", operation="update-cluster")
    assert isinstance(result, pc.DryRun)
    assert result.change_set == [
        {
            "parameter": "Scheduling.SlurmQueues[cpu].ComputeResources[c6i].MaxCount",
            "requestedValue": "4",
            "currentValue": "2",
        }
    ]


def test_validation_errors_raise_with_each_validator_type_and_message() -> None:
    with pytest.raises(pc.PclusterValidationError) as err:
        parse("create_dryrun_efa")
    assert [e["type"] for e in err.value.errors] == ["EfaValidator", "EfaPlacementGroupValidator"]
    assert "[ERROR] EfaValidator: Instance type 'c6i.xlarge' does not support EFA." in str(
        err.value
    )
    assert err.value.rc == 1


def test_min_greater_than_max_is_a_validation_error() -> None:
    with pytest.raises(pc.PclusterValidationError) as err:
        parse("create_dryrun_minmax")
    assert err.value.errors == [
        {
            "level": "ERROR",
            "type": "ComputeResourceSizeValidator",
            "message": "Max count must be greater than or equal to min count.",
        }
    ]


@pytest.mark.parametrize(
    ("name", "operation"),
    [
        ("describe_not_found", "describe-cluster"),
        ("update_not_found", "update-cluster"),
        ("delete_not_found", "delete-cluster"),
    ],
)
def test_missing_cluster_raises_not_found(name: str, operation: str) -> None:
    with pytest.raises(pc.PclusterNotFound) as err:
        parse(name, operation=operation)
    assert "'xpu-dry' does not exist" in err.value.message


def test_no_changes_raises_no_changes() -> None:
    with pytest.raises(pc.PclusterNoChanges):
        parse("update_no_changes", operation="update-cluster")


def test_update_needing_the_fleet_stopped_raises_update_error_with_change_set() -> None:
    with pytest.raises(pc.PclusterUpdateError) as err:
        parse("update_dryrun_fleet_stop", operation="update-cluster")
    assert len(err.value.change_set) == 2
    assert [e["parameter"] for e in err.value.errors] == [
        "Scheduling.SlurmQueues[cpu].ComputeResources[c6i].InstanceType"
    ]
    assert pc.needs_only_fleet_stop(err.value.errors)


def test_unsupported_update_is_not_fixed_by_stopping_the_fleet() -> None:
    with pytest.raises(pc.PclusterUpdateError) as err:
        parse("update_dryrun_unsupported", operation="update-cluster")
    assert not pc.needs_only_fleet_stop(err.value.errors)
    rows = pc.change_rows(err.value.change_set, err.value.errors)
    assert rows[0]["update_policy"] == "UNSUPPORTED"


def test_bad_yaml_is_an_api_error_not_a_missing_cluster() -> None:
    with pytest.raises(pc.PclusterApiError) as err:
        parse("create_bad_yaml")
    assert not isinstance(err.value, pc.PclusterNotFound)
    assert "Configuration must be a valid YAML document" in err.value.message


def test_exit_without_output_points_at_the_cli_log() -> None:
    with pytest.raises(pc.PclusterOutputError) as err:
        pc.parse_output("describe-cluster", ["pcluster"], 1, "", "")
    assert "pcluster-cli.log" in err.value.message


def test_argparse_usage_error_is_reported_with_stderr() -> None:
    with pytest.raises(pc.PclusterOutputError) as err:
        pc.parse_output(
            "create-cluster",
            ["pcluster"],
            2,
            "",
            "usage: pcluster create-cluster [-h]\npcluster: error: the following arguments are "
            "required: -n/--cluster-name\n",
        )
    assert "required: -n/--cluster-name" in err.value.message
    assert err.value.details()["stderr"].startswith("usage")


def test_success_returns_the_document() -> None:
    result = parse("describe_create_complete", operation="describe-cluster")
    assert result["headNode"]["instanceId"] == "i-0123456789abcdef0"


# --------------------------------------------------------------------------- commands


def test_describe_cluster_argv(fake: FakePcluster) -> None:
    fake.on("describe-cluster", "describe_create_complete")
    assert cli().describe_cluster("ml1")["clusterStatus"] == "CREATE_COMPLETE"
    assert fake.calls == [
        [
            "/opt/pcluster/bin/pcluster",
            "describe-cluster",
            "--cluster-name",
            "ml1",
            "--region",
            "us-east-1",
        ]
    ]
    assert fake.envs == [{"A": "1"}]
    assert fake.timeouts == [pc.READ_TIMEOUT]


def test_create_cluster_argv_dry_run_with_suppressed_validators(fake: FakePcluster) -> None:
    fake.on("create-cluster", "create_dryrun_ok")
    result = cli().create_cluster(
        "ml1",
        "/tmp/ml1.yaml",
        dryrun=True,
        suppress_validators=["type:KeyPairValidator", "type:HeadNodeLaunchTemplateValidator"],
        rollback_on_failure=False,
    )
    assert isinstance(result, pc.DryRun)
    assert fake.calls[0][1:] == [
        "create-cluster",
        "--cluster-name",
        "ml1",
        "--cluster-configuration",
        "/tmp/ml1.yaml",
        "--dryrun",
        "true",
        "--rollback-on-failure",
        "false",
        "--suppress-validators",
        "type:KeyPairValidator",
        "type:HeadNodeLaunchTemplateValidator",
        "--region",
        "us-east-1",
    ]
    assert fake.timeouts == [pc.WRITE_TIMEOUT]


def test_create_cluster_returns_the_accepted_cluster(fake: FakePcluster) -> None:
    fake.on("create-cluster", "create_cluster")
    result = cli(region=None).create_cluster("ml1", "/tmp/ml1.yaml")
    assert result["cluster"]["clusterStatus"] == "CREATE_IN_PROGRESS"
    assert "--region" not in fake.calls[0]
    assert fake.calls[0][fake.calls[0].index("--dryrun") + 1] == "false"
    assert fake.calls[0][fake.calls[0].index("--rollback-on-failure") + 1] == "true"


def test_update_cluster_argv(fake: FakePcluster) -> None:
    fake.on("update-cluster", "update_dryrun_changes")
    cli().update_cluster("ml1", "/tmp/ml1.yaml", dryrun=True, force_update=True)
    assert fake.calls[0][1:8] == [
        "update-cluster",
        "--cluster-name",
        "ml1",
        "--cluster-configuration",
        "/tmp/ml1.yaml",
        "--dryrun",
        "true",
    ]
    assert fake.calls[0][8:10] == ["--force-update", "true"]


def test_delete_cluster_and_the_not_found_that_follows(fake: FakePcluster) -> None:
    fake.on("delete-cluster", "delete_cluster", "delete_not_found")
    assert cli().delete_cluster("ml1")["cluster"]["clusterStatus"] == "DELETE_IN_PROGRESS"
    with pytest.raises(pc.PclusterNotFound):
        cli().delete_cluster("ml1")


def test_compute_fleet_commands(fake: FakePcluster) -> None:
    fake.on("update-compute-fleet", "update_compute_fleet")
    fake.on("describe-compute-fleet", "describe_compute_fleet")
    assert cli().update_compute_fleet("ml1", "STOP_REQUESTED")["status"] == "STOP_REQUESTED"
    assert cli().describe_compute_fleet("ml1")["status"] == "RUNNING"
    assert fake.argv_of("update-compute-fleet")[4:6] == ["--status", "STOP_REQUESTED"]


def test_describe_cluster_instances_follows_next_tokens(fake: FakePcluster) -> None:
    page = data("describe_cluster_instances")
    first = Answer(0, json.dumps({"instances": page["instances"][:2], "nextToken": "t1"}))
    second = Answer(0, json.dumps({"instances": page["instances"][2:]}))
    fake.on("describe-cluster-instances", first, second)
    instances = cli().describe_cluster_instances("ml1", node_type="ComputeNode")
    assert len(instances) == 5
    assert "--next-token" not in fake.calls[0]
    assert fake.calls[1][fake.calls[1].index("--next-token") + 1] == "t1"
    assert fake.calls[0][4:6] == ["--node-type", "ComputeNode"]


def test_log_streams_and_events(fake: FakePcluster) -> None:
    fake.on("list-cluster-log-streams", "list_cluster_log_streams")
    fake.on("get-cluster-log-events", "get_cluster_log_events")
    streams = cli().list_cluster_log_streams("ml1", filters=["Name=node-type,Values=HeadNode"])
    assert len(streams) == 6
    assert fake.calls[0][4:6] == ["--filters", "Name=node-type,Values=HeadNode"]
    events = cli().get_cluster_log_events("ml1", "ip-10-0-0-10.i-0123.cfn-init", limit=20)
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps), "events come back oldest first"
    argv = fake.argv_of("get-cluster-log-events")
    assert argv[argv.index("--limit") + 1] == "20"
    assert argv[argv.index("--start-from-head") + 1] == "false"


def test_stack_events(fake: FakePcluster) -> None:
    fake.on("get-cluster-stack-events", "get_cluster_stack_events")
    events = cli().get_cluster_stack_events("ml1")
    assert events[0]["resourceStatus"] == "CREATE_FAILED"


def test_run_command_runs_an_argv_list_and_times_out() -> None:
    rc, out, _err = pc.run_command([sys.executable, "-c", "print('a b')"], timeout=30)
    assert (rc, out) == (0, "a b\n")
    with pytest.raises(pc.PclusterTimeout) as err:
        pc.run_command([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.3)
    assert "did not answer within 0s" in err.value.message


def test_run_command_reports_a_missing_executable(tmp_path: Path) -> None:
    with pytest.raises(pc.PclusterNotInstalled):
        pc.run_command([str(tmp_path / "nope"), "describe-cluster"], timeout=5)


def test_find_pcluster_prefers_the_given_path(tmp_path: Path, monkeypatch) -> None:
    exe = tmp_path / "pcluster"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert pc.find_pcluster(str(exe)) == str(exe)
    with pytest.raises(pc.PclusterNotInstalled) as err:
        pc.find_pcluster(str(tmp_path / "missing"))
    assert "pcluster_path" in err.value.message


def test_find_pcluster_falls_back_to_path(tmp_path: Path, monkeypatch) -> None:
    exe = tmp_path / "pcluster"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setattr(pc.sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert pc.find_pcluster() == str(exe)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(pc.PclusterNotInstalled) as err:
        pc.find_pcluster()
    assert "aws-parallelcluster" in err.value.message


def test_aws_environment_passes_module_options_as_variables() -> None:
    base = {"AWS_ACCESS_KEY_ID": "env", "PATH": "/bin"}
    env = pc.aws_environment(
        {"endpoint_url": "http://127.0.0.1:5104", "region": "eu-west-1", "access_key": "k"}, base
    )
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:5104"
    assert env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["AWS_ACCESS_KEY_ID"] == "k"
    assert env["PATH"] == "/bin"
    profiled = pc.aws_environment({"profile": "ml"}, base)
    assert profiled["AWS_PROFILE"] == "ml"
    assert "AWS_ACCESS_KEY_ID" not in profiled


# --------------------------------------------------------------------------- waits


def test_wait_for_cluster_records_progress_until_complete(fake: FakePcluster) -> None:
    fake.on(
        "describe-cluster",
        "describe_create_in_progress",
        "describe_create_in_progress",
        "describe_create_complete",
    )
    clock = FakeClock()
    progress = pc.Progress(clock, started=clock.now())
    result = pc.wait_for_cluster(
        cli(), "ml1", "create", timeout=600, poll_interval=30, progress=progress, clock=clock
    )
    assert result["clusterStatus"] == "CREATE_COMPLETE"
    assert clock.sleeps == [30, 30]
    assert progress.lines == [
        "+0s cluster ml1: CREATE_IN_PROGRESS, fleet UNKNOWN",
        "+60s cluster ml1: CREATE_COMPLETE, fleet RUNNING",
    ]


def test_wait_for_cluster_stops_at_the_deadline(fake: FakePcluster) -> None:
    fake.on("describe-cluster", "describe_create_in_progress", sticky=True)
    clock = FakeClock()
    progress = pc.Progress(clock, started=clock.now())
    with pytest.raises(pc.WaitTimeout) as err:
        pc.wait_for_cluster(
            cli(), "ml1", "create", timeout=100, poll_interval=30, progress=progress, clock=clock
        )
    assert sum(clock.sleeps) == 100
    assert clock.sleeps[-1] == 10
    assert "still CREATE_IN_PROGRESS after 100s" in err.value.message
    assert progress.lines[-1].startswith("+100s cluster ml1: deadline of 100s passed")


def test_wait_for_cluster_raises_on_failure(fake: FakePcluster) -> None:
    fake.on("describe-cluster", "describe_create_in_progress", "describe_create_failed")
    clock = FakeClock()
    with pytest.raises(pc.ClusterFailed) as err:
        pc.wait_for_cluster(
            cli(),
            "ml1",
            "create",
            timeout=600,
            poll_interval=30,
            progress=pc.Progress(clock),
            clock=clock,
        )
    assert err.value.status == "CREATE_FAILED"
    assert err.value.cluster["failures"][0]["failureCode"] == "HeadNodeBootstrapFailure"


def test_wait_for_update_sees_a_rollback_as_failure(fake: FakePcluster) -> None:
    rolling_back = answer(
        "describe_update_in_progress", cloudFormationStackStatus="UPDATE_ROLLBACK_IN_PROGRESS"
    )
    fake.on("describe-cluster", rolling_back, "describe_update_failed")
    clock = FakeClock()
    progress = pc.Progress(clock)
    with pytest.raises(pc.ClusterFailed) as err:
        pc.wait_for_cluster(
            cli(), "ml1", "update", timeout=600, poll_interval=30, progress=progress, clock=clock
        )
    assert err.value.status == "UPDATE_FAILED"
    assert "stack UPDATE_ROLLBACK_IN_PROGRESS" in progress.lines[0]


def test_wait_for_delete_ends_when_the_cluster_is_gone(fake: FakePcluster) -> None:
    fake.on("describe-cluster", "describe_delete_in_progress", "describe_not_found")
    clock = FakeClock()
    progress = pc.Progress(clock)
    assert (
        pc.wait_for_cluster(
            cli(), "ml1", "delete", timeout=600, poll_interval=15, progress=progress, clock=clock
        )
        is None
    )
    assert progress.lines[-1] == "+15s cluster ml1: deleted"


def test_wait_for_fleet(fake: FakePcluster) -> None:
    fake.on("describe-compute-fleet", fleet("STOPPING"), fleet("STOPPING"), fleet("STOPPED"))
    clock = FakeClock()
    progress = pc.Progress(clock)
    pc.wait_for_fleet(
        cli(), "ml1", "STOPPED", timeout=600, poll_interval=10, progress=progress, clock=clock
    )
    assert progress.lines == [
        "+0s cluster ml1: compute fleet STOPPING",
        "+20s cluster ml1: compute fleet STOPPED",
    ]


# --------------------------------------------------------------------------- failures


def test_first_failed_resource_skips_cancelled_and_stack_events() -> None:
    found = pc.first_failed_resource(data("get_cluster_stack_events")["events"])
    assert found["logical_resource_id"] == "HeadNodeWaitCondition202601051000"
    assert found["reason"].startswith("Failed to run chef recipe")


def test_pick_log_stream_head_node_first() -> None:
    streams = data("list_cluster_log_streams")["logStreams"]
    assert (
        pc.pick_log_stream(streams, "i-0123456789abcdef0", "HeadNodeBootstrapFailure")
        == "ip-10-0-0-10.i-0123456789abcdef0.cfn-init"
    )


def test_pick_log_stream_compute_bootstrap_error_for_protected_mode() -> None:
    streams = data("list_cluster_log_streams")["logStreams"]
    assert (
        pc.pick_log_stream(streams, "i-0123456789abcdef0", "StaticNodeBootstrapFailure")
        == "ip-10-0-16-11.i-0aaaaaaaaaaaaaaa1.bootstrap_error_msg"
    )
    assert pc.pick_log_stream([], "i-0123456789abcdef0", None) is None


def test_diagnose_failure_and_message(fake: FakePcluster) -> None:
    fake.on("get-cluster-stack-events", "get_cluster_stack_events")
    fake.on("list-cluster-log-streams", "list_cluster_log_streams")
    fake.on("get-cluster-log-events", "get_cluster_log_events")
    cluster = data("describe_create_failed")
    report = pc.diagnose_failure(cli(), "ml1", cluster, tail_lines=4)
    assert report["log_stream"] == "ip-10-0-0-10.i-0123456789abcdef0.cfn-init"
    assert report["log_node"] == "head node"
    assert len(report["log_tail"]) == 4
    assert report["log_tail"][-1].endswith("Unhandled exception during build: Command chef failed")
    message = pc.failure_message("ml1", "CREATE_FAILED", report, "fix it and re-run")
    assert message.startswith(
        "cluster ml1: CREATE_FAILED: HeadNodeBootstrapFailure: Failed to set up the head node.; "
        "first failed resource HeadNodeWaitCondition202601051000 "
        "(AWS::CloudFormation::WaitCondition): Failed to run chef recipe"
    )
    assert "; head node log ip-10-0-0-10.i-0123456789abcdef0.cfn-init: " in message
    assert message.endswith("Command chef failed; fix it and re-run")


def test_diagnose_failure_notes_what_it_could_not_read(fake: FakePcluster) -> None:
    fake.on("get-cluster-stack-events", "describe_not_found")
    fake.on("list-cluster-log-streams", Answer(0, json.dumps({"logStreams": []})))
    report = pc.diagnose_failure(cli(), "ml1", data("describe_create_failed"), tail_lines=10)
    assert report["failed_resource"] is None
    assert report["log_stream"] is None
    assert report["notes"][0].startswith("stack events unavailable")
    assert "no bootstrap log stream" in report["notes"][1]


def test_change_rows_name_the_update_policy() -> None:
    doc = data("update_dryrun_fleet_stop")
    rows = pc.change_rows(doc["changeSet"], doc["updateValidationErrors"])
    assert [(r["parameter"].rsplit(".", 1)[1], r["update_policy"]) for r in rows] == [
        ("MaxCount", "SUPPORTED"),
        ("InstanceType", "COMPUTE_FLEET_STOP"),
    ]
    assert rows[1]["current_value"] == "c6i.xlarge"
    assert rows[1]["requested_value"] == "c7i.xlarge"


# --------------------------------------------------------------------------- deployed config


def test_parse_s3_url_of_a_presigned_virtual_hosted_url() -> None:
    url = data("describe_create_complete")["clusterConfiguration"]["url"]
    bucket, key, version = pc.parse_s3_url(url)
    assert bucket == "parallelcluster-89e4e5f1cd12e98b-v1-do-not-delete"
    assert key == "parallelcluster/3.16.1/clusters/ml1-abcdefghijklmnop/configs/cluster-config.yaml"
    assert version == "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"


def test_parse_s3_url_path_style_as_the_emulator_presigns() -> None:
    url = (
        "http://127.0.0.1:5104/bucket-a/parallelcluster/configs/cluster%20config.yaml?X-Amz-Date=1"
    )
    assert pc.parse_s3_url(url) == ("bucket-a", "parallelcluster/configs/cluster config.yaml", None)
    assert pc.parse_s3_url("s3://b/k/c.yaml") == ("b", "k/c.yaml", None)
    with pytest.raises(ValueError):
        pc.parse_s3_url("NOT_AVAILABLE")


def test_fetch_deployed_config_uses_the_s3_client() -> None:
    class S3:
        def __init__(self) -> None:
            self.kwargs: dict = {}

        def get_object(self, **kwargs):
            self.kwargs = kwargs
            return {"Body": io.BytesIO(b"Region: us-east-1\n")}

    s3 = S3()
    url = data("describe_create_complete")["clusterConfiguration"]["url"]
    assert pc.fetch_deployed_config(s3, url) == "Region: us-east-1\n"
    assert s3.kwargs["VersionId"] == "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"
    with pytest.raises(ValueError):
        pc.fetch_deployed_config(s3, "NOT_AVAILABLE")


def test_instances_by_queue_groups_compute_nodes_only() -> None:
    grouped = pc.instances_by_queue(data("describe_cluster_instances")["instances"])
    assert sorted(grouped) == ["cpu", "gpu"]
    assert [i["instance_id"] for i in grouped["cpu"]] == [
        "i-0aaaaaaaaaaaaaaa1",
        "i-0bbbbbbbbbbbbbbb2",
    ]
    assert grouped["gpu"][0] == {
        "instance_id": "i-0ccccccccccccccc3",
        "node_type": "ComputeNode",
        "state": "pending",
        "private_ip": "10.0.16.13",
        "instance_type": "p5.48xlarge",
        "launch_time": "2026-01-05T10:21:00.000Z",
    }


# --------------------------------------------------------------------------- fixtures vs the spec
# The spec-shaped fixtures stand in for answers no test can record (fixtures README); each is held
# to the response schema of its operation in the openapi.yaml that aws-parallelcluster ships.

README_ROW = re.compile(r"^\| `(?P<file>[^`]+)` \| (?P<rc>\d+) \| (?P<origin>[^|]+) \|", re.M)
FIXTURE_ROWS = {m["file"]: m for m in README_ROW.finditer((FIXTURES / "README.md").read_text())}
SPEC_FIXTURES = sorted(f for f, m in FIXTURE_ROWS.items() if m["origin"].startswith("spec:"))


def _openapi() -> dict:
    found = importlib.util.find_spec("pcluster")
    assert found and found.submodule_search_locations, "aws-parallelcluster is not installed"
    path = Path(found.submodule_search_locations[0]) / "api" / "openapi" / "openapi.yaml"
    return yaml.safe_load(path.read_text())


OPENAPI = _openapi()
# operationId -> {HTTP status: response schema name}
RESPONSES = {
    op["operationId"]: {
        str(code): response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        for code, response in op["responses"].items()
        if "content" in response
    }
    for methods in OPENAPI["paths"].values()
    for op in methods.values()
    if isinstance(op, dict) and "operationId" in op
}


def _strict(node):
    """The spec's schemas without examples, and closed: pcluster's generated models print only the
    attributes they declare, so an undeclared key in a fixture is a shaping mistake."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items() if k != "example"}
    if "properties" in out:
        out.setdefault("additionalProperties", False)
    return out


STRICT_SCHEMAS = _strict(OPENAPI["components"]["schemas"])
FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _rfc3339(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if "T" not in value or datetime.fromisoformat(value).tzinfo is None:
        raise ValueError(f"{value!r} is not an RFC 3339 date-time with a time zone")
    return True


def operation_of(stem: str) -> str:
    """The pcluster operation a fixture answers: the longest operationId its name starts with,
    else ``<verb>_cluster`` (describe_create_complete -> describe_cluster)."""
    matches = [op for op in RESPONSES if stem == op or stem.startswith(op + "_")]
    return max(matches, key=len) if matches else stem.split("_", 1)[0] + "_cluster"


def spec_errors(doc: object, schema: str) -> list[str]:
    validator = jsonschema.Draft4Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": {"schemas": STRICT_SCHEMAS}},
        format_checker=FORMATS,
    )
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    ]


def test_every_fixture_has_a_readme_row_with_the_exit_status_the_fakes_use() -> None:
    files = sorted(p.name for p in FIXTURES.iterdir() if p.name != "README.md")
    assert sorted(FIXTURE_ROWS) == files
    for name, row in FIXTURE_ROWS.items():
        assert int(row["rc"]) == answer(Path(name).stem).rc, f"{name}: rc in README vs EXIT_1"
    assert len(SPEC_FIXTURES) >= 20


@pytest.mark.parametrize("name", SPEC_FIXTURES)
def test_spec_fixture_matches_its_operation_s_response_schema(name: str) -> None:
    row = FIXTURE_ROWS[name]
    schema = re.search(r"`(\w+ResponseContent)`", row["origin"])
    assert schema, f"{name}: the README row names no ...ResponseContent schema"
    schema_name = schema[1]
    operation = operation_of(Path(name).stem)
    codes = [c for c, s in RESPONSES[operation].items() if s == schema_name]
    assert codes, f"{name}: {schema_name} is not a response of {operation}"
    expect_success = int(row["rc"]) == 0
    assert any(c.startswith("2") == expect_success for c in codes), (
        f"{name}: rc {row['rc']} but {schema_name} answers {operation} with HTTP {codes}"
    )
    assert spec_errors(json.loads((FIXTURES / name).read_text()), schema_name) == []


def test_spec_check_finds_undeclared_keys_wrong_types_and_bad_timestamps() -> None:
    doc = data("describe_delete_failed")
    assert spec_errors(doc, "DescribeClusterResponseContent") == []
    doc["failureReason"] = "only in the spec's example"
    doc["clusterStatus"] = "DELETED"
    doc["creationTime"] = "2026-01-05 10:00"
    del doc["region"]
    doc["tags"][0]["value"] = 3
    assert spec_errors(doc, "DescribeClusterResponseContent") == [
        "(top): 'region' is a required property",
        "(top): Additional properties are not allowed ('failureReason' was unexpected)",
        "clusterStatus: 'DELETED' is not one of "
        + str(OPENAPI["components"]["schemas"]["ClusterStatus"]["enum"]),
        "creationTime: '2026-01-05 10:00' is not a 'date-time'",
        "tags/0/value: 3 is not of type 'string'",
    ]
    assert operation_of("describe_cluster_instances") == "describe_cluster_instances"
    assert operation_of("update_dryrun_fleet_stop") == "update_cluster"
    assert operation_of("get_cluster_stack_events_delete_failed") == "get_cluster_stack_events"
