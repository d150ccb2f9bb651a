"""xpu.parallelcluster.infra_stack through its main(), against a botocore Stubber.

Each test scripts the CloudFormation calls the module must make, in order, with the parameters
it must send; a call the script does not expect fails the test (Stubber), and so does an expected
call that never happens. Waits run on a fake clock.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from ansible.module_utils import _internal as module_internal
from ansible.module_utils.common import warnings as module_warnings
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import (
    AWSRetry,
    RetryingBotoClientWrapper,
)
from ansible_collections.xpu.parallelcluster.plugins.module_utils import cloudformation as cfu
from ansible_collections.xpu.parallelcluster.plugins.modules import infra_stack
from botocore.stub import ANY, Stubber

ROOT = Path(__file__).resolve().parents[4]
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "cloudformation"
TEMPLATE = (FIXTURES / "infra-small.yaml").read_text()
NAME = "ml1-infra"
STACK_ID = f"arn:aws:cloudformation:us-east-1:123456789012:stack/{NAME}/0f1e2d3c"
NEW_STACK_ID = f"arn:aws:cloudformation:us-east-1:123456789012:stack/{NAME}/9a8b7c6d"
CS_ID = f"arn:aws:cloudformation:us-east-1:123456789012:changeSet/xpu-x/{'1' * 8}"
CREATED = datetime(2026, 3, 2, 10, 13, 40)
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]

ARGS: dict[str, Any] = {
    "name": NAME,
    "cluster_name": "ml1",
    "availability_zones": ["us-east-1a"],
    "ssh_allowed_cidr": "192.0.2.0/24",
    "fsx": {"existing_id": "fs-0123456789abcdef0"},
    "monitoring": {"type": "none"},
    "tags": {"team": "ml"},
    "template_body": TEMPLATE,
    "region": "us-east-1",
}
# The shipped template instead of the fixture (larger than the inline limit: passed through a
# bucket, which is written only when the stack is sent).
SHIPPED: dict[str, Any] = {
    "template_body": None,
    "template": str(ROOT / "files" / "cloudformation" / "infra.yaml"),
    "template_bucket": "templates",
}
# What the module sends for ARGS: every declared parameter, template defaults filled in.
PARAMS = {
    "ClusterName": "ml1",
    "PrimaryAz": "us-east-1a",
    "SecondaryAz": "",
    "VpcCidr": "10.0.0.0/16",
    "SecondaryCidr": "10.1.0.0/16",
    "NatGateways": "single",
    "SshAllowedCidr": "192.0.2.0/24",
    "MonitoringAllowedCidr": "",
    "ExistingFsxId": "fs-0123456789abcdef0",
    "FsxDeploymentType": "PERSISTENT_2",
    "FsxStorageCapacity": "1200",
    "FsxThroughputPerTiB": "250",
    "FsxDataCompression": "LZ4",
    "FsxLustreVersion": "2.15",
    "MonitoringType": "none",
    "MonitoringInstanceType": "t3.medium",
    "MonitoringImageId": "",
    "CertificateArn": "",
    "AmgAuthenticationProvider": "AWS_SSO",
}
OUTPUTS = {"VpcId": "vpc-0a1b", "HeadNodeSubnetId": "subnet-0c1d", "MonitoringType": "none"}
NO_CHANGES = (
    "The submitted information didn't contain changes. Submit different information to create "
    "a change set."
)


def plist(params: dict[str, str]) -> list[dict[str, str]]:
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()]


def stack(status: str, params: dict[str, str] | None = None, stack_id: str = STACK_ID, **extra):
    return {
        "StackId": stack_id,
        "StackName": NAME,
        "CreationTime": CREATED,
        "StackStatus": status,
        "Parameters": plist(params if params is not None else PARAMS),
        "Tags": [{"Key": "team", "Value": "ml"}],
        "EnableTerminationProtection": False,
        **extra,
    }


def event(event_id: str, status: str, logical: str = NAME, stack_id: str = STACK_ID, **extra):
    return {
        "StackId": stack_id,
        "EventId": event_id,
        "StackName": NAME,
        "LogicalResourceId": logical,
        "ResourceType": "AWS::CloudFormation::Stack" if logical == NAME else "AWS::EC2::VPC",
        "ResourceStatus": status,
        "Timestamp": datetime(2026, 3, 2, 11, 0, int(event_id[1:])),
        **extra,
    }


def fixture_events(stack_id: str = STACK_ID) -> list[dict[str, Any]]:
    events = json.loads((FIXTURES / "events-create-failed.json").read_text())["StackEvents"]
    for item in events:
        item["Timestamp"] = datetime.fromisoformat(item["Timestamp"].replace("Z", "+00:00"))
        item.update(StackId=stack_id, StackName=NAME)
    return events


def fixture_change_set(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


class Script:
    """The CloudFormation (and S3) conversation a test expects, on Stubbers."""

    def __init__(self, stubber: Stubber, s3: Stubber) -> None:
        self.stubber = stubber
        self.s3 = s3

    def add(self, method: str, response: dict, **params: Any) -> Script:
        self.stubber.add_response(method, response, params)
        return self

    def missing(self, stack_name: str = NAME) -> Script:
        self.stubber.add_client_error(
            "describe_stacks",
            service_error_code="ValidationError",
            service_message=f"Stack with id {stack_name} does not exist",
            http_status_code=400,
            expected_params={"StackName": stack_name},
        )
        return self

    def describe(self, described: dict, by: str = NAME) -> Script:
        return self.add("describe_stacks", {"Stacks": [described]}, StackName=by)

    def events(self, *events: dict, by: str = STACK_ID) -> Script:
        return self.add("describe_stack_events", {"StackEvents": list(events)}, StackName=by)

    def template(self, body: str = TEMPLATE, by: str = STACK_ID) -> Script:
        return self.add(
            "get_template", {"TemplateBody": body}, StackName=by, TemplateStage="Original"
        )

    def create_change_set(
        self,
        kind: str,
        params: dict[str, str] = PARAMS,
        stack_id: str = STACK_ID,
        template: dict[str, Any] | None = None,
    ) -> Script:
        return self.add(
            "create_change_set",
            {"Id": CS_ID, "StackId": stack_id},
            StackName=NAME,
            ChangeSetName=ANY,
            ChangeSetType=kind,
            **(template or {"TemplateBody": TEMPLATE}),
            Parameters=plist(params),
            Capabilities=CAPABILITIES,
            Description="xpu.parallelcluster.infra_stack",
            Tags=[{"Key": "team", "Value": "ml"}],
        )

    def change_set(self, described: dict) -> Script:
        return self.add("describe_change_set", described, ChangeSetName=CS_ID)

    def buckets(self, *summaries: dict, template: str = TEMPLATE) -> Script:
        """The stack's deployed template and resources, read to find the buckets to empty."""
        self.template(template)
        return self.add(
            "list_stack_resources", {"StackResourceSummaries": list(summaries)}, StackName=STACK_ID
        )

    def versions(self, bucket: str, response: dict, **markers: str) -> Script:
        self.s3.add_response("list_object_versions", response, {"Bucket": bucket, **markers})
        return self

    def delete_objects(self, bucket: str, keys: list[tuple[str, str]], **response: Any) -> Script:
        objects = [{"Key": k, "VersionId": v} for k, v in keys]
        self.s3.add_response(
            "delete_objects",
            response,
            {"Bucket": bucket, "Delete": {"Objects": objects, "Quiet": True}},
        )
        return self


