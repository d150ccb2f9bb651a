"""plugins/module_utils/cloudformation.py: parameters, events, change sets and waits.

Pure functions are tested directly; StackManager's waits run against a botocore Stubber (no
network) with a fake clock, so nothing sleeps.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from ansible_collections.amazon.aws.plugins.module_utils.retries import (
    AWSRetry,
    RetryingBotoClientWrapper,
)
from ansible_collections.xpu.parallelcluster.plugins.module_utils import cloudformation as cfu
from botocore.stub import Stubber

FIXTURES = Path(__file__).resolve().parents[3] / "unit" / "fixtures" / "cloudformation"
TEMPLATE = (FIXTURES / "infra-small.yaml").read_text()
NAME = "ml1-infra"
STACK_ID = f"arn:aws:cloudformation:us-east-1:123456789012:stack/{NAME}/0f1e2d3c"
CREATED = datetime(2026, 3, 2, 10, 13, 40)


def load_events(name: str = "events-create-failed.json") -> list[dict[str, Any]]:
    events = json.loads((FIXTURES / name).read_text())["StackEvents"]
    for event in events:
        event["Timestamp"] = datetime.fromisoformat(event["Timestamp"].replace("Z", "+00:00"))
        event.setdefault("StackId", STACK_ID)
        event.setdefault("StackName", NAME)
    return events


def event(event_id: str, status: str, logical: str = NAME, reason: str | None = None) -> dict:
    item = {
        "StackId": STACK_ID,
        "EventId": event_id,
        "StackName": NAME,
        "LogicalResourceId": logical,
        "ResourceType": "AWS::CloudFormation::Stack" if logical == NAME else "AWS::EC2::VPC",
        "ResourceStatus": status,
        "Timestamp": datetime(2026, 3, 2, 11, 0, int(event_id[1:]) % 60),
    }
    if reason:
        item["ResourceStatusReason"] = reason
    return item


def stack(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "StackId": STACK_ID,
        "StackName": NAME,
        "CreationTime": CREATED,
        "StackStatus": status,
        **extra,
    }


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(cfu, "_monotonic", fake.monotonic)
    monkeypatch.setattr(cfu, "_sleep", fake.sleep)
    return fake


@pytest.fixture
def stubbed(clock: FakeClock):
    raw = boto3.client(
        "cloudformation",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(raw) as stubber:
        client = RetryingBotoClientWrapper(raw, AWSRetry.jittered_backoff(retries=1, delay=0))
        yield stubber, client
        stubber.assert_no_pending_responses()


def manager(client, seconds: float = 600) -> cfu.StackManager:
    return cfu.StackManager(client, NAME, cfu.Deadline(seconds), stack_poll=10, change_set_poll=2)


# -- parameters --------------------------------------------------------------------------------


def test_declared_parameters_read_defaults_from_a_yaml_template_with_short_tags() -> None:
    declared = cfu.declared_parameters(TEMPLATE)
    assert list(declared)[:3] == ["ClusterName", "PrimaryAz", "SecondaryAz"]
    assert declared["ClusterName"].default is None
    assert declared["SecondaryAz"].default == ""
    assert declared["FsxStorageCapacity"] == cfu.DeclaredParameter(
        "FsxStorageCapacity", "Number", "1200"
    )
    assert declared["FsxLustreVersion"].default == "2.15"


def test_declared_parameters_from_json() -> None:
    body = json.dumps({"Parameters": {"Size": {"Type": "Number", "Default": 2400.0}}})
    assert cfu.declared_parameters(body)["Size"].default == "2400"


def test_an_unparsable_template_is_a_stack_error() -> None:
    with pytest.raises(cfu.StackError, match="neither valid JSON nor valid YAML"):
        cfu.declared_parameters("Parameters: [unclosed")


@pytest.mark.parametrize(
    ("value", "ptype", "expected"),
    [
        (1200, "Number", "1200"),
        ("1200.0", "Number", "1200"),
        (" 250", "Number", "250"),
        (12.50, "Number", "12.5"),
        ("2.10", "String", "2.10"),  # strings stay exact: Lustre 2.10 is not 2.1
        (True, "String", "true"),
        (None, "String", ""),
        (["arn:aws:s3:::a", "arn:aws:s3:::a/*"], "String", "arn:aws:s3:::a,arn:aws:s3:::a/*"),
        ([1, "2.0"], "List<Number>", "1,2"),
        ("abc", "Number", "abc"),
    ],
)
def test_normalize_value(value: Any, ptype: str, expected: str) -> None:
    assert cfu.normalize_value(value, ptype) == expected


def test_effective_parameters_fill_template_defaults() -> None:
    declared = cfu.declared_parameters(TEMPLATE)
    values = {"ClusterName": "ml1", "PrimaryAz": "us-east-1a", "SshAllowedCidr": "192.0.2.0/24"}
    effective = cfu.effective_parameters(declared, {**values, "FsxStorageCapacity": 2400})
    assert list(effective) == list(declared)
    assert effective["FsxStorageCapacity"] == "2400"
    assert effective["FsxThroughputPerTiB"] == "250"
    assert effective["SecondaryAz"] == ""


def test_effective_parameters_name_the_option_of_an_undeclared_parameter() -> None:
    declared = cfu.declared_parameters(TEMPLATE)
    with pytest.raises(cfu.StackError) as err:
        cfu.effective_parameters(
            declared,
            {"ClusterName": "a", "CreateFsx": False, "S3EndpointExtraResources": None},
            {"CreateFsx": "fsx.create"},
        )
    assert "CreateFsx (option fsx.create)" in err.value.msg
    assert "S3EndpointExtraResources" not in err.value.msg  # unset options are not sent


def test_effective_parameters_require_parameters_without_default() -> None:
    declared = cfu.declared_parameters(TEMPLATE)
    with pytest.raises(cfu.StackError, match=r"requires a value for PrimaryAz \(option zone\)"):
        cfu.effective_parameters(
            declared,
            {"ClusterName": "a", "SshAllowedCidr": "192.0.2.0/24"},
            {"PrimaryAz": "zone"},
        )


def test_parameter_changes_compare_numbers_as_normalised_strings() -> None:
    declared = cfu.declared_parameters(TEMPLATE)
    deployed = {"FsxStorageCapacity": "1200.0", "SshAllowedCidr": "192.0.2.0/24", "Old": "x"}
    wanted = {"FsxStorageCapacity": "1200", "SshAllowedCidr": "198.51.100.0/24", "New": "y"}
    assert cfu.parameter_changes(deployed, wanted, declared) == {
        "SshAllowedCidr": {"before": "192.0.2.0/24", "after": "198.51.100.0/24"},
        "New": {"before": None, "after": "y"},
    }


def test_parameter_changes_resolve_ssm_parameters_only_when_the_values_differ() -> None:
    declared = {
        "Image": cfu.DeclaredParameter(
            "Image", "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>", "/aws/service/ami"
        )
    }
    asked: list[str] = []

    def resolve(name: str) -> str:
        asked.append(name)
        return "ami-0123"

    # AWS keeps the parameter name: equal, nothing resolved.
    assert (
        cfu.parameter_changes(
            {"Image": "/aws/service/ami"}, {"Image": "/aws/service/ami"}, declared, resolve
        )
        == {}
    )
    assert asked == []
    # The emulator stores the resolved AMI: the name still resolves to it.
    assert (
        cfu.parameter_changes(
            {"Image": "ami-0123"}, {"Image": "/aws/service/ami"}, declared, resolve
        )
        == {}
    )
    assert asked == ["/aws/service/ami"]
    assert cfu.parameter_changes(
        {"Image": "ami-0999"}, {"Image": "/aws/service/ami"}, declared, resolve
    ) == {"Image": {"before": "ami-0999", "after": "/aws/service/ami"}}


def test_same_template_compares_text_and_parsed_json() -> None:
    assert cfu.same_template(TEMPLATE, TEMPLATE)
    assert not cfu.same_template(TEMPLATE + "\n", TEMPLATE)
    body = '{"Resources": {"A": {"Type": "AWS::SNS::Topic"}}}'
    assert cfu.same_template({"Resources": {"A": {"Type": "AWS::SNS::Topic"}}}, body)
    assert not cfu.same_template({"Resources": {}}, body)


def test_outputs_parameters_and_tags_as_dicts() -> None:
    described = stack(
        "CREATE_COMPLETE",
        Outputs=[{"OutputKey": "VpcId", "OutputValue": "vpc-1"}],
        Parameters=[{"ParameterKey": "ClusterName", "ParameterValue": "ml1"}],
        Tags=[{"Key": "team", "Value": "ml"}],
    )
    assert cfu.stack_outputs(described) == {"VpcId": "vpc-1"}
    assert cfu.stack_parameters(described) == {"ClusterName": "ml1"}
    assert cfu.stack_tags(described) == {"team": "ml"}
    assert cfu.stack_outputs(stack("CREATE_COMPLETE")) == {}
    assert cfu.stack_outputs(None) == {}


# -- events and change sets --------------------------------------------------------------------


def test_first_failure_is_the_earliest_real_failure_not_a_cancellation() -> None:
    events = cfu._chronological(load_events())
    failure = cfu.first_failure(events)
    assert failure is not None
    assert (failure.logical_id, failure.resource_type, failure.status) == (
        "FsxFileSystem",
        "AWS::FSx::FileSystem",
        "CREATE_FAILED",
    )
    assert "Storage capacity 1300 GiB is not valid" in failure.reason


def test_first_failure_falls_back_to_the_stack_event() -> None:
    events = [
        event("e1", "CREATE_FAILED", "Vpc", "Resource creation cancelled"),
        event("e2", "CREATE_FAILED", NAME, "Template error: instance of Fn::GetAtt ..."),
    ]
    failure = cfu.first_failure(events)
    assert failure is not None and failure.logical_id == NAME
    assert cfu.first_failure([event("e1", "CREATE_COMPLETE", "Vpc")]) is None


def test_summarize_and_format_changes() -> None:
    described = json.loads((FIXTURES / "change-set-update.json").read_text())
    changes = cfu.summarize_changes(described["Changes"])
    assert changes == [
        {
            "action": "Modify",
            "logical_id": "LoginNodeSecurityGroup",
            "resource_type": "AWS::EC2::SecurityGroup",
            "replacement": "False",
        },
        {
            "action": "Modify",
            "logical_id": "HeadNodeSecurityGroup",
            "resource_type": "AWS::EC2::SecurityGroup",
            "replacement": "Conditional",
        },
    ]
    text = cfu.format_changes(changes)
    assert "2 resource change(s)" in text
    assert "Modify HeadNodeSecurityGroup AWS::EC2::SecurityGroup (replacement: Conditional)" in text


def test_is_no_change_recognises_both_aws_messages() -> None:
    reason = "The submitted information didn't contain changes. Submit different information."
    assert cfu.is_no_change({"Status": "FAILED", "StatusReason": reason})
    assert cfu.is_no_change({"Status": "FAILED", "StatusReason": "No updates are to be performed."})
    assert not cfu.is_no_change({"Status": "FAILED", "StatusReason": "Parameter X is invalid"})
    assert not cfu.is_no_change({"Status": "CREATE_COMPLETE"})


# -- templates through S3 ---------------------------------------------------------------------


def test_template_key_and_url() -> None:
    key = cfu.template_key(NAME, "body")
    assert key.startswith(f"xpu-parallelcluster/cloudformation/{NAME}/")
    assert key.endswith(".yaml") and len(key.rsplit("/", 1)[1]) == 64 + 5
    assert cfu.template_key(NAME, "body") == key != cfu.template_key(NAME, "body2")
    assert (
        cfu.s3_template_url("b", "a/k.yaml", "eu-west-1")
        == "https://s3.eu-west-1.amazonaws.com/b/a/k.yaml"
    )
    assert cfu.s3_template_url("b", "k", "cn-north-1").startswith(
        "https://s3.cn-north-1.amazonaws.com.cn/"
    )


@pytest.mark.aws
def test_template_upload_skips_an_object_that_is_already_there() -> None:
    raw = boto3.client(
        "s3", region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    key = cfu.template_key(NAME, TEMPLATE)
    with Stubber(raw) as stubber:
        stubber.add_response("head_object", {"ContentLength": 1}, {"Bucket": "b", "Key": key})
        client = RetryingBotoClientWrapper(raw, AWSRetry.jittered_backoff(retries=1, delay=0))
        upload = cfu.TemplateUpload(lambda: client, "b", NAME, TEMPLATE)
        assert upload() == f"https://s3.eu-west-1.amazonaws.com/b/{key}"
        assert upload() == upload()  # asked once
        assert upload.uploaded is False
        stubber.assert_no_pending_responses()


# -- waits against a stubbed client --------------------------------------------------------------


def events_page(*events: dict, token: str | None = None) -> dict:
    page: dict[str, Any] = {"StackEvents": list(events)}
    if token:
        page["NextToken"] = token
    return page


@pytest.mark.aws
def test_events_since_pages_until_the_marker(stubbed) -> None:
    stubber, client = stubbed
    stubber.add_response(
        "describe_stack_events",
        events_page(event("e5", "UPDATE_COMPLETE"), event("e4", "UPDATE_IN_PROGRESS"), token="t"),
        {"StackName": STACK_ID},
    )
    stubber.add_response(
        "describe_stack_events",
        events_page(event("e3", "UPDATE_IN_PROGRESS", "Vpc"), event("e2", "CREATE_COMPLETE")),
        {"StackName": STACK_ID, "NextToken": "t"},
    )
    found = manager(client).events_since(STACK_ID, "e2", max_pages=5)
    assert [e["EventId"] for e in found] == ["e3", "e4", "e5"]


@pytest.mark.aws
def test_wait_stack_reports_progress_and_sleeps_between_polls(stubbed, clock: FakeClock) -> None:
    stubber, client = stubbed
    sequence = [
        ("UPDATE_IN_PROGRESS", [event("e3", "UPDATE_IN_PROGRESS")]),
        ("UPDATE_IN_PROGRESS", [event("e3", "UPDATE_IN_PROGRESS")]),  # no news: no new line
        ("UPDATE_COMPLETE", [event("e4", "UPDATE_COMPLETE"), event("e3", "UPDATE_IN_PROGRESS")]),
    ]
    for status, events in sequence:
        stubber.add_response(
            "describe_stacks", {"Stacks": [stack(status)]}, {"StackName": STACK_ID}
        )
        stubber.add_response(
            "describe_stack_events",
            events_page(*events, event("e2", "CREATE_COMPLETE")),
            {"StackName": STACK_ID},
        )
    m = manager(client)
    result = m.wait_stack(STACK_ID, "UPDATE", "e2", "CREATE_COMPLETE")
    assert result is not None and result["StackStatus"] == "UPDATE_COMPLETE"
    assert clock.sleeps == [10, 10]
    assert len(m.progress) == 2
    assert "UPDATE_IN_PROGRESS | 11:00:03 ml1-infra" in m.progress[0]
    assert m.progress[1].strip().startswith("20s UPDATE_COMPLETE")


@pytest.mark.aws
def test_wait_stack_ignores_a_stale_status_until_the_operation_shows(stubbed, clock) -> None:
    stubber, client = stubbed
    # First poll races the start of the update: old status, no new event.
    stubber.add_response(
        "describe_stacks", {"Stacks": [stack("UPDATE_COMPLETE")]}, {"StackName": STACK_ID}
    )
    stubber.add_response(
        "describe_stack_events",
        events_page(event("e2", "UPDATE_COMPLETE")),
        {"StackName": STACK_ID},
    )
    stubber.add_response(
        "describe_stacks", {"Stacks": [stack("UPDATE_COMPLETE")]}, {"StackName": STACK_ID}
    )
    stubber.add_response(
        "describe_stack_events",
        events_page(event("e4", "UPDATE_COMPLETE"), event("e2", "UPDATE_COMPLETE")),
        {"StackName": STACK_ID},
    )
    m = manager(client)
    assert m.wait_stack(STACK_ID, "UPDATE", "e2", "UPDATE_COMPLETE") is not None
    assert clock.sleeps == [10]


@pytest.mark.aws
def test_wait_stack_stops_at_the_deadline_with_a_clear_message(stubbed, clock) -> None:
    stubber, client = stubbed
    for _ in range(4):  # polls at 0, 10, 20 and 30 s
        stubber.add_response(
            "describe_stacks", {"Stacks": [stack("CREATE_IN_PROGRESS")]}, {"StackName": STACK_ID}
        )
        stubber.add_response(
            "describe_stack_events",
            events_page(event("e3", "CREATE_IN_PROGRESS", "Vpc")),
            {"StackName": STACK_ID},
        )
    m = manager(client, seconds=30)
    with pytest.raises(cfu.DeadlineExceeded) as err:
        m.wait_stack(STACK_ID, "CREATE", None)
    assert clock.sleeps == [10, 10, 10]
    assert "still waiting for create of the stack after 30s (wait_timeout)" in err.value.msg
    assert "CREATE_IN_PROGRESS | 11:00:03 Vpc (AWS::EC2::VPC) CREATE_IN_PROGRESS" in err.value.msg
    assert "raise wait_timeout" in err.value.msg
    assert err.value.details["events"] == m.progress


@pytest.mark.aws
def test_wait_stack_delete_ends_when_the_stack_is_gone(stubbed) -> None:
    stubber, client = stubbed
    stubber.add_client_error(
        "describe_stacks",
        service_error_code="ValidationError",
        service_message=f"Stack with id {STACK_ID} does not exist",
        http_status_code=400,
        expected_params={"StackName": STACK_ID},
    )
    assert manager(client).wait_stack(STACK_ID, "DELETE", None) is None


@pytest.mark.aws
def test_wait_change_set_polls_and_collects_every_page_of_changes(stubbed, clock) -> None:
    stubber, client = stubbed
    described = json.loads((FIXTURES / "change-set-update.json").read_text())
    first, second = copy.deepcopy(described), copy.deepcopy(described)
    first["Changes"], second["Changes"] = described["Changes"][:1], described["Changes"][1:]
    first["NextToken"] = "page2"
    pending = {"ChangeSetName": described["ChangeSetName"], "Status": "CREATE_IN_PROGRESS"}
    stubber.add_response("describe_change_set", pending, {"ChangeSetName": "cs-1"})
    stubber.add_response("describe_change_set", first, {"ChangeSetName": "cs-1"})
    stubber.add_response(
        "describe_change_set", second, {"ChangeSetName": "cs-1", "NextToken": "page2"}
    )
    m = manager(client)
    description = m.wait_change_set("cs-1")
    assert [c["ResourceChange"]["LogicalResourceId"] for c in description["Changes"]] == [
        "LoginNodeSecurityGroup",
        "HeadNodeSecurityGroup",
    ]
    assert clock.sleeps == [2]
    assert m.progress[-1].endswith(": CREATE_COMPLETE")


@pytest.mark.aws
def test_failure_cause_reads_all_pages_of_events(stubbed) -> None:
    stubber, client = stubbed
    events = load_events()
    stubber.add_response(
        "describe_stack_events", events_page(*events[:8], token="more"), {"StackName": STACK_ID}
    )
    stubber.add_response(
        "describe_stack_events",
        events_page(*events[8:]),
        {"StackName": STACK_ID, "NextToken": "more"},
    )
    cause, recent = manager(client).failure_cause(STACK_ID, None)
    assert cause is not None and cause.logical_id == "FsxFileSystem"
    assert recent[-1].endswith("ROLLBACK_COMPLETE")
    assert len(recent) == len(events)


@pytest.mark.parametrize(
    ("declaration", "value", "problem"),
    [
        ({"AllowedValues": ["a", "b"]}, "c", "'c' is not one of a, b"),
        ({"AllowedPattern": "^[a-z]{0,3}$", "ConstraintDescription": "short"}, "abcd", "(short)"),
        ({"MaxLength": 3}, "abcd", "breaks MaxLength 3"),
        ({"MinLength": "2"}, "a", "breaks MinLength 2"),
        ({"Type": "Number", "MinValue": 50}, "10", "below MinValue 50"),
        ({"Type": "Number", "MaxValue": 50}, "60", "above MaxValue 50"),
        ({"Type": "Number"}, "x", "is not a number"),
        ({"Type": "Number", "AllowedValues": [1200, 2400]}, "1200", None),
        ({"AllowedPattern": "^$|^fs-[0-9a-f]{8}$"}, "", None),
        ({"Type": "CommaDelimitedList", "AllowedPattern": "^x$"}, "a,b", None),
        ({"Type": "AWS::SSM::Parameter::Value<String>", "AllowedPattern": "^x$"}, "/a/b", None),
    ],
)
def test_constraint_violation(declaration: dict, value: str, problem: str | None) -> None:
    found = cfu.constraint_violation(declaration, value)
    assert (found is None) if problem is None else (problem in (found or "")), found
