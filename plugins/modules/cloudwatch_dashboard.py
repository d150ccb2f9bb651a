#!/usr/bin/python
# Copyright: (c) 2026, xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)

DOCUMENTATION = r"""
---
module: cloudwatch_dashboard
short_description: Create, update or delete an Amazon CloudWatch dashboard
version_added: 0.1.0
description:
  - Creates or updates the CloudWatch dashboard O(name) so that its body is O(body), or deletes it.
  - The dashboard's body is compared with O(body) as JSON data (key order and white space do not
    matter), so running the task again with the same body reports no change and writes nothing.
  - CloudWatch may accept a body and still return validation messages for parts of it that will
    not render (for example a widget that names an unknown metric); those are passed on as
    warnings. A body CloudWatch refuses fails the task with its validation messages.
  - In check mode the dashboard is read but never written or deleted; C(changed) says whether it
    would be.
options:
  name:
    description:
      - Name of the dashboard, 1 to 255 characters of V(A-Z), V(a-z), V(0-9), V(-) and V(_).
    type: str
    required: true
  state:
    description:
      - V(present) creates the dashboard, or updates it when its body differs from O(body).
      - V(absent) deletes the dashboard when it exists.
    type: str
    choices: [present, absent]
    default: present
  body:
    description:
      - The dashboard body, as data (a dictionary) or as a JSON string, for example
        C("{{ lookup('ansible.builtin.template', 'dashboard.json.j2') }}").
      - A JSON object with a C(widgets) list; see the CloudWatch dashboard body structure in the
        Amazon CloudWatch API reference.
      - Required with O(state=present); ignored with O(state=absent).
    type: raw
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    support: full
    description: Reads the dashboard; writes and deletes nothing.
  diff_mode:
    support: full
    description: Shows the body before and after as indented JSON with sorted keys.
  platform:
    platforms: all
    description: Runs where the AWS API is reachable, usually the controller.
notes:
  - "Permissions: C(cloudwatch:GetDashboard), C(cloudwatch:PutDashboard) (only when the dashboard
    is created or changed) and C(cloudwatch:DeleteDashboards) (only with O(state=absent) when the
    dashboard exists)."
author:
  - xpu.parallelcluster contributors
"""

EXAMPLES = r"""
- name: Cluster dashboard from the collection's template
  xpu.parallelcluster.cloudwatch_dashboard:
    name: xpu-parallelcluster-demo
    region: us-east-1
    body: "{{ lookup('ansible.builtin.template', 'files/cloudwatch/dashboard.json.j2') }}"

- name: A small dashboard given as data
  xpu.parallelcluster.cloudwatch_dashboard:
    name: xpu-head-node
    region: us-east-1
    body:
      widgets:
        - type: metric
          x: 0
          y: 0
          width: 12
          height: 6
          properties:
            title: Head node CPU
            region: us-east-1
            metrics:
              - [AWS/EC2, CPUUtilization, InstanceId, i-0123456789abcdef0]

- name: Delete the dashboard
  xpu.parallelcluster.cloudwatch_dashboard:
    name: xpu-head-node
    region: us-east-1
    state: absent
"""

RETURN = r"""
dashboard_name:
  description: Name of the dashboard.
  returned: always
  type: str
  sample: xpu-parallelcluster-demo
dashboard_arn:
  description:
    - ARN of the dashboard. With O(state=absent), the ARN of the deleted dashboard.
    - Null when the dashboard does not exist, and in check mode when it would be created.
  returned: always
  type: str
  sample: arn:aws:cloudwatch::123456789012:dashboard/xpu-parallelcluster-demo
body:
  description:
    - With O(state=present), the dashboard body O(body) as data.
    - With O(state=absent), the body of the deleted dashboard; null when there was none.
  returned: always
  type: dict
  sample: {"widgets": [{"type": "text", "x": 0, "y": 0, "width": 6, "height": 3,
           "properties": {"markdown": "# Cluster"}}]}
validation_messages:
  description:
    - The C(DashboardValidationMessages) CloudWatch returned when the dashboard was written (also
      passed on as warnings); empty when it was not written.
  returned: state=present
  type: list
  elements: dict
  contains:
    data_path:
      description: Where in the body the message applies.
      type: str
      sample: /widgets/0/properties/metrics/0
    message:
      description: The message.
      type: str
      sample: The metric does not exist
"""

import json
import re
from typing import Any

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.xpu.parallelcluster.plugins.module_utils.cloudformation import (
    aws_error_types,
)

RETRY = AWSRetry.jittered_backoff(retries=10, delay=3, max_delay=30)
NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")
NOT_FOUND = "ResourceNotFound"
INVALID_BODY = "InvalidParameterInput"

ARGUMENT_SPEC: dict[str, Any] = {
    "name": {"type": "str", "required": True},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "body": {"type": "raw"},
}