def bucket_resource(logical: str, physical: str, status: str = "CREATE_COMPLETE") -> dict:
    return {
        "LogicalResourceId": logical,
        "PhysicalResourceId": physical,
        "ResourceType": "AWS::S3::Bucket",
        "ResourceStatus": status,
        "LastUpdatedTimestamp": datetime(2026, 1, 1, tzinfo=UTC),
    }


def version(key: str, version_id: str) -> dict:
    return {"Key": key, "VersionId": version_id}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A clock that only moves when the module sleeps; returns the list of sleeps."""
    now = [1000.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(cfu, "_monotonic", lambda: now[0])
    monkeypatch.setattr(cfu, "_sleep", sleep)
    return sleeps


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch, clock: list[float]):
    raw = boto3.client(
        "cloudformation",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    raw_s3 = boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    retry = AWSRetry.jittered_backoff(retries=1, delay=0)
    clients = {
        "cloudformation": RetryingBotoClientWrapper(raw, retry),
        "s3": RetryingBotoClientWrapper(raw_s3, retry),
    }

    def fake_client(self, service, retry_decorator=None, **kwargs):
        return clients[service]

    monkeypatch.setattr(AnsibleAWSModule, "client", fake_client)
    with Stubber(raw) as stubber, Stubber(raw_s3) as s3:
        yield Script(stubber, s3)
        stubber.assert_no_pending_responses()
        s3.assert_no_pending_responses()


@pytest.fixture
def run(run_module):
    """infra_stack's main() with ``args`` (diff mode on unless told); returns its result."""

    def run_infra_stack(args: dict[str, Any], check: bool = False, diff: bool = True) -> dict:
        return run_module(infra_stack.main, args, check=check, diff=diff)

    return run_infra_stack


# -- create ------------------------------------------------------------------------------------


@pytest.mark.aws
def test_create_goes_through_a_create_change_set(script: Script, run, clock) -> None:
    created = stack(
        "CREATE_COMPLETE", Outputs=[{"OutputKey": k, "OutputValue": v} for k, v in OUTPUTS.items()]
    )
    (
        script.missing()
        .create_change_set("CREATE")
        .change_set({"Status": "CREATE_PENDING"})
        .change_set(fixture_change_set("change-set-create.json"))
        .add("execute_change_set", {}, ChangeSetName=CS_ID)
        .describe(stack("CREATE_IN_PROGRESS"), by=STACK_ID)
        .events(event("e2", "CREATE_IN_PROGRESS", "Vpc"), event("e1", "CREATE_IN_PROGRESS"))
        .describe(created, by=STACK_ID)
        .events(event("e3", "CREATE_COMPLETE"), event("e2", "CREATE_IN_PROGRESS", "Vpc"))
        .describe(created, by=STACK_ID)
    )
    result = run(ARGS)
    assert result["changed"] is True and not result.get("failed")
    assert result["stack_id"] == STACK_ID
    assert result["stack_status"] == "CREATE_COMPLETE"
    assert result["outputs"] == OUTPUTS
    assert result["parameters"] == PARAMS
    assert [c["logical_id"] for c in result["change_set"]] == [
        "Vpc",
        "PrivateSubnet",
        "HeadNodeSecurityGroup",
    ]
    assert {c["action"] for c in result["change_set"]} == {"Add"}
    assert result["diff"]["before"] == {}
    assert result["diff"]["after"]["parameters"] == PARAMS
    assert "Add Vpc AWS::EC2::VPC" in result["diff"]["prepared"]
    assert clock == [3.0, 10.0]  # one change set poll, one stack poll
    assert any("CREATE_IN_PROGRESS | 11:00:02 Vpc" in line for line in result["events"])
    assert result["events"][-1].split(None, 1)[1].startswith("CREATE_COMPLETE")


