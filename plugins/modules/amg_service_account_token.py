#!/usr/bin/python
# Copyright: (c) 2026, xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)

DOCUMENTATION = r"""
---
module: amg_service_account_token
short_description: Short-lived service-account token for an Amazon Managed Grafana workspace
version_added: 0.1.0
description:
  - Creates a Grafana service-account token in an Amazon Managed Grafana (AMG) workspace, so the
    workspace's Grafana API can be driven (for example with the C(community.grafana) modules) for a
    few minutes, and deletes such a token again.
  - With O(state=present), finds the service account named O(service_account_name) in the
    workspace (creating it with role O(service_account_role) when it is missing) and creates a
    token on it that expires after O(seconds_to_live) seconds. The token's secret is returned
    once, in RV(key); register the result with C(no_log) and delete the token when done
    (O(state=absent)), for example in an C(always) section.
  - A token made for one run is transient, so creating it is not reported as a change; the task
    reports C(changed) only when the service account was created.
  - With O(state=absent), deletes the token O(token_id); a token already gone (deleted, or expired
    and removed by the workspace) is no change.
  - In check mode nothing is created or deleted; RV(key) is null and RV(service_account_created)
    says whether the service account would be created.
  - The workspace must be C(ACTIVE), and its Grafana version must support service accounts (9 and
    later).
options:
  workspace_id:
    description:
      - Id of the workspace, C(g-) and ten hex digits (the infra stack output C(AmgWorkspaceId)).
    type: str
    required: true
  state:
    description:
      - V(present) creates a token (and the service account when missing).
      - V(absent) deletes O(token_id).
    type: str
    choices: [present, absent]
    default: present
  service_account_name:
    description:
      - Name of the service account the token belongs to; looked up by name.
      - With O(state=absent), used to find the service account when O(service_account_id) is not
        given.
    type: str
    default: xpu-parallelcluster-provisioning
  service_account_role:
    description:
      - Grafana role given to the service account when this module creates it. An existing service
        account with another role is refused (its role is not changed behind your back).
      - Provisioning data sources needs V(ADMIN).
    type: str
    choices: [ADMIN, EDITOR, VIEWER]
    default: ADMIN
  service_account_id:
    description:
      - Id of the service account that holds O(token_id) (RV(service_account_id) of the creating
        task).
    type: str
  seconds_to_live:
    description:
      - Lifetime of the token in seconds, 60 to 3600. It is deleted earlier with O(state=absent).
    type: int
    default: 900
  token_name:
    description:
      - Name of the new token, unique in the service account. Default C(xpu-<unix time>-<random>).
    type: str
  token_id:
    description:
      - Id of the token to delete (RV(token_id) of the creating task).
      - Required with O(state=absent).
    type: str
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    support: full
    description: Reads the workspace and service accounts; creates and deletes nothing.
  diff_mode:
    support: none
  platform:
    platforms: all
    description: Runs where the AWS API is reachable, usually the controller.
notes:
  - "Permissions: C(grafana:DescribeWorkspace), C(grafana:ListWorkspaceServiceAccounts),
    C(grafana:CreateWorkspaceServiceAccount) (only when the account is missing),
    C(grafana:CreateWorkspaceServiceAccountToken), C(grafana:ListWorkspaceServiceAccountTokens) and
    C(grafana:DeleteWorkspaceServiceAccountToken)."
author:
  - xpu.parallelcluster contributors
"""

EXAMPLES = r"""
- name: Provision an AMG workspace with a 15-minute token, deleted at the end
  delegate_to: localhost
  run_once: true
  block:
    - name: Create the token
      xpu.parallelcluster.amg_service_account_token:
        workspace_id: g-0123456789
        region: us-east-1
        seconds_to_live: 900
      register: token
      no_log: true

    - name: A folder in the workspace
      community.grafana.grafana_folder:
        url: "https://{{ token.workspace_endpoint }}"
        grafana_api_key: "{{ token.key }}"
        name: XPU ParallelCluster
      when: token.key is not none
  always:
    - name: Delete the token
      xpu.parallelcluster.amg_service_account_token:
        workspace_id: g-0123456789
        region: us-east-1
        service_account_id: "{{ token.service_account_id }}"
        token_id: "{{ token.token_id }}"
        state: absent
      when: token.token_id | default(none) is not none
"""

