"""xpu.parallelcluster.amg_service_account_token through its main(), against a botocore Stubber.

Each test scripts the Amazon Managed Grafana calls the module must make, in order and with the
parameters it must send; an unexpected call fails the test (Stubber), and so does an expected call
that never happens. Nothing leaves the process.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.xpu.parallelcluster.plugins.modules import amg_service_account_token
from botocore.stub import ANY, Stubber

from .conftest import stubbed_client

WS = "g-0123456789"
ENDPOINT = f"{WS}.grafana-workspace.us-east-1.amazonaws.com"
ACCOUNT = {"id": "7", "name": "xpu-parallelcluster-provisioning", "isDisabled": "false"}
KEY = "glsa_0123456789abcdef0123456789abcdef_01234567"
ARGS: dict[str, Any] = {"workspace_id": WS, "region": "us-east-1"}


def workspace(status: str = "ACTIVE") -> dict[str, Any]:
    return {
        "workspace": {
            "id": WS,
            "status": status,
            "endpoint": ENDPOINT,
            "grafanaVersion": "10.4",
            "created": datetime(2026, 3, 2, 10, 0, 0),
            "modified": datetime(2026, 3, 2, 10, 0, 0),
            "dataSources": ["PROMETHEUS"],
            "authentication": {"providers": ["AWS_SSO"]},
        }
    }


class Script:
    """The calls the module must make, in order."""

    def __init__(self, stubber: Stubber, client: Any) -> None:
        self.stubber = stubber
        self.client = client

    def add(self, method: str, response: dict[str, Any], **expected: Any) -> Script:
        self.stubber.add_response(method, response, expected)
        return self

    def describe(self, status: str = "ACTIVE") -> Script:
        return self.add("describe_workspace", workspace(status), workspaceId=WS)

    def accounts(self, *accounts: dict[str, Any], next_token: str | None = None, **extra) -> Script:
        response: dict[str, Any] = {"serviceAccounts": list(accounts), "workspaceId": WS}
        if next_token:
            response["nextToken"] = next_token
        return self.add(
            "list_workspace_service_accounts", response, workspaceId=WS, maxResults=100, **extra
        )

    def tokens(self, *ids: str, account: str = "7") -> Script:
        listed = [
            {
                "id": i,
                "name": f"xpu-{i}",
                "createdAt": datetime(2026, 3, 2, 10, 0, 0),
                "expiresAt": datetime(2026, 3, 2, 10, 15, 0),
            }
            for i in ids
        ]
        return self.add(
            "list_workspace_service_account_tokens",
            {"serviceAccountTokens": listed, "serviceAccountId": account, "workspaceId": WS},
            workspaceId=WS,
            serviceAccountId=account,
            maxResults=100,
        )

    def create_token(self, seconds: int = 900, name: Any = ANY) -> Script:
        return self.add(
            "create_workspace_service_account_token",
            {
                "serviceAccountToken": {"id": "12", "name": "xpu-run", "key": KEY},
                "serviceAccountId": "7",
                "workspaceId": WS,
            },
            workspaceId=WS,
            serviceAccountId="7",
            name=name,
            secondsToLive=seconds,
        )


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch):
    with stubbed_client(monkeypatch, "grafana") as (stubber, raw):
        yield Script(stubber, raw)


@pytest.fixture
def run(run_module):
    def run_token(args: dict[str, Any], check: bool = False) -> dict[str, Any]:
        return run_module(amg_service_account_token.main, {**ARGS, **args}, check=check)

    return run_token


@pytest.mark.aws
def test_existing_account_gets_a_token_and_reports_no_change(script: Script, run) -> None:
    script.describe().accounts({**ACCOUNT, "grafanaRole": "ADMIN"}).create_token()
    result = run({})
    assert not result.failed, result
    assert result["changed"] is False  # a token for one run is transient
    assert result["key"] == KEY and result["token_id"] == "12" and result["expires_in"] == 900
    assert result["service_account_id"] == "7" and result["service_account_created"] is False
    assert result["workspace_endpoint"] == ENDPOINT


@pytest.mark.aws
def test_missing_account_is_created_with_the_admin_role(script: Script, run) -> None:
    other = {"id": "3", "name": "someone-else", "isDisabled": "false", "grafanaRole": "VIEWER"}
    (
        script.describe()
        .accounts(other, next_token="page2")
        .accounts(next_token=None, nextToken="page2")
        .add(
            "create_workspace_service_account",
            {"id": "7", "name": ACCOUNT["name"], "grafanaRole": "ADMIN", "workspaceId": WS},
            workspaceId=WS,
            name="xpu-parallelcluster-provisioning",
            grafanaRole="ADMIN",
        )
        .create_token(seconds=600, name="run-42")
    )
    result = run({"seconds_to_live": 600, "token_name": "run-42"})
    assert not result.failed, result
    assert result["changed"] is True and result["service_account_created"] is True
    assert result["key"] == KEY and result["expires_in"] == 600


@pytest.mark.aws
def test_default_token_names_are_unique(script: Script, run) -> None:
    sent: list[str] = []
    script.client.meta.events.register(
        "provide-client-params.grafana.CreateWorkspaceServiceAccountToken",
        lambda params, **_: sent.append(params["name"]),
    )
    for _ in range(2):
        script.describe().accounts({**ACCOUNT, "grafanaRole": "ADMIN"}).create_token()
        assert not run({}).failed
    assert len(sent) == 2 and sent[0] != sent[1]
    assert all(re.fullmatch(r"xpu-[0-9]{10}-[0-9a-f]{6}", name) for name in sent), sent


@pytest.mark.aws
def test_check_mode_creates_nothing(script: Script, run) -> None:
    script.describe().accounts()  # the account is missing: it would be created
    result = run({}, check=True)
    assert not result.failed, result
    assert result["changed"] is True and result["service_account_created"] is True
    assert result["key"] is None and result["token_id"] is None

    script.describe().accounts({**ACCOUNT, "grafanaRole": "ADMIN"})
    result = run({}, check=True)
    assert result["changed"] is False and result["key"] is None
    assert result["service_account_id"] == "7"


@pytest.mark.aws
@pytest.mark.parametrize(
    ("account", "words"),
    [
        (
            {**ACCOUNT, "grafanaRole": "VIEWER"},
            ["has role VIEWER, not ADMIN", "service_account_name"],
        ),
        ({**ACCOUNT, "grafanaRole": "ADMIN", "isDisabled": "true"}, ["is disabled", "enable it"]),
    ],
    ids=["wrong-role", "disabled"],
)
def test_unusable_account_is_refused(script: Script, run, account, words) -> None:
    script.describe().accounts(account)
    result = run({})
    assert result.failed
    assert WS in result["msg"] and all(w in result["msg"] for w in words), result["msg"]


@pytest.mark.aws
def test_workspace_not_active_fails_with_next_step(script: Script, run) -> None:
    script.describe("CREATING")
    result = run({})
    assert result.failed and "is CREATING, not ACTIVE" in result["msg"]


@pytest.mark.aws
def test_missing_workspace_names_it(script: Script, run) -> None:
    script.stubber.add_client_error(
        "describe_workspace", "ResourceNotFoundException", "not found", 404
    )
    result = run({})
    assert result.failed and f"workspace {WS} does not exist" in result["msg"]


@pytest.mark.aws
def test_api_error_goes_through_fail_json_aws(script: Script, run) -> None:
    script.describe().stubber.add_client_error(
        "list_workspace_service_accounts", "AccessDeniedException", "denied", 403
    )
    result = run({})
    assert result.failed
    assert "Amazon Managed Grafana call failed" in result["msg"] and "permissions" in result["msg"]
    assert result["error"]["code"] == "AccessDeniedException"


@pytest.mark.aws
def test_absent_deletes_the_token(script: Script, run) -> None:
    script.describe().tokens("11", "12").add(
        "delete_workspace_service_account_token",
        {"tokenId": "12", "serviceAccountId": "7", "workspaceId": WS},
        workspaceId=WS,
        serviceAccountId="7",
        tokenId="12",
    )
    result = run({"state": "absent", "service_account_id": "7", "token_id": "12"})
    assert not result.failed, result
    assert result["changed"] is True and result["deleted"] is True


@pytest.mark.aws
def test_absent_token_already_gone_is_no_change(script: Script, run) -> None:
    # No service_account_id given: found by name.
    script.describe().accounts({**ACCOUNT, "grafanaRole": "ADMIN"}).tokens("11")
    result = run({"state": "absent", "token_id": "12"})
    assert not result.failed, result
    assert result["changed"] is False and result["deleted"] is False


@pytest.mark.aws
def test_absent_in_check_mode_deletes_nothing(script: Script, run) -> None:
    script.describe().tokens("12")
    result = run({"state": "absent", "service_account_id": "7", "token_id": "12"}, check=True)
    assert result["changed"] is True and result["deleted"] is True


@pytest.mark.parametrize("seconds", [30, 7200])
def test_lifetime_outside_bounds_is_refused_before_any_call(
    monkeypatch: pytest.MonkeyPatch, run, seconds: int
) -> None:
    monkeypatch.setattr(AnsibleAWSModule, "client", lambda *a, **k: pytest.fail("no AWS call"))
    result = run({"seconds_to_live": seconds})
    assert result.failed and "seconds_to_live must be 60-3600" in result["msg"]


def test_absent_needs_a_token_id(monkeypatch: pytest.MonkeyPatch, run) -> None:
    monkeypatch.setattr(AnsibleAWSModule, "client", lambda *a, **k: pytest.fail("no AWS call"))
    result = run({"state": "absent"})
    assert result.failed and "token_id" in result["msg"]