@pytest.mark.aws
def test_create_with_use_change_sets_false_calls_create_stack(script: Script, run) -> None:
    (
        script.missing()
        .add(
            "create_stack",
            {"StackId": STACK_ID},
            StackName=NAME,
            TemplateBody=TEMPLATE,
            Parameters=plist(PARAMS),
            Capabilities=CAPABILITIES,
            Tags=[{"Key": "team", "Value": "ml"}],
            EnableTerminationProtection=True,
        )
        .describe(stack("CREATE_COMPLETE"), by=STACK_ID)
        .events(event("e2", "CREATE_COMPLETE"))
        .describe(stack("CREATE_COMPLETE"), by=STACK_ID)
    )
    result = run({**ARGS, "use_change_sets": False, "termination_protection": True})
    assert result["changed"] is True
    assert result["change_set"] == []
    assert "CreateStack" in result["diff"]["prepared"]


# -- no change ---------------------------------------------------------------------------------


@pytest.mark.aws
def test_identical_template_parameters_and_tags_send_nothing(script: Script, run) -> None:
    # The deployed stack reports the number as "1200.0": still the same value.
    deployed = stack("UPDATE_COMPLETE", {**PARAMS, "FsxStorageCapacity": "1200.0"})
    script.describe(deployed).template()
    result = run(ARGS)
    assert result["changed"] is False
    assert result["change_set"] == []
    assert result["diff"]["before"] == result["diff"]["after"]
    assert "nothing sent" in result["events"][-1]
    assert result["msg"] == "the stack is up to date"


@pytest.mark.aws
def test_change_set_without_changes_is_deleted_and_reports_no_change(script: Script, run) -> None:
    # The template text differs (a comment), so CloudFormation is asked; it sees no change.
    (
        script.describe(stack("CREATE_COMPLETE"))
        .template(TEMPLATE + "# an older comment\n")
        .create_change_set("UPDATE")
        .change_set({"Status": "FAILED", "StatusReason": NO_CHANGES})
        .add("delete_change_set", {}, ChangeSetName=CS_ID)
    )
    result = run(ARGS)
    assert result["changed"] is False
    assert result["change_set"] == []
    assert "no changes; deleted it" in result["events"][-1]


@pytest.mark.aws
def test_no_updates_error_on_create_change_set_reports_no_change(script: Script, run) -> None:
    script.describe(stack("CREATE_COMPLETE")).template(TEMPLATE + "\n")
    script.stubber.add_client_error(
        "create_change_set",
        service_error_code="ValidationError",
        service_message="No updates are to be performed.",
        http_status_code=400,
    )
    assert run(ARGS)["changed"] is False


# -- update ------------------------------------------------------------------------------------


def updated_params() -> dict[str, str]:
    return {**PARAMS, "SshAllowedCidr": "198.51.100.0/24"}


@pytest.mark.aws
def test_update_executes_an_update_change_set(script: Script, run, clock) -> None:
    after = updated_params()
    done = stack(
        "UPDATE_COMPLETE", after, Outputs=[{"OutputKey": "VpcId", "OutputValue": "vpc-0a1b"}]
    )
    (
        script.describe(stack("CREATE_COMPLETE"))
        .template()
        .create_change_set("UPDATE", after)
        .change_set(fixture_change_set("change-set-update.json"))
        .events(event("e5", "CREATE_COMPLETE"))  # marker: the latest event before executing
        .add("execute_change_set", {}, ChangeSetName=CS_ID)
        .describe(stack("UPDATE_IN_PROGRESS"), by=STACK_ID)
        .events(event("e6", "UPDATE_IN_PROGRESS"), event("e5", "CREATE_COMPLETE"))
        .describe(done, by=STACK_ID)
        .events(
            event("e7", "UPDATE_COMPLETE"),
            event("e6", "UPDATE_IN_PROGRESS"),
            event("e5", "CREATE_COMPLETE"),
        )
        .describe(done, by=STACK_ID)
    )
    result = run({**ARGS, "ssh_allowed_cidr": "198.51.100.0/24"})
    assert result["changed"] is True
    assert result["stack_status"] == "UPDATE_COMPLETE"
    assert result["outputs"] == {"VpcId": "vpc-0a1b"}
    assert [(c["action"], c["logical_id"], c["replacement"]) for c in result["change_set"]] == [
        ("Modify", "LoginNodeSecurityGroup", "False"),
        ("Modify", "HeadNodeSecurityGroup", "Conditional"),
    ]
    diff = result["diff"]
    assert diff["before"]["parameters"]["SshAllowedCidr"] == "192.0.2.0/24"
    assert diff["after"]["parameters"]["SshAllowedCidr"] == "198.51.100.0/24"
    assert {
        k for k in PARAMS if diff["before"]["parameters"][k] != diff["after"]["parameters"][k]
    } == {"SshAllowedCidr"}
    assert "Modify LoginNodeSecurityGroup" in diff["prepared"]
    assert clock == [10.0]