RETURN = r"""
workspace_endpoint:
  description: Host name of the workspace's Grafana (its API is C(https://<workspace_endpoint>/api)).
  returned: always
  type: str
  sample: g-0123456789.grafana-workspace.us-east-1.amazonaws.com
grafana_version:
  description: Grafana version of the workspace.
  returned: state=present
  type: str
  sample: "10.4"
service_account_id:
  description: Id of the service account; null in check mode when it would be created.
  returned: always
  type: str
  sample: "7"
service_account_created:
  description: Whether the service account was created (in check mode, would be).
  returned: state=present
  type: bool
  sample: false
token_id:
  description:
    - Id of the token created (state=present, null in check mode) or deleted (state=absent).
  returned: always
  type: str
  sample: "12"
token_name:
  description: Name of the token created; null in check mode.
  returned: state=present
  type: str
  sample: xpu-1767225600-4f9a2c
key:
  description:
    - The token's secret, sent as a bearer token (C(grafana_api_key) of the community.grafana
      modules). Shown only here; register the task with C(no_log). Null in check mode.
  returned: state=present
  type: str
  sample: glsa_0123456789abcdef0123456789abcdef_01234567
expires_in:
  description: Seconds the token lives from its creation; null in check mode.
  returned: state=present
  type: int
  sample: 900
deleted:
  description:
    - Whether the token was deleted (in check mode, would be); false when it was already gone.
  returned: state=absent
  type: bool
  sample: true
"""

import secrets
import time
from collections.abc import Iterator
from typing import Any

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.xpu.parallelcluster.plugins.module_utils.cloudformation import (
    aws_error_types,
)

RETRY = AWSRetry.jittered_backoff(retries=10, delay=3, max_delay=30)
# Pages of 100 read at most when listing service accounts or tokens (a bound, never a bare loop).
MAX_PAGES = 50
MIN_SECONDS = 60
MAX_SECONDS = 3600


class TokenError(Exception):
    """A failure with a message that names the resource, the cause and the next step."""