class DashboardError(Exception):
    """A failure with a message that names the dashboard, the cause and the next step."""


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid CloudWatch dashboard name, or None when it is."""
    if NAME_RE.fullmatch(name):
        return None
    if not name:
        return "name must not be empty: give 1-255 characters of A-Z, a-z, 0-9, - and _"
    if len(name) > 255:
        return f"name is {len(name)} characters long; CloudWatch allows at most 255"
    bad = sorted({c for c in name if not re.fullmatch(r"[A-Za-z0-9_-]", c)})
    return (
        f"name {name!r} has characters CloudWatch does not allow in a dashboard name "
        f"({' '.join(repr(c) for c in bad)}); use only A-Z, a-z, 0-9, - and _"
    )


def parse_body(body: Any) -> dict[str, Any]:
    """``body`` (data or a JSON string) as a dict with a ``widgets`` list, or DashboardError."""
    if body is None:
        raise DashboardError("body is required with state=present: give the dashboard body")
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError as err:
            raise DashboardError(
                f"body is not valid JSON ({err}); give a JSON object with a widgets list, or "
                "the body as data (a dictionary)"
            ) from None
    if not isinstance(body, dict):
        raise DashboardError(
            f"body must be a JSON object with a widgets list, not a {type(body).__name__}; "
            'wrap the widgets as {"widgets": [...]}'
        )
    if not isinstance(body.get("widgets"), list):
        what = "has no widgets key" if "widgets" not in body else "has widgets that is not a list"
        raise DashboardError(
            f"body {what}; CloudWatch needs a widgets list in the dashboard body, for example "
            '{"widgets": [{"type": "text", "x": 0, "y": 0, "width": 6, "height": 3, '
            '"properties": {"markdown": "# Title"}}]}'
        )
    return body


def loads_or_raw(text: str) -> Any:
    """A stored dashboard body as data; the raw text when it is not JSON (never equal to a dict)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def pretty(body: Any) -> str:
    if body is None:
        return ""
    if isinstance(body, str):
        return body if body.endswith("\n") else body + "\n"
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


def get_dashboard(client: Any, name: str) -> dict[str, Any] | None:
    """The GetDashboard response for ``name``, or None when there is no such dashboard."""
    try:
        return client.get_dashboard(aws_retry=True, DashboardName=name)
    except is_boto3_error_code(NOT_FOUND):
        return None


def validation_messages(messages: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    return [
        {"data_path": m.get("DataPath", ""), "message": m.get("Message", "")}
        for m in messages or []
    ]


def describe(messages: list[dict[str, str]]) -> str:
    return "; ".join(
        f"{m['data_path']}: {m['message']}" if m["data_path"] else m["message"] for m in messages
    )


def refused_messages(err: Any) -> list[dict[str, str]]:
    """The validation messages of a DashboardInvalidInputError, wherever the protocol put them."""
    response = getattr(err, "response", {}) or {}
    for holder in (response, response.get("Error", {})):
        for key in ("dashboardValidationMessages", "DashboardValidationMessages"):
            if holder.get(key):
                return validation_messages(holder[key])
    return []


def present(module: AnsibleAWSModule, client: Any, name: str, body: dict[str, Any]) -> dict:
    existing = get_dashboard(client, name)
    before = loads_or_raw(existing["DashboardBody"]) if existing else None
    result: dict[str, Any] = {
        "changed": before != body,
        "dashboard_name": name,
        "dashboard_arn": existing["DashboardArn"] if existing else None,
        "body": body,
        "validation_messages": [],
    }
    if module._diff:
        result["diff"] = {
            "before": pretty(before),
            "after": pretty(body),
            "before_header": f"dashboard {name}",
            "after_header": f"dashboard {name}",
        }
    if not result["changed"] or module.check_mode:
        return result

    try:
        response = client.put_dashboard(
            aws_retry=True,
            DashboardName=name,
            DashboardBody=json.dumps(body, separators=(",", ":")),
        )
    except is_boto3_error_code(INVALID_BODY) as err:
        messages = refused_messages(err)
        detail = describe(messages) or err.response.get("Error", {}).get("Message", str(err))
        raise DashboardError(
            f"CloudWatch refused the body of dashboard {name}: {detail}; fix body and run again"
        ) from None
    messages = validation_messages(response.get("DashboardValidationMessages"))
    result["validation_messages"] = messages

    written = get_dashboard(client, name)
    if written is None or loads_or_raw(written["DashboardBody"]) != body:
        # "If this result includes error messages, the input was not valid and the operation
        # failed" (PutDashboard): messages that come with a body not stored are errors.
        why = describe(messages) or "no validation messages were returned"
        raise DashboardError(
            f"CloudWatch did not store the body of dashboard {name}: {why}; fix body and run again"
        )
    for message in messages:
        module.warn(f"dashboard {name}: {describe([message])}")
    result["dashboard_arn"] = written["DashboardArn"]
    return result


def absent(module: AnsibleAWSModule, client: Any, name: str) -> dict[str, Any]:
    existing = get_dashboard(client, name)
    result: dict[str, Any] = {
        "changed": existing is not None,
        "dashboard_name": name,
        "dashboard_arn": existing["DashboardArn"] if existing else None,
        "body": loads_or_raw(existing["DashboardBody"]) if existing else None,
    }
    if module._diff:
        result["diff"] = {
            "before": pretty(result["body"]),
            "after": "",
            "before_header": f"dashboard {name}",
            "after_header": f"dashboard {name}",
        }
    if existing is None or module.check_mode:
        return result
    try:
        client.delete_dashboards(aws_retry=True, DashboardNames=[name])
    except is_boto3_error_code(NOT_FOUND):
        result["changed"] = False  # deleted meanwhile
    return result


def main() -> None:
    module = AnsibleAWSModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    name = p["name"]
    problem = name_problem(name)
    if problem:
        module.fail_json(msg=problem)
    body = None
    if p["state"] == "present":
        try:
            body = parse_body(p["body"])
        except DashboardError as err:
            module.fail_json(msg=f"dashboard {name}: {err}")

    client = module.client("cloudwatch", retry_decorator=RETRY)
    try:
        if p["state"] == "present":
            result = present(module, client, name, body)
        else:
            result = absent(module, client, name)
    except DashboardError as err:
        module.fail_json(msg=str(err))
    except aws_error_types() as err:
        call = getattr(err, "operation_name", None) or "call"
        module.fail_json_aws(
            err,
            msg=f"dashboard {name}: CloudWatch {call} failed; check the region and the "
            "cloudwatch:GetDashboard, PutDashboard and DeleteDashboards permissions",
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