@pytest.mark.aws
def test_update_rollback_names_the_first_failing_resource(script: Script, run) -> None:
    after = updated_params()
    failed = event(
        "e7",
        "UPDATE_FAILED",
        "Vpc",
        ResourceStatusReason='Resource handler returned message: "The CIDR is invalid"',
    )
    (
        script.describe(stack("CREATE_COMPLETE"))
        .template()
        .create_change_set("UPDATE", after)
        .change_set(fixture_change_set("change-set-update.json"))
        .events(event("e5", "CREATE_COMPLETE"))
        .add("execute_change_set", {}, ChangeSetName=CS_ID)
        .describe(stack("UPDATE_ROLLBACK_COMPLETE"), by=STACK_ID)
        .events(event("e8", "UPDATE_ROLLBACK_COMPLETE"), failed, event("e5", "CREATE_COMPLETE"))
        .events(event("e8", "UPDATE_ROLLBACK_COMPLETE"), failed, event("e5", "CREATE_COMPLETE"))
    )
    result = run({**ARGS, "ssh_allowed_cidr": "198.51.100.0/24"})
    assert result["failed"] is True
    assert result["msg"].startswith(
        f'stack {NAME}: Vpc (AWS::EC2::VPC) failed: Resource handler returned message: "The CIDR'
    )
    assert "[update ended in UPDATE_ROLLBACK_COMPLETE]" in result["msg"]
    assert "previous configuration" in result["msg"]
    assert result["failed_resource"]["logical_id"] == "Vpc"
    assert result["stack_status"] == "UPDATE_ROLLBACK_COMPLETE"


# -- check mode ----------------------------------------------------------------------------------


@pytest.mark.aws
def test_check_mode_on_an_existing_stack_previews_and_deletes_the_change_set(
    script: Script, run
) -> None:
    (
        script.describe(stack("CREATE_COMPLETE"))
        .template()
        .create_change_set("UPDATE", updated_params())
        .change_set(fixture_change_set("change-set-update.json"))
        .add("delete_change_set", {}, ChangeSetName=CS_ID)
    )  # and nothing is executed: the Stubber refuses any further call
    result = run({**ARGS, "ssh_allowed_cidr": "198.51.100.0/24"}, check=True)
    assert result["changed"] is True
    assert result["stack_status"] == "CREATE_COMPLETE"
    assert len(result["change_set"]) == 2
    assert result["diff"]["after"]["parameters"]["SshAllowedCidr"] == "198.51.100.0/24"
    assert "Modify HeadNodeSecurityGroup" in result["diff"]["prepared"]
    assert "change set preview" in result["msg"]


@pytest.mark.aws
def test_check_mode_warns_when_a_change_replaces_or_removes_data(
    script: Script, run, warnings: list[str]
) -> None:
    described = fixture_change_set("change-set-update.json")
    described["Changes"] = [
        {
            "Type": "Resource",
            "ResourceChange": {
                "Action": "Modify",
                "LogicalResourceId": "FsxFileSystem",
                "ResourceType": "AWS::FSx::FileSystem",
                "Replacement": "True",
            },
        },
        {
            "Type": "Resource",
            "ResourceChange": {
                "Action": "Remove",
                "LogicalResourceId": "NodeAssetsBucket",
                "ResourceType": "AWS::S3::Bucket",
            },
        },
        *described["Changes"],  # security groups: no warning
    ]
    (
        script.describe(stack("CREATE_COMPLETE"))
        .template()
        .create_change_set("UPDATE", updated_params())
        .change_set(described)
        .add("delete_change_set", {}, ChangeSetName=CS_ID)
    )
    result = run({**ARGS, "ssh_allowed_cidr": "198.51.100.0/24"}, check=True)
    assert result["changed"] is True
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith(
        "FsxFileSystem (AWS::FSx::FileSystem) would be replaced: the new one starts empty"
    )
    assert "UpdateReplacePolicy Retain" in warnings[0]
    assert warnings[1] == "NodeAssetsBucket (AWS::S3::Bucket) would be removed, with its data"