def paged(call: Any, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Items under ``key`` of every page of a ``nextToken``-paginated grafana list call."""
    token = None
    for _page in range(MAX_PAGES):
        args = {**kwargs, "maxResults": 100, **({"nextToken": token} if token else {})}
        response = call(aws_retry=True, **args)
        yield from response.get(key, [])
        token = response.get("nextToken")
        if not token:
            return
    raise TokenError(
        f"more than {MAX_PAGES * 100} {key} in {kwargs.get('workspaceId')}; stopped reading"
    )


def active_workspace(client: Any, workspace_id: str) -> dict[str, Any]:
    try:
        workspace = client.describe_workspace(aws_retry=True, workspaceId=workspace_id)["workspace"]
    except is_boto3_error_code("ResourceNotFoundException"):
        raise TokenError(
            f"Amazon Managed Grafana workspace {workspace_id} does not exist in this region; check "
            "workspace_id (infra output AmgWorkspaceId) and region"
        ) from None
    if workspace["status"] != "ACTIVE":
        raise TokenError(
            f"workspace {workspace_id} is {workspace['status']}, not ACTIVE; wait until it is "
            "ACTIVE (aws grafana describe-workspace) and run again"
        )
    return workspace


def find_service_account(client: Any, workspace_id: str, name: str) -> dict[str, Any] | None:
    accounts = paged(
        client.list_workspace_service_accounts, "serviceAccounts", workspaceId=workspace_id
    )
    return next((account for account in accounts if account["name"] == name), None)


def token_exists(client: Any, workspace_id: str, account_id: str, token_id: str) -> bool:
    tokens = paged(
        client.list_workspace_service_account_tokens,
        "serviceAccountTokens",
        workspaceId=workspace_id,
        serviceAccountId=account_id,
    )
    return any(token["id"] == token_id for token in tokens)


def present(module: AnsibleAWSModule, client: Any) -> dict[str, Any]:
    p = module.params
    workspace_id = p["workspace_id"]
    workspace = active_workspace(client, workspace_id)
    result: dict[str, Any] = {
        "changed": False,
        "workspace_endpoint": workspace["endpoint"],
        "grafana_version": workspace.get("grafanaVersion"),
        "service_account_created": False,
        "service_account_id": None,
        "token_id": None,
        "token_name": None,
        "key": None,
        "expires_in": None,
    }
    account = find_service_account(client, workspace_id, p["service_account_name"])
    if account is None:
        result.update(changed=True, service_account_created=True)
        if module.check_mode:
            return result
        account = client.create_workspace_service_account(
            aws_retry=True,
            workspaceId=workspace_id,
            name=p["service_account_name"],
            grafanaRole=p["service_account_role"],
        )
    elif account["grafanaRole"] != p["service_account_role"]:
        raise TokenError(
            f"service account {account['name']} of workspace {workspace_id} has role "
            f"{account['grafanaRole']}, not {p['service_account_role']}; change its role in the "
            "workspace, or choose another service_account_name"
        )
    elif str(account.get("isDisabled", "false")).lower() == "true":
        raise TokenError(
            f"service account {account['name']} of workspace {workspace_id} is disabled; enable it "
            "in the workspace, or choose another service_account_name"
        )
    result["service_account_id"] = account["id"]
    if module.check_mode:
        return result

    name = p["token_name"] or f"xpu-{int(time.time())}-{secrets.token_hex(3)}"
    created = client.create_workspace_service_account_token(
        aws_retry=True,
        workspaceId=workspace_id,
        serviceAccountId=account["id"],
        name=name,
        secondsToLive=p["seconds_to_live"],
    )["serviceAccountToken"]
    result.update(
        token_id=created["id"],
        token_name=created["name"],
        key=created["key"],
        expires_in=p["seconds_to_live"],
    )
    return result


def absent(module: AnsibleAWSModule, client: Any) -> dict[str, Any]:
    p = module.params
    workspace_id = p["workspace_id"]
    workspace = active_workspace(client, workspace_id)
    result: dict[str, Any] = {
        "changed": False,
        "deleted": False,
        "workspace_endpoint": workspace["endpoint"],
        "service_account_id": p["service_account_id"],
        "token_id": p["token_id"],
    }
    account_id = p["service_account_id"]
    if not account_id:
        account = find_service_account(client, workspace_id, p["service_account_name"])
        if account is None:
            return result  # no account, so no token
        account_id = result["service_account_id"] = account["id"]
    if not token_exists(client, workspace_id, account_id, p["token_id"]):
        return result
    result.update(changed=True, deleted=True)
    if not module.check_mode:
        try:
            client.delete_workspace_service_account_token(
                aws_retry=True,
                workspaceId=workspace_id,
                serviceAccountId=account_id,
                tokenId=p["token_id"],
            )
        except is_boto3_error_code("ResourceNotFoundException"):
            result.update(changed=False, deleted=False)  # expired and removed meanwhile
    return result


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={
            "workspace_id": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "service_account_name": {
                "type": "str",
                "default": "xpu-parallelcluster-provisioning",
            },
            "service_account_role": {
                "type": "str",
                "choices": ["ADMIN", "EDITOR", "VIEWER"],
                "default": "ADMIN",
            },
            "service_account_id": {"type": "str"},
            "seconds_to_live": {"type": "int", "default": 900},
            "token_name": {"type": "str"},
            "token_id": {"type": "str"},
        },
        required_if=[["state", "absent", ["token_id"]]],
        supports_check_mode=True,
    )
    p = module.params
    if not MIN_SECONDS <= p["seconds_to_live"] <= MAX_SECONDS:
        module.fail_json(
            msg=f"seconds_to_live must be {MIN_SECONDS}-{MAX_SECONDS} "
            f"(got {p['seconds_to_live']}): the token is meant to live for one run"
        )
    client = module.client("grafana", retry_decorator=RETRY)
    try:
        result = present(module, client) if p["state"] == "present" else absent(module, client)
    except TokenError as err:
        module.fail_json(msg=str(err))
    except aws_error_types() as err:
        module.fail_json_aws(
            err,
            msg=f"workspace {p['workspace_id']}: Amazon Managed Grafana call failed; check the "
            "region and the grafana:* permissions listed in the module documentation",
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
