"""xpu.parallelcluster.cloudwatch_dashboard through its main(), against a botocore Stubber.

Each test scripts the CloudWatch calls the module must make, in order and with the parameters it
must send; an unexpected call fails the test (Stubber), and so does an expected call that never
happens. Nothing leaves the process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.xpu.parallelcluster.plugins.modules import cloudwatch_dashboard
from botocore.stub import Stubber

from .conftest import ansible_doc, stubbed_client

ROOT = Path(__file__).resolve().parents[4]
NAME = "xpu-parallelcluster-demo"
ARN = f"arn:aws:cloudwatch::123456789012:dashboard/{NAME}"
TEXT = {"type": "text", "x": 0, "y": 0, "width": 6, "height": 3, "properties": {"markdown": "#"}}
CPU = {
    "type": "metric",
    "x": 0,
    "y": 3,
    "width": 12,
    "height": 6,
    "properties": {
        "region": "us-east-1",
        "title": "CPU",
        "metrics": [["AWS/EC2", "CPUUtilization", "InstanceId", "i-0123456789abcdef0"]],
    },
}
BODY: dict[str, Any] = {"widgets": [TEXT, CPU]}
ARGS: dict[str, Any] = {"name": NAME, "region": "us-east-1"}


def compact(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))


class Script:
    """The calls the module must make, in order."""

    def __init__(self, stubber: Stubber) -> None:
        self.stubber = stubber

    def get(self, body: Any | None = None, name: str = NAME) -> Script:
        if body is None:
            self.stubber.add_client_error(
                "get_dashboard",
                "ResourceNotFound",
                "Dashboard does not exist",
                404,
                expected_params={"DashboardName": name},
            )
        else:
            text = body if isinstance(body, str) else compact(body)
            self.stubber.add_response(
                "get_dashboard",
                {"DashboardArn": ARN, "DashboardBody": text, "DashboardName": name},
                {"DashboardName": name},
            )
        return self

    def put(self, body: Any, messages: list[dict[str, str]] | None = None) -> Script:
        response = {"DashboardValidationMessages": messages} if messages else {}
        self.stubber.add_response(
            "put_dashboard", response, {"DashboardName": NAME, "DashboardBody": compact(body)}
        )
        return self

    def delete(self) -> Script:
        self.stubber.add_response("delete_dashboards", {}, {"DashboardNames": [NAME]})
        return self


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch):
    with stubbed_client(monkeypatch, "cloudwatch") as (stubber, _raw):
        yield Script(stubber)


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AnsibleAWSModule, "client", lambda *a, **k: pytest.fail("no AWS call"))


@pytest.fixture
def run(run_module):
    def run_dashboard(
        args: dict[str, Any], check: bool = False, diff: bool = False
    ) -> dict[str, Any]:
        return run_module(cloudwatch_dashboard.main, {**ARGS, **args}, check=check, diff=diff)

    return run_dashboard


# ---------------------------------------------------------------------------------------------
# state=present
# ---------------------------------------------------------------------------------------------


@pytest.mark.aws
def test_missing_dashboard_is_created(script: Script, run) -> None:
    script.get(None).put(BODY).get(BODY)
    result = run({"body": BODY})
    assert not result.failed, result
    assert result["changed"] is True
    assert result["dashboard_name"] == NAME and result["dashboard_arn"] == ARN
    assert result["body"] == BODY and result["validation_messages"] == []
    assert "diff" not in result


@pytest.mark.aws
@pytest.mark.parametrize(
    "given",
    [
        BODY,
        json.dumps(BODY),
        # Other key order and white space: the same dashboard.
        json.dumps({"widgets": [dict(reversed(TEXT.items())), CPU]}, indent=4, sort_keys=True),
    ],
    ids=["data", "json", "reordered-json"],
)
def test_equal_body_is_no_change(script: Script, run, given: Any) -> None:
    # Stored with other white space and key order than the module would send.
    script.get(json.dumps(BODY, indent=1, sort_keys=True))
    result = run({"body": given})
    assert not result.failed, result
    assert result["changed"] is False
    assert result["dashboard_arn"] == ARN and result["body"] == BODY


@pytest.mark.aws
def test_different_body_is_updated(script: Script, run) -> None:
    script.get({"widgets": [TEXT]}).put(BODY).get(BODY)
    result = run({"body": json.dumps(BODY)})
    assert not result.failed, result
    assert result["changed"] is True and result["dashboard_arn"] == ARN
    assert result["body"] == BODY


@pytest.mark.aws
def test_check_mode_create_writes_nothing(script: Script, run) -> None:
    script.get(None)
    result = run({"body": BODY}, check=True)
    assert not result.failed, result
    assert result["changed"] is True and result["dashboard_arn"] is None


@pytest.mark.aws
def test_check_mode_update_writes_nothing(script: Script, run) -> None:
    script.get({"widgets": [TEXT]})
    result = run({"body": BODY}, check=True)
    assert not result.failed, result
    assert result["changed"] is True and result["dashboard_arn"] == ARN


@pytest.mark.aws
def test_check_mode_equal_body_is_no_change(script: Script, run) -> None:
    script.get(BODY)
    assert run({"body": BODY}, check=True)["changed"] is False


@pytest.mark.aws
def test_diff_shows_bodies_as_pretty_json(script: Script, run) -> None:
    old = {"widgets": [TEXT]}
    script.get(old).put(BODY).get(BODY)
    result = run({"body": BODY}, diff=True)
    assert not result.failed, result
    diff = result["diff"]
    assert diff["before"] == json.dumps(old, indent=2, sort_keys=True) + "\n"
    assert diff["after"] == json.dumps(BODY, indent=2, sort_keys=True) + "\n"
    assert json.loads(diff["after"]) == BODY and "\n  " in diff["after"]


@pytest.mark.aws
def test_diff_of_a_create_starts_empty(script: Script, run) -> None:
    script.get(None)
    result = run({"body": BODY}, check=True, diff=True)
    assert result["diff"]["before"] == "" and json.loads(result["diff"]["after"]) == BODY


@pytest.mark.aws
def test_refused_body_fails_with_the_validation_messages(script: Script, run) -> None:
    script.get(None).stubber.add_client_error(
        "put_dashboard",
        "InvalidParameterInput",
        "The field DashboardBody must be a valid JSON object",
        400,
        modeled_fields={
            "message": "The field DashboardBody must be a valid JSON object",
            "dashboardValidationMessages": [
                {"DataPath": "/widgets/1/properties", "Message": "Should have property metrics"}
            ],
        },
    )
    result = run({"body": BODY})
    assert result.failed
    assert f"refused the body of dashboard {NAME}" in result["msg"]
    assert "/widgets/1/properties: Should have property metrics" in result["msg"]
    assert "fix body" in result["msg"]


@pytest.mark.aws
def test_messages_with_a_body_not_stored_are_errors(script: Script, run) -> None:
    error = {"DataPath": "/widgets/0/type", "Message": "Invalid widget type"}
    script.get({"widgets": [TEXT]}).put(BODY, [error]).get({"widgets": [TEXT]})
    result = run({"body": BODY})
    assert result.failed
    assert f"did not store the body of dashboard {NAME}" in result["msg"]
    assert "/widgets/0/type: Invalid widget type" in result["msg"]


@pytest.mark.aws
def test_messages_with_the_body_stored_are_warnings(script: Script, run, warnings) -> None:
    warning = {"DataPath": "/widgets/1/properties/metrics/0", "Message": "Unknown metric"}
    script.get(None).put(BODY, [warning]).get(BODY)
    result = run({"body": BODY})
    assert not result.failed, result
    assert result["changed"] is True
    assert result["validation_messages"] == [
        {"data_path": "/widgets/1/properties/metrics/0", "message": "Unknown metric"}
    ]
    assert warnings == [f"dashboard {NAME}: /widgets/1/properties/metrics/0: Unknown metric"]


@pytest.mark.aws
def test_api_error_goes_through_fail_json_aws(script: Script, run) -> None:
    script.stubber.add_client_error("get_dashboard", "AccessDenied", "denied", 403)
    result = run({"body": BODY})
    assert result.failed
    assert f"dashboard {NAME}: CloudWatch GetDashboard failed" in result["msg"]
    assert "permissions" in result["msg"]
    assert result["error"]["code"] == "AccessDenied"


# ---------------------------------------------------------------------------------------------
# state=absent
# ---------------------------------------------------------------------------------------------


@pytest.mark.aws
def test_absent_deletes_an_existing_dashboard(script: Script, run) -> None:
    script.get(BODY).delete()
    result = run({"state": "absent"}, diff=True)
    assert not result.failed, result
    assert result["changed"] is True and result["dashboard_arn"] == ARN
    assert result["body"] == BODY
    assert json.loads(result["diff"]["before"]) == BODY and result["diff"]["after"] == ""


@pytest.mark.aws
def test_absent_missing_dashboard_is_no_change(script: Script, run) -> None:
    script.get(None)
    result = run({"state": "absent", "body": "ignored, not JSON"})
    assert not result.failed, result
    assert result["changed"] is False and result["dashboard_arn"] is None
    assert result["body"] is None


@pytest.mark.aws
def test_absent_in_check_mode_deletes_nothing(script: Script, run) -> None:
    script.get(BODY)
    result = run({"state": "absent"}, check=True)
    assert not result.failed, result
    assert result["changed"] is True


# ---------------------------------------------------------------------------------------------
# Refused before any call
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("my dashboard", ["' '", "A-Z, a-z, 0-9, - and _"]),
        ("cluster/gpu.view", ["'.'", "'/'"]),
        ("", ["must not be empty"]),
        ("x" * 256, ["256 characters", "at most 255"]),
        (f"{NAME}\n", ["'\\n'"]),
    ],
    ids=["space", "slash-dot", "empty", "too-long", "newline"],
)
def test_invalid_name_is_refused(no_aws, run, name: str, words: list[str]) -> None:
    result = run({"name": name, "body": BODY})
    assert result.failed and all(w in result["msg"] for w in words), result["msg"]


def test_longest_valid_name_passes_the_check() -> None:
    assert cloudwatch_dashboard.name_problem("A-z_9" * 51) is None


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (None, ["body is required with state=present"]),
        ('{"widgets": [', ["body is not valid JSON", "as data"]),
        ("widgets: []", ["body is not valid JSON"]),
        ('[{"type": "text"}]', ["must be a JSON object with a widgets list, not a list"]),
        ({"widget": []}, ["body has no widgets key", '{"widgets": [']),
        ('{"widgets": {"type": "text"}}', ["has widgets that is not a list"]),
    ],
    ids=["missing", "truncated-json", "yaml-text", "list", "no-widgets", "widgets-dict"],
)
def test_invalid_body_is_refused(no_aws, run, body: Any, words: list[str]) -> None:
    result = run({"body": body} if body is not None else {})
    assert result.failed
    assert result["msg"].startswith(f"dashboard {NAME}: ")
    assert all(w in result["msg"] for w in words), result["msg"]


# ---------------------------------------------------------------------------------------------
# The documentation is the contract.
# ---------------------------------------------------------------------------------------------


def test_documentation_matches_the_argument_spec() -> None:
    doc = yaml.safe_load(cloudwatch_dashboard.DOCUMENTATION)["options"]
    spec = cloudwatch_dashboard.ARGUMENT_SPEC
    assert set(doc) == set(spec)
    for name, option in spec.items():
        assert doc[name]["type"] == option["type"], name
        assert doc[name].get("choices") == option.get("choices"), name
        assert doc[name].get("default") == option.get("default"), name
        assert bool(doc[name].get("required")) == bool(option.get("required")), name


def test_examples_and_return_parse() -> None:
    examples = yaml.safe_load(cloudwatch_dashboard.EXAMPLES)
    assert all("xpu.parallelcluster.cloudwatch_dashboard" in task for task in examples)
    returned = yaml.safe_load(cloudwatch_dashboard.RETURN)
    for key in ("dashboard_name", "dashboard_arn", "body", "validation_messages"):
        assert returned[key]["type"]


def test_ansible_doc_renders() -> None:
    proc = ansible_doc("cloudwatch_dashboard")
    assert proc.returncode == 0, proc.stderr
    assert "widgets" in proc.stdout and "ERROR" not in proc.stderr