@pytest.mark.aws
def test_check_mode_for_a_new_stack_lists_every_resource_and_leaves_nothing(
    script: Script, run
) -> None:
    (
        script.missing()
        .create_change_set("CREATE", stack_id=NEW_STACK_ID)
        .change_set(fixture_change_set("change-set-create.json"))
        .add("delete_change_set", {}, ChangeSetName=CS_ID)
        .add("delete_stack", {}, StackName=NEW_STACK_ID)  # the empty REVIEW_IN_PROGRESS stack
        .describe(stack("DELETE_COMPLETE", stack_id=NEW_STACK_ID), by=NEW_STACK_ID)
        .events(event("e2", "DELETE_COMPLETE", stack_id=NEW_STACK_ID), by=NEW_STACK_ID)
    )
    result = run(ARGS, check=True)
    assert result["changed"] is True
    assert result["stack_id"] is None
    assert [c["action"] for c in result["change_set"]] == ["Add", "Add", "Add"]
    assert result["diff"]["before"] == {}
    assert result["diff"]["after"]["tags"] == {"team": "ml"}


# -- failures and failed stacks ------------------------------------------------------------------


@pytest.mark.aws
def test_failed_create_names_the_first_failing_resource_and_its_reason(script: Script, run) -> None:
    events = fixture_events()
    (
        script.missing()
        .create_change_set("CREATE")
        .change_set(fixture_change_set("change-set-create.json"))
        .add("execute_change_set", {}, ChangeSetName=CS_ID)
        .describe(stack("ROLLBACK_COMPLETE"), by=STACK_ID)
        .events(*events)
        .events(*events)  # the failure's cause
    )
    result = run(ARGS)
    assert result["failed"] is True
    msg = result["msg"]
    assert msg.startswith(f"stack {NAME}: FsxFileSystem (AWS::FSx::FileSystem) failed: ")
    assert "Storage capacity 1300 GiB is not valid for PERSISTENT_2" in msg
    assert "[create ended in ROLLBACK_COMPLETE]" in msg
    assert "replace_failed_stack: true" in msg
    assert result["failed_resource"] == {
        "logical_id": "FsxFileSystem",
        "resource_type": "AWS::FSx::FileSystem",
        "status": "CREATE_FAILED",
        "reason": events[7]["ResourceStatusReason"],
    }
    assert result["recent_events"][-1].endswith("ROLLBACK_COMPLETE")
    assert any(
        "NodeAssetsBucket" in line and "cancelled" in line for line in result["recent_events"]
    )


@pytest.mark.aws
def test_rollback_complete_stack_is_not_replaced_without_the_option(script: Script, run) -> None:
    script.describe(stack("ROLLBACK_COMPLETE")).events(*fixture_events())
    result = run(ARGS)
    assert result["failed"] is True
    assert result["msg"].startswith(f"stack {NAME} is in ROLLBACK_COMPLETE; its creation failed: ")
    assert "FsxFileSystem (AWS::FSx::FileSystem) CREATE_FAILED" in result["msg"]
    assert "replace_failed_stack: true" in result["msg"]
    assert result["stack_status"] == "ROLLBACK_COMPLETE"


@pytest.mark.aws
def test_rollback_complete_stack_is_deleted_and_created_again_with_the_option(
    script: Script, run
) -> None:
    created = stack("CREATE_COMPLETE", stack_id=NEW_STACK_ID)
    (
        script.describe(stack("ROLLBACK_COMPLETE"))
        .events(*fixture_events())  # the cause, for the record
        .events(*fixture_events())  # latest event: the marker for the deletion
        .add("delete_stack", {}, StackName=STACK_ID)
        .describe(stack("DELETE_COMPLETE"), by=STACK_ID)
        .events(event("e30", "DELETE_COMPLETE"), *fixture_events())
        .create_change_set("CREATE", stack_id=NEW_STACK_ID)
        .change_set(fixture_change_set("change-set-create.json"))
        .add("execute_change_set", {}, ChangeSetName=CS_ID)
        .describe(created, by=NEW_STACK_ID)
        .events(event("e2", "CREATE_COMPLETE", stack_id=NEW_STACK_ID), by=NEW_STACK_ID)
        .describe(created, by=NEW_STACK_ID)
    )
    result = run({**ARGS, "replace_failed_stack": True})
    assert result["changed"] is True
    assert result["stack_id"] == NEW_STACK_ID
    assert result["diff"]["prepared"].startswith(f"replaced the ROLLBACK_COMPLETE stack {STACK_ID}")
    assert any("deleting the ROLLBACK_COMPLETE stack" in line for line in result["events"])


@pytest.mark.aws
def test_deadline_exceeded_fails_with_what_to_do(script: Script, run, clock) -> None:
    (
        script.describe(stack("CREATE_COMPLETE"))
        .template()
        .create_change_set("UPDATE", updated_params())
        .change_set(fixture_change_set("change-set-update.json"))
        .events(event("e5", "CREATE_COMPLETE"))
        .add("execute_change_set", {}, ChangeSetName=CS_ID)
    )
    for _ in range(4):  # polls at 0, 10, 20, 30 s; the deadline is 30 s
        script.describe(stack("UPDATE_IN_PROGRESS"), by=STACK_ID).events(
            event("e6", "UPDATE_IN_PROGRESS", "Vpc"), event("e5", "CREATE_COMPLETE")
        )
    result = run({**ARGS, "ssh_allowed_cidr": "198.51.100.0/24", "wait_timeout": 30})
    assert result["failed"] is True
    assert result["msg"].startswith(
        f"stack {NAME}: still waiting for update of the stack after 30s (wait_timeout)"
    )
    assert "Re-run the task to wait again" in result["msg"]
    assert clock == [10.0, 10.0, 10.0]
    assert result["events"][-1].split(None, 1)[1].startswith("UPDATE_IN_PROGRESS | ")


# -- large templates -----------------------------------------------------------------------------


BIG_TEMPLATE = TEMPLATE + "".join(f"# padding line {i:05d} {'x' * 40}\n" for i in range(1000))


def test_a_template_over_the_inline_limit_needs_a_bucket(run, monkeypatch) -> None:
    monkeypatch.setattr(AnsibleAWSModule, "client", lambda *a, **k: pytest.fail("no AWS call"))
    result = run({**ARGS, "template_body": BIG_TEMPLATE})
    assert result["failed"] is True
    assert f"the template is {len(BIG_TEMPLATE)} bytes" in result["msg"]
    assert "set template_bucket" in result["msg"]


@pytest.mark.aws
def test_a_large_template_goes_through_s3_once(script: Script, run) -> None:
    digest = hashlib.sha256(BIG_TEMPLATE.encode()).hexdigest()
    key = f"xpu-parallelcluster/cloudformation/{NAME}/{digest}.yaml"
    script.s3.add_client_error(
        "head_object",
        service_error_code="404",
        http_status_code=404,
        expected_params={"Bucket": "tpl-bucket", "Key": key},
    )
    script.s3.add_response(
        "put_object",
        {},
        {
            "Bucket": "tpl-bucket",
            "Key": key,
            "Body": BIG_TEMPLATE.encode(),
            "ContentType": "application/x-yaml",
        },
    )
    url = f"https://s3.us-east-1.amazonaws.com/tpl-bucket/{key}"
    (
        script.missing()
        .create_change_set("CREATE", stack_id=NEW_STACK_ID, template={"TemplateURL": url})
        .change_set(fixture_change_set("change-set-create.json"))
        .add("delete_change_set", {}, ChangeSetName=CS_ID)
        .add("delete_stack", {}, StackName=NEW_STACK_ID)
        .describe(stack("DELETE_COMPLETE", stack_id=NEW_STACK_ID), by=NEW_STACK_ID)
        .events(event("e2", "DELETE_COMPLETE", stack_id=NEW_STACK_ID), by=NEW_STACK_ID)
    )
    result = run(
        {**ARGS, "template_body": BIG_TEMPLATE, "template_bucket": "tpl-bucket"}, check=True
    )
    assert result["changed"] is True
    assert len(result["change_set"]) == 3


# -- absent and read -----------------------------------------------------------------------------


@pytest.mark.aws
def test_absent_deletes_and_waits_until_gone(script: Script, run, clock) -> None:
    (
        script.describe(stack("UPDATE_COMPLETE"))
        .buckets()
        .events(event("e5", "UPDATE_COMPLETE"))
        .add("delete_stack", {}, StackName=STACK_ID)
        .describe(stack("DELETE_IN_PROGRESS"), by=STACK_ID)
        .events(event("e6", "DELETE_IN_PROGRESS"), event("e5", "UPDATE_COMPLETE"))
        .missing(STACK_ID)
    )
    result = run({"name": NAME, "state": "absent", "region": "us-east-1"})
    assert result["changed"] is True
    assert result["stack_status"] == "DELETE_COMPLETE"
    assert result["diff"]["after"] == {}
    assert clock == [10.0]


@pytest.mark.aws
def test_absent_stack_that_does_not_exist_is_unchanged(script: Script, run) -> None:
    script.missing()
    result = run({"name": NAME, "state": "absent", "region": "us-east-1"})
    assert result["changed"] is False


@pytest.mark.aws
def test_absent_in_check_mode_predicts_without_deleting(script: Script, run) -> None:
    script.describe(stack("UPDATE_COMPLETE")).buckets()
    result = run({"name": NAME, "state": "absent", "region": "us-east-1"}, check=True)
    assert result["changed"] is True
    assert "would be deleted" in result["diff"]["prepared"]
    assert result["emptied_buckets"] == {}


ASSETS = "ml1-infra-nodeassetsbucket-1a2b3c"
RETAINED_TEMPLATE = """\
Resources:
  NodeAssetsBucket:
    Type: AWS::S3::Bucket
  Kept:
    Type: AWS::S3::Bucket
    DeletionPolicy: Retain
  KeptWhen:
    Type: AWS::S3::Bucket
    DeletionPolicy: !If [Prod, Retain, Delete]
"""


@pytest.mark.aws
def test_absent_empties_the_stacks_versioned_buckets_before_deleting(
    script: Script, run, clock
) -> None:
    (
        script.describe(stack("UPDATE_COMPLETE"))
        .buckets(
            bucket_resource("NodeAssetsBucket", ASSETS),
            bucket_resource("Kept", "kept-bucket"),
            bucket_resource("KeptWhen", "kept-when-bucket"),
            template=RETAINED_TEMPLATE,
        )
        .versions(
            ASSETS,
            {
                "Versions": [version("bootstrap.sh", "v2"), version("bootstrap.sh", "v1")],
                "DeleteMarkers": [version("old.yml", "d1")],
                "IsTruncated": True,
                "NextKeyMarker": "old.yml",
                "NextVersionIdMarker": "d1",
            },
        )
        .delete_objects(ASSETS, [("bootstrap.sh", "v2"), ("bootstrap.sh", "v1"), ("old.yml", "d1")])
        .versions(
            ASSETS,
            {"Versions": [version("node-vars.yml", "null")], "IsTruncated": False},
            KeyMarker="old.yml",
            VersionIdMarker="d1",
        )
        .delete_objects(ASSETS, [("node-vars.yml", "null")])
        .events(event("e5", "UPDATE_COMPLETE"))
        .add("delete_stack", {}, StackName=STACK_ID)
        .missing(STACK_ID)
    )
    result = run({"name": NAME, "state": "absent", "region": "us-east-1"})
    assert result["changed"] is True
    # retained buckets (also behind a condition) keep their objects
    assert result["emptied_buckets"] == {ASSETS: 4}
    assert any(f"emptied bucket {ASSETS} (4 object versions)" in line for line in result["events"])


@pytest.mark.aws
def test_absent_in_check_mode_counts_what_it_would_empty(script: Script, run) -> None:
    (
        script.describe(stack("UPDATE_COMPLETE"))
        .buckets(bucket_resource("NodeAssetsBucket", ASSETS))
        .versions(ASSETS, {"Versions": [version("a", "1"), version("b", "2")]})
    )
    result = run({"name": NAME, "state": "absent", "region": "us-east-1"}, check=True)
    assert result["changed"] is True
    assert result["emptied_buckets"] == {ASSETS: 2}
    assert (
        f"bucket {ASSETS} would be emptied first (2 object versions)" in result["diff"]["prepared"]
    )


@pytest.mark.aws
def test_absent_names_an_object_it_could_not_delete(script: Script, run) -> None:
    (
        script.describe(stack("UPDATE_COMPLETE"))
        .buckets(bucket_resource("NodeAssetsBucket", ASSETS))
        .versions(ASSETS, {"Versions": [version("a", "1")]})
        .delete_objects(
            ASSETS,
            [("a", "1")],
            Errors=[{"Key": "a", "VersionId": "1", "Code": "AccessDenied", "Message": "denied"}],
        )
    )
    result = run({"name": NAME, "state": "absent", "region": "us-east-1"})
    assert result["failed"] is True
    assert f"bucket {ASSETS} could not be emptied" in result["msg"]
    assert "a (1): AccessDenied denied" in result["msg"]
    assert "s3:DeleteObjectVersion" in result["msg"]


@pytest.mark.aws
def test_absent_skips_a_bucket_already_gone_and_can_leave_buckets_alone(
    script: Script, run
) -> None:
    script.describe(stack("DELETE_FAILED")).buckets(bucket_resource("NodeAssetsBucket", ASSETS))
    script.s3.add_client_error(
        "list_object_versions", service_error_code="NoSuchBucket", http_status_code=404
    )
    result = run({"name": NAME, "state": "absent", "region": "us-east-1"}, check=True)
    assert result["emptied_buckets"] == {ASSETS: 0}
    script.describe(stack("DELETE_FAILED"))
    result = run(
        {"name": NAME, "state": "absent", "region": "us-east-1", "empty_buckets": False},
        check=True,
    )
    assert result["changed"] is True and result["emptied_buckets"] == {}


@pytest.mark.aws
def test_absent_refuses_a_protected_stack_unless_told(script: Script, run) -> None:
    script.describe(stack("UPDATE_COMPLETE", EnableTerminationProtection=True))
    result = run({"name": NAME, "state": "absent", "region": "us-east-1"})
    assert result["failed"] is True
    assert "termination_protection: false" in result["msg"]


@pytest.mark.aws
def test_read_returns_outputs_without_changing_anything(script: Script, run) -> None:
    outputs = [{"OutputKey": k, "OutputValue": v} for k, v in OUTPUTS.items()]
    script.describe(stack("UPDATE_COMPLETE", Outputs=outputs))
    result = run({"name": NAME, "state": "read", "region": "us-east-1"}, check=True)
    assert result["changed"] is False
    assert result["outputs"] == OUTPUTS
    assert result["parameters"]["ClusterName"] == "ml1"


@pytest.mark.aws
def test_read_of_a_missing_stack_fails_clearly(script: Script, run) -> None:
    script.missing()
    result = run({"name": NAME, "state": "read", "region": "us-east-1"})
    assert result["failed"] is True
    assert result["msg"].startswith(f"stack {NAME} does not exist (state: read changes nothing)")


# -- options -------------------------------------------------------------------------------------


@pytest.mark.aws
def test_legacy_amp_is_sent_as_amp_only_with_a_deprecation(
    script: Script, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Module-side deprecations, as on a real module run (a test elsewhere in the session may
    # have imported controller code, which sends them to the display), in a fresh store.
    monkeypatch.setattr(module_internal, "is_controller", False)
    monkeypatch.setattr(module_warnings, "_global_deprecations", {})
    script.describe(stack("UPDATE_COMPLETE", {**PARAMS, "MonitoringType": "amp-only"})).template()
    result = run({**ARGS, "monitoring": {"type": "amp"}})
    assert result["changed"] is False  # amp is amp-only: nothing to change
    [deprecation] = result["deprecations"]  # ansible-core 2.19 DeprecationSummary
    assert "'amp' is the legacy spelling of 'amp-only'" in deprecation["event"]["msg"]
    assert deprecation["version"] == "2.0.0"
    assert deprecation["deprecator"]["resolved_name"] == "xpu.parallelcluster"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"availability_zones": ["a", "b", "c"]}, "give one or two distinct zones"),
        ({"availability_zones": ["a", "a"]}, "give one or two distinct zones"),
        ({"ssh_allowed_cidr": "0.0.0.0/0"}, "has prefix /0; use /8 to /32"),
        ({"ssh_allowed_cidr": "10.0.0.300/24"}, "is not an IPv4 CIDR"),
        ({"vpc_cidr": "10.0.0.0/20"}, "vpc_cidr: 10.0.0.0/20 has prefix /20; use /16"),
        ({"fsx": {"existing_id": "fs-1", "storage_capacity": 1200}}, "mutually exclusive"),
        ({"fsx": {"existing_id": "vol-0123456789"}}, "is not an FSx file system id"),
        ({"fsx": {"storage_capacity": 3000}}, "3000 GiB is not valid"),
        (
            {"fsx": {"deployment_type": "PERSISTENT_1"}},
            "throughput 250 MB/s/TiB is not offered for PERSISTENT_1",
        ),
        ({"monitoring": {"type": "self-hosting"}}, "in two Availability Zones"),
        ({"monitoring": {"type": "none", "certificate_arn": "arn:x"}}, "only by monitoring.type"),
        ({"monitoring": {"type": "cloudwatch"}}, "value of type must be one of"),
        ({"name": "1-infra"}, "is not a CloudFormation stack name"),
        ({"ssh_allowed_cidr": None}, "state is present but all of the following are missing"),
        ({"template": "/x.yaml"}, "mutually exclusive: template|template_body"),
        ({"s3_endpoint_extra_resources": ["arn:aws:s3:::d"]}, "S3EndpointExtraResources (option"),
        # the shipped template's own constraints, checked before CloudFormation sees them
        (
            {**SHIPPED, "cluster_name": "a" * 26},
            "cluster_name: '" + "a" * 26 + "' does not match ^[a-zA-Z][a-zA-Z0-9-]{0,24}$ "
            "(1-25 characters",
        ),
        (
            {**SHIPPED, "monitoring": {"type": "none", "instance_type": "t3medium"}},
            "monitoring.instance_type: 't3medium' does not match",
        ),
        (
            {**SHIPPED, "s3_endpoint_extra_resources": ["my-data-bucket"]},
            "s3_endpoint_extra_resources: 'my-data-bucket' does not match",
        ),
    ],
)
def test_offline_validation_fails_before_any_aws_call(
    run, monkeypatch: pytest.MonkeyPatch, changes: dict, message: str
) -> None:
    def no_client(*args, **kwargs):
        raise AssertionError("validation must fail before a client is created")

    monkeypatch.setattr(AnsibleAWSModule, "client", no_client)
    args = {**ARGS, **changes}
    result = run({k: v for k, v in args.items() if v is not None})
    assert result["failed"] is True
    assert message in result["msg"]


def _normalized(options: dict[str, Any], nested: str) -> dict[str, Any]:
    """Type, elements, choices, default and required of each option, recursively; ``nested`` is
    where sub-options live (``suboptions`` in DOCUMENTATION, ``options`` in an argument spec)."""
    spec = {}
    for name, option in options.items():
        entry = {
            "type": option.get("type", "str"),
            "elements": option.get("elements"),
            "choices": option.get("choices"),
            "default": option.get("default"),
            "required": option.get("required", False),
        }
        if nested in option:
            entry["options"] = _normalized(option[nested], nested)
        spec[name] = entry
    return spec


def test_documentation_matches_the_argument_spec() -> None:
    documented = yaml.safe_load(infra_stack.DOCUMENTATION)
    assert _normalized(documented["options"], "suboptions") == _normalized(
        infra_stack.argument_spec(), "options"
    )
    returned = yaml.safe_load(infra_stack.RETURN)
    keys = {"stack_id", "stack_status", "outputs", "parameters", "change_set", "events", "diff"}
    assert keys <= set(returned)
    assert all("type" in doc and "returned" in doc for doc in returned.values())
    yaml.safe_load(infra_stack.EXAMPLES)


def test_every_contract_parameter_has_an_option() -> None:
    contract = set(PARAMS)
    assert contract <= set(infra_stack.OPTION_FOR_PARAMETER)


def test_action_plugin_defaults_to_the_collections_template() -> None:
    # In a child process: importing controller code (ansible.plugins.action) would switch this
    # process's module warnings and deprecations to controller mode for every later test.
    code = (
        "from ansible_collections.xpu.parallelcluster.plugins.action import infra_stack as a; "
        "print(a.COLLECTION_TEMPLATE)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT / ".cache" / "collections")},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert Path(proc.stdout.strip()) == ROOT / "files" / "cloudformation" / "infra.yaml"
