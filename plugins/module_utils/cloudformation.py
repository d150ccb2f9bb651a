# Copyright: (c) 2026, xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)
"""CloudFormation stacks driven through change sets, for the collection's modules.

What lives here (modules stay thin and call it):

- template parameters: the declared parameters and their defaults read from a template body,
  parameter values normalised as CloudFormation compares them (numbers as canonical strings);
- :class:`StackManager`: create, update, read and delete one stack. Creates and updates go
  through change sets (a CREATE change set for a new stack) unless asked to call
  CreateStack/UpdateStack directly; check mode creates the change set, describes it and deletes
  it (and the REVIEW_IN_PROGRESS stack a CREATE change set leaves behind), so the prediction is
  CloudFormation's own. Nothing is sent when the deployed template body, parameters and tags are
  already the wanted ones;
- waits bounded by one :class:`Deadline`, each poll adding a progress line (stack status and the
  latest event) that the module returns;
- failures raised as :class:`StackError`, whose message names the first failing resource (the
  earliest ``*_FAILED`` event that is not a cancellation) and what to do next.

Every AWS call goes through a client wrapped by ``AnsibleAWSModule.client(retry_decorator=...)``
(amazon.aws ``RetryingBotoClientWrapper``) and is made with ``aws_retry=True``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

try:
    import botocore
except ImportError:  # pragma: no cover - AnsibleAWSModule reports the missing library
    botocore = None

try:
    import yaml

    HAS_YAML = True
except ImportError:  # pragma: no cover - ansible-core depends on PyYAML
    HAS_YAML = False

from ansible_collections.amazon.aws.plugins.module_utils.botocore import (
    is_boto3_error_code,
    is_boto3_error_message,
)
from ansible_collections.amazon.aws.plugins.module_utils.tagging import (
    ansible_dict_to_boto3_tag_list,
    boto3_tag_list_to_ansible_dict,
)

# Indirections that unit tests replace to run waits without sleeping.
_monotonic: Callable[[], float] = time.monotonic
_sleep: Callable[[float], None] = time.sleep

# CloudFormation takes at most this many bytes of template in a request; larger templates go
# through S3 (TemplateURL).
TEMPLATE_BODY_LIMIT = 51_200
STACK_POLL_SECONDS = 10.0
CHANGE_SET_POLL_SECONDS = 3.0
# How many pages of events (100 each) are read when looking for a failure's cause.
MAX_EVENT_PAGES = 10
RECENT_EVENTS = 25

REVIEW_IN_PROGRESS = "REVIEW_IN_PROGRESS"
SSM_PARAMETER_TYPE = "AWS::SSM::Parameter::Value<"
# A stack whose creation failed: CloudFormation cannot update it, only delete it.
FAILED_CREATE_STATES = ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED")
UPDATABLE_STATES = (
    "CREATE_COMPLETE",
    "UPDATE_COMPLETE",
    "UPDATE_ROLLBACK_COMPLETE",
    "UPDATE_FAILED",
    "IMPORT_COMPLETE",
    "IMPORT_ROLLBACK_COMPLETE",
)
SUCCESS_STATES = {
    "CREATE": ("CREATE_COMPLETE",),
    "UPDATE": ("UPDATE_COMPLETE",),
    "DELETE": ("DELETE_COMPLETE",),
}
NO_CHANGE_MARKERS = ("didn't contain changes", "No updates are to be performed")
CANCELLED_MARKERS = (
    "Resource creation cancelled",
    "Resource update cancelled",
    "Resource deletion cancelled",
)
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


class StackError(Exception):
    """A stack operation failed; ``msg`` is for the user, ``details`` go into the result."""

    def __init__(self, msg: str, **details: Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details


class DeadlineExceeded(StackError):
    """A wait ran past the deadline; the stack operation itself goes on in CloudFormation."""


class Deadline:
    """The time left for all the waits of one module run."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = _monotonic()

    @property
    def elapsed(self) -> float:
        return _monotonic() - self.started

    @property
    def remaining(self) -> float:
        return self.seconds - self.elapsed


# ---------------------------------------------------------------------------------------------
# Template parameters and values


if HAS_YAML:

    class _CfnLoader(yaml.SafeLoader):
        """A safe YAML loader that accepts CloudFormation short-form tags (!Ref, !Sub, ...)."""

    def _construct_cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return loader.construct_scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_mapping(node, deep=True)

    _CfnLoader.add_multi_constructor("!", _construct_cfn_tag)


def parse_template(body: str) -> dict[str, Any]:
    """Parse a JSON or YAML template body (short-form intrinsic functions allowed)."""
    try:
        data = json.loads(body)
    except ValueError:
        if not HAS_YAML:
            raise StackError("the template is not JSON and PyYAML is not installed") from None
        try:
            data = yaml.load(body, Loader=_CfnLoader)  # a SafeLoader subclass
        except yaml.YAMLError as err:
            raise StackError(f"the template is neither valid JSON nor valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise StackError("the template is not a mapping (JSON object or YAML mapping)")
    return data


RETAINING_POLICIES = ("Retain", "RetainExceptOnCreate")
DELETE_OBJECTS_BATCH = 1000  # the most keys one DeleteObjects call takes


def retained_resources(template: Any) -> set[str]:
    """Logical ids whose DeletionPolicy keeps the resource when the stack is deleted.

    ``template`` is what GetTemplate returns (a parsed JSON document or the YAML text). A
    policy given by an intrinsic function cannot be told offline and counts as retained.
    """
    data = parse_template(template) if isinstance(template, str) else template or {}
    return {
        logical
        for logical, resource in (data.get("Resources") or {}).items()
        if isinstance(resource, dict)
        and "DeletionPolicy" in resource
        and (
            not isinstance(resource["DeletionPolicy"], str)
            or resource["DeletionPolicy"] in RETAINING_POLICIES
        )
    }


def _delete_versions(s3: Any, bucket: str, keys: list[dict[str, str]]) -> None:
    """DeleteObjects over ``keys`` (object versions), in batches; fail naming what stayed."""
    for start in range(0, len(keys), DELETE_OBJECTS_BATCH):
        batch = keys[start : start + DELETE_OBJECTS_BATCH]
        response = s3.delete_objects(
            aws_retry=True, Bucket=bucket, Delete={"Objects": batch, "Quiet": True}
        )
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise StackError(
                f"bucket {bucket} could not be emptied before deleting the stack: "
                f"{first.get('Key')} ({first.get('VersionId')}): {first.get('Code')} "
                f"{first.get('Message')}; {len(errors)} object(s) left. Grant "
                "s3:ListBucketVersions, s3:DeleteObject and s3:DeleteObjectVersion on it, "
                "or empty it yourself and re-run",
                bucket=bucket,
            )


def empty_bucket(s3: Any, bucket: str, check_mode: bool) -> int:
    """Delete every object version and delete marker in ``bucket``; return how many there were.

    In check mode nothing is deleted (the count is what would be). A bucket that no longer
    exists counts as empty.
    """
    count = 0
    kwargs: dict[str, Any] = {"Bucket": bucket}
    while True:
        try:
            page = s3.list_object_versions(aws_retry=True, **kwargs)
        except is_boto3_error_code("NoSuchBucket"):
            return count
        keys = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in (page.get("Versions") or []) + (page.get("DeleteMarkers") or [])
        ]
        if keys and not check_mode:
            _delete_versions(s3, bucket, keys)
        count += len(keys)
        if not page.get("IsTruncated"):
            return count
        kwargs["KeyMarker"] = page.get("NextKeyMarker")
        kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker")


@dataclass(frozen=True)
class DeclaredParameter:
    name: str
    type: str
    default: str | None  # normalised; None when the template sets no default


def declared_parameters(body: str) -> dict[str, DeclaredParameter]:
    """The parameters a template declares, in template order, with normalised defaults."""
    declared: dict[str, DeclaredParameter] = {}
    for name, spec in (parse_template(body).get("Parameters") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        ptype = str(spec.get("Type", "String"))
        default = normalize_value(spec["Default"], ptype) if "Default" in spec else None
        declared[str(name)] = DeclaredParameter(str(name), ptype, default)
    return declared


def constraint_violation(declaration: dict[str, Any], value: str) -> str | None:
    """Why ``value`` breaks the constraints a template declares for a parameter (None if it
    does not): AllowedValues, AllowedPattern, Min/MaxLength and, for numbers, Min/MaxValue.

    CloudFormation would refuse the same value when it is given the stack; checking it here
    names the option before any AWS call. List types and SSM parameter types are left to AWS.
    """
    ptype = str(declaration.get("Type", "String"))
    if ptype.startswith(("List<", "CommaDelimitedList", SSM_PARAMETER_TYPE)):
        return None
    hint = declaration.get("ConstraintDescription")
    hint = f" ({hint})" if hint else ""
    allowed = declaration.get("AllowedValues")
    if allowed and value not in [normalize_value(a, ptype) for a in allowed]:
        return f"{value!r} is not one of {', '.join(str(a) for a in allowed)}{hint}"
    pattern = declaration.get("AllowedPattern")
    if pattern and re.fullmatch(str(pattern), value) is None:
        return f"{value!r} does not match {pattern}{hint}"
    for key, broken in (
        ("MinLength", lambda limit: len(value) < int(limit)),
        ("MaxLength", lambda limit: len(value) > int(limit)),
    ):
        if key in declaration and broken(declaration[key]):
            return f"{value!r} breaks {key} {declaration[key]}{hint}"
    if ptype == "Number" and value != "":
        try:
            number = Decimal(value)
        except InvalidOperation:
            return f"{value!r} is not a number"
        if "MinValue" in declaration and number < Decimal(str(declaration["MinValue"])):
            return f"{value} is below MinValue {declaration['MinValue']}{hint}"
        if "MaxValue" in declaration and number > Decimal(str(declaration["MaxValue"])):
            return f"{value} is above MaxValue {declaration['MaxValue']}{hint}"
    return None


def _canonical_number(text: str) -> str:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        return text
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def normalize_value(value: Any, ptype: str = "String") -> str:
    """A parameter value as the string CloudFormation stores, for sending and comparing.

    Numbers (``Number`` and ``List<Number>`` parameters) are compared as canonical strings, so
    ``1200``, ``"1200"`` and ``"1200.0"`` are the same value; every other type is compared as
    the exact string (``"2.10"`` and ``"2.1"`` are different Lustre versions).
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        inner = ptype[5:-1] if ptype.startswith("List<") else "String"
        return ",".join(normalize_value(v, inner) for v in value)
    text = str(value)
    if ptype in ("Number", "List<Number>"):
        return ",".join(
            _canonical_number(p) if _NUMBER_RE.match(p.strip()) else p for p in text.split(",")
        )
    return text


def effective_parameters(
    declared: dict[str, DeclaredParameter],
    values: dict[str, Any],
    option_names: dict[str, str] | None = None,
) -> dict[str, str]:
    """Every declared parameter's value: the given value, else the template default.

    ``values`` maps parameter names to values, ``None`` meaning "not set" (template default).
    Raises :class:`StackError` for a value the template does not declare, or a parameter without
    a default that has no value; ``option_names`` maps parameter names to the option the user
    sets, for the message.
    """
    option_names = option_names or {}
    unknown = sorted(k for k, v in values.items() if v is not None and k not in declared)
    if unknown:
        names = ", ".join(f"{k} (option {option_names.get(k, k)})" for k in unknown)
        raise StackError(
            f"the template does not declare the parameter(s) {names}; use the collection's "
            "template or one that declares them, or leave those options unset"
        )
    result: dict[str, str] = {}
    missing = []
    for name, spec in declared.items():
        value = values.get(name)
        if value is not None:
            result[name] = normalize_value(value, spec.type)
        elif spec.default is not None:
            result[name] = spec.default
        else:
            missing.append(name)
    if missing:
        names = ", ".join(f"{k} (option {option_names.get(k, k)})" for k in missing)
        raise StackError(f"the template requires a value for {names}")
    return result


def parameter_list(parameters: dict[str, str]) -> list[dict[str, str]]:
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()]


def stack_parameters(stack: dict[str, Any] | None) -> dict[str, str]:
    """A described stack's parameters as a dict (the value CloudFormation stores)."""
    if not stack:
        return {}
    return {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}


def stack_outputs(stack: dict[str, Any] | None) -> dict[str, str]:
    if not stack:
        return {}
    return {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs") or []}


def stack_tags(stack: dict[str, Any] | None) -> dict[str, str]:
    if not stack:
        return {}
    return boto3_tag_list_to_ansible_dict(stack.get("Tags") or [])


def parameter_changes(
    deployed: dict[str, str],
    wanted: dict[str, str],
    declared: dict[str, DeclaredParameter] | None = None,
    resolve_ssm: Callable[[str], str | None] | None = None,
) -> dict[str, dict[str, str | None]]:
    """Parameters whose normalised values differ: {name: {"before": old, "after": new}}.

    A parameter of type ``AWS::SSM::Parameter::Value<...>`` also counts as unchanged when the
    SSM parameter it names resolves to the deployed value (``resolve_ssm``): the local AWS
    emulator stores the resolved value where AWS keeps the parameter name.
    """
    declared = declared or {}
    changes: dict[str, dict[str, str | None]] = {}
    for name, after in wanted.items():
        ptype = declared[name].type if name in declared else "String"
        before = deployed.get(name)
        if before is not None and normalize_value(before, ptype) == normalize_value(after, ptype):
            continue
        if (
            before
            and after
            and resolve_ssm is not None
            and ptype.startswith(SSM_PARAMETER_TYPE)
            and resolve_ssm(after) == before
        ):
            continue
        changes[name] = {"before": before, "after": after}
    return changes


def same_template(deployed: Any, body: str) -> bool:
    """Whether the deployed template (GetTemplate, Original stage) is the body we would send.

    botocore returns a JSON template body already parsed; compare those as data.
    """
    if isinstance(deployed, str):
        return deployed == body
    try:
        return deployed == json.loads(body)
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# Events and change sets


@dataclass(frozen=True)
class FailedResource:
    logical_id: str
    resource_type: str
    status: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {
            "logical_id": self.logical_id,
            "resource_type": self.resource_type,
            "status": self.status,
            "reason": self.reason,
        }

    def describe(self) -> str:
        return f"{self.logical_id} ({self.resource_type}) {self.status}: {self.reason}"


def _chronological(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # DescribeStackEvents lists the newest first; sort is stable for equal timestamps.
    ordered = list(reversed(events))
    if all("Timestamp" in e for e in ordered):
        ordered.sort(key=lambda e: e["Timestamp"])
    return ordered


def first_failure(events: list[dict[str, Any]]) -> FailedResource | None:
    """The first failing resource: the earliest ``*_FAILED`` event with a real reason.

    ``events`` are in chronological order. Cancellations ("Resource creation cancelled") are
    consequences of another failure and skipped; a stack-level event is used only when no
    resource event qualifies.
    """
    candidates = []
    for event in events:
        status = event.get("ResourceStatus", "")
        reason = event.get("ResourceStatusReason") or ""
        if not status.endswith("_FAILED") or not reason:
            continue
        if any(marker in reason for marker in CANCELLED_MARKERS):
            continue
        candidates.append(event)
    for stack_level in (False, True):
        for event in candidates:
            if (event.get("ResourceType") == "AWS::CloudFormation::Stack") == stack_level:
                return FailedResource(
                    logical_id=event.get("LogicalResourceId", "?"),
                    resource_type=event.get("ResourceType", "?"),
                    status=event["ResourceStatus"],
                    reason=event["ResourceStatusReason"],
                )
    return None


def format_event(event: dict[str, Any]) -> str:
    stamp = event.get("Timestamp")
    when = stamp.strftime("%H:%M:%S ") if hasattr(stamp, "strftime") else ""
    line = (
        f"{when}{event.get('LogicalResourceId', '?')} ({event.get('ResourceType', '?')}) "
        f"{event.get('ResourceStatus', '?')}"
    )
    reason = event.get("ResourceStatusReason")
    return f"{line}: {reason}" if reason else line


def summarize_changes(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """DescribeChangeSet ``Changes`` as [{action, logical_id, resource_type, replacement}]."""
    summary = []
    for change in changes:
        resource = change.get("ResourceChange") or {}
        summary.append(
            {
                "action": resource.get("Action"),
                "logical_id": resource.get("LogicalResourceId"),
                "resource_type": resource.get("ResourceType"),
                "replacement": resource.get("Replacement"),
            }
        )
    return summary


def format_changes(changes: list[dict[str, Any]]) -> str:
    if not changes:
        return "change set: no resource changes listed\n"
    lines = [f"change set: {len(changes)} resource change(s)"]
    for c in changes:
        replacement = f" (replacement: {c['replacement']})" if c.get("replacement") else ""
        lines.append(f"  {c['action']} {c['logical_id']} {c['resource_type']}{replacement}")
    return "\n".join(lines) + "\n"


def is_no_change(description: dict[str, Any]) -> bool:
    reason = description.get("StatusReason") or ""
    return description.get("Status") == "FAILED" and any(m in reason for m in NO_CHANGE_MARKERS)


# ---------------------------------------------------------------------------------------------
# Templates too large to send inline


def template_key(stack_name: str, body: str) -> str:
    """Content-addressed S3 key of a template: the same text is uploaded once."""
    digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
    return f"xpu-parallelcluster/cloudformation/{stack_name}/{digest}.yaml"


def s3_template_url(bucket: str, key: str, region: str) -> str:
    """Path-style S3 URL of an object, as CloudFormation's TemplateURL takes it."""
    suffix = ".cn" if region.startswith("cn-") else ""
    return f"https://s3.{region}.amazonaws.com{suffix}/{bucket}/{quote(key)}"


class TemplateUpload:
    """Uploads the template to S3 the first time its URL is needed, unless already there."""

    def __init__(self, s3_client: Callable[[], Any], bucket: str, stack_name: str, body: str):
        self._client = s3_client
        self.bucket = bucket
        self.key = template_key(stack_name, body)
        self.body = body
        self._url: str | None = None
        self.uploaded = False

    def __call__(self) -> str:
        if self._url is None:
            s3 = self._client()
            try:
                s3.head_object(aws_retry=True, Bucket=self.bucket, Key=self.key)
            except botocore.exceptions.ClientError as err:
                if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "403"):
                    raise
                s3.put_object(
                    aws_retry=True,
                    Bucket=self.bucket,
                    Key=self.key,
                    Body=self.body.encode("utf-8"),
                    ContentType="application/x-yaml",
                )
                self.uploaded = True
            self._url = s3_template_url(self.bucket, self.key, s3.meta.region_name)
        return self._url


# ---------------------------------------------------------------------------------------------
# The stack


@dataclass
class StackRequest:
    """What the stack should look like (state present)."""

    template_body: str
    parameters: dict[str, str]  # every declared parameter, normalised (effective_parameters)
    tags: dict[str, str] | None  # None: leave the stack's tags as they are
    capabilities: list[str]
    termination_protection: bool | None = None
    replace_failed_stack: bool = False
    use_change_sets: bool = True
    declared: dict[str, DeclaredParameter] | None = None
    # Set when the template goes through S3: returns its URL (uploading it on first use).
    template_url: Callable[[], str] | None = None

    def template_args(self) -> dict[str, str]:
        if self.template_url is not None:
            return {"TemplateURL": self.template_url()}
        return {"TemplateBody": self.template_body}


class StackManager:
    """One CloudFormation stack: read, create or update through change sets, delete.

    ``client`` is a CloudFormation client wrapped with a retry decorator (calls are made with
    ``aws_retry=True``). The public operations return the module result (without ``failed``)
    and raise :class:`StackError` with a user-facing message on failure.
    """

    def __init__(
        self,
        client: Any,
        name: str,
        deadline: Deadline,
        stack_poll: float = STACK_POLL_SECONDS,
        change_set_poll: float = CHANGE_SET_POLL_SECONDS,
        resolve_ssm: Callable[[str], str | None] | None = None,
        s3_client: Callable[[], Any] | None = None,
    ) -> None:
        self.client = client
        self.s3_client = s3_client  # set: state absent empties the stack's buckets first
        self.resolve_ssm = resolve_ssm
        self.name = name
        self.deadline = deadline
        self.stack_poll = stack_poll
        self.change_set_poll = change_set_poll
        self.progress: list[str] = []
        self._last_line: str | None = None

    # -- progress and waits -------------------------------------------------------------------

    def note(self, line: str) -> None:
        """Add a progress line (consecutive repeats are dropped)."""
        if line != self._last_line:
            self.progress.append(f"{self.deadline.elapsed:6.0f}s {line}")
            self._last_line = line

    def _poll(self, what: str, check: Callable[[], bool], interval: float) -> None:
        """Call ``check`` until it returns True, sleeping ``interval`` between calls."""
        done = check()
        while not done:
            remaining = self.deadline.remaining
            if remaining <= 0:
                raise DeadlineExceeded(
                    f"stack {self.name}: still waiting for {what} after "
                    f"{self.deadline.seconds:.0f}s (wait_timeout); CloudFormation carries on "
                    f"without us. Latest: {self._last_line or 'no progress reported'}. Re-run the "
                    "task to wait again (it waits for a running operation before anything else), "
                    "or raise wait_timeout",
                    events=self.progress,
                )
            _sleep(min(interval, remaining))
            done = check()

    # -- reads -----------------------------------------------------------------------------------

    def describe(self, stack: str | None = None) -> dict[str, Any] | None:
        """The stack (by name, or by id to follow a deleted one); None when it does not exist."""
        try:
            response = self.client.describe_stacks(aws_retry=True, StackName=stack or self.name)
        except is_boto3_error_message("does not exist"):
            return None
        stacks = response.get("Stacks") or []
        return stacks[0] if stacks else None

    def deployed_template(self, stack_id: str) -> Any:
        response = self.client.get_template(
            aws_retry=True, StackName=stack_id, TemplateStage="Original"
        )
        return response.get("TemplateBody")

    def owned_buckets(self, stack_id: str) -> list[str]:
        """The S3 buckets the stack created and its deletion removes (retained ones are left)."""
        kept = retained_resources(self.deployed_template(stack_id))
        buckets: list[str] = []
        kwargs: dict[str, Any] = {"StackName": stack_id}
        while True:
            response = self.client.list_stack_resources(aws_retry=True, **kwargs)
            for summary in response.get("StackResourceSummaries") or []:
                if (
                    summary.get("ResourceType") == "AWS::S3::Bucket"
                    and summary.get("PhysicalResourceId")
                    and summary.get("ResourceStatus") != "DELETE_COMPLETE"
                    and summary.get("LogicalResourceId") not in kept
                ):
                    buckets.append(summary["PhysicalResourceId"])
            if not response.get("NextToken"):
                return buckets
            kwargs["NextToken"] = response["NextToken"]

    def empty_buckets(self, stack_id: str, check_mode: bool) -> dict[str, int]:
        """Empty (or, in check mode, count) the buckets the stack's deletion removes."""
        if self.s3_client is None:
            return {}
        buckets = self.owned_buckets(stack_id)
        if not buckets:
            return {}
        s3 = self.s3_client()
        emptied: dict[str, int] = {}
        for bucket in buckets:
            emptied[bucket] = empty_bucket(s3, bucket, check_mode)
            if emptied[bucket] and not check_mode:
                self.note(f"emptied bucket {bucket} ({emptied[bucket]} object versions)")
        return emptied

    def events_since(
        self, stack: str, marker: str | None, max_pages: int = 1
    ) -> list[dict[str, Any]]:
        """Events newer than the event ``marker`` (all when None), oldest first."""
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"StackName": stack}
        for _page in range(max_pages):
            try:
                response = self.client.describe_stack_events(aws_retry=True, **kwargs)
            except is_boto3_error_message("does not exist"):
                break
            for event in response.get("StackEvents", []):
                if marker is not None and event.get("EventId") == marker:
                    return _chronological(events)
                events.append(event)
            if not response.get("NextToken"):
                break
            kwargs["NextToken"] = response["NextToken"]
        return _chronological(events)

    def latest_event_id(self, stack: str) -> str | None:
        try:
            response = self.client.describe_stack_events(aws_retry=True, StackName=stack)
        except is_boto3_error_message("does not exist"):
            return None
        events = response.get("StackEvents") or []
        return events[0].get("EventId") if events else None

    def failure_cause(self, stack: str, marker: str | None) -> tuple[FailedResource | None, list]:
        events = self.events_since(stack, marker, max_pages=MAX_EVENT_PAGES)
        return first_failure(events), [format_event(e) for e in events[-RECENT_EVENTS:]]

    # -- waits -----------------------------------------------------------------------------------

    def wait_stack(
        self,
        stack_id: str,
        operation: str,
        marker: str | None,
        before_status: str | None = None,
    ) -> dict[str, Any] | None:
        """Wait until the stack leaves ``*_IN_PROGRESS``; return it (None once deleted).

        A terminal status counts only once the operation shows (a new event, or a status other
        than ``before_status``), so a poll that races the start of an update does not end it.
        """
        state: dict[str, Any] = {"seen": False, "stack": None}

        def check() -> bool:
            stack = self.describe(stack_id)
            if stack is None:
                if operation == "DELETE":
                    state["stack"] = None
                    self.note("stack deleted")
                    return True
                raise StackError(
                    f"stack {self.name}: disappeared during {operation.lower()}; someone else "
                    "deleted it. Re-run to create it again"
                )
            new_events = self.events_since(stack_id, marker)
            state["seen"] = state["seen"] or bool(new_events)
            status = stack["StackStatus"]
            latest = f" | {format_event(new_events[-1])}" if new_events else ""
            self.note(f"{status}{latest}")
            state["stack"] = stack
            if status.endswith("_IN_PROGRESS"):
                return False
            return state["seen"] or before_status is None or status != before_status

        self._poll(f"{operation.lower()} of the stack", check, self.stack_poll)
        stack = state["stack"]
        if operation == "DELETE" and (stack is None or stack["StackStatus"] == "DELETE_COMPLETE"):
            return None
        return stack

    def wait_change_set(self, change_set_id: str) -> dict[str, Any]:
        """Wait for a change set to be computed; return its description with every change."""
        state: dict[str, Any] = {}

        def check() -> bool:
            response = self.client.describe_change_set(aws_retry=True, ChangeSetName=change_set_id)
            self.note(
                f"change set {response.get('ChangeSetName', '')}: {response.get('Status')}"
                + (f" ({response['StatusReason']})" if response.get("StatusReason") else "")
            )
            state["description"] = response
            return response.get("Status") not in ("CREATE_PENDING", "CREATE_IN_PROGRESS")

        self._poll("the change set", check, self.change_set_poll)
        description = state["description"]
        changes = list(description.get("Changes") or [])
        token = description.get("NextToken")
        while token:
            page = self.client.describe_change_set(
                aws_retry=True, ChangeSetName=change_set_id, NextToken=token
            )
            changes.extend(page.get("Changes") or [])
            token = page.get("NextToken")
        description["Changes"] = changes
        return description

    def settle(self, stack: dict[str, Any] | None) -> dict[str, Any] | None:
        """Wait for an operation already running on the stack (not ours) to finish."""
        if stack is None:
            return None
        status = stack["StackStatus"]
        if not status.endswith("_IN_PROGRESS") or status == REVIEW_IN_PROGRESS:
            return stack
        self.note(f"waiting for the running operation ({status}) to finish first")
        operation = "DELETE" if status.startswith("DELETE") else "WAIT"
        marker = self.latest_event_id(stack["StackId"])
        return self.wait_stack(stack["StackId"], operation, marker)

    # -- writes ----------------------------------------------------------------------------------

    def create_change_set(self, change_set_type: str, request: StackRequest) -> dict[str, str]:
        kwargs: dict[str, Any] = {
            "StackName": self.name,
            "ChangeSetName": f"xpu-{change_set_type.lower()}-{uuid.uuid4().hex[:20]}",
            "ChangeSetType": change_set_type,
            **request.template_args(),
            "Parameters": parameter_list(request.parameters),
            "Capabilities": request.capabilities,
            "Description": "xpu.parallelcluster.infra_stack",
        }
        if request.tags is not None:
            kwargs["Tags"] = ansible_dict_to_boto3_tag_list(request.tags)
        response = self.client.create_change_set(aws_retry=True, **kwargs)
        self.note(f"change set {kwargs['ChangeSetName']} ({change_set_type}) requested")
        return {"id": response["Id"], "stack_id": response.get("StackId", "")}

    def delete_change_set(self, change_set_id: str) -> None:
        self.client.delete_change_set(aws_retry=True, ChangeSetName=change_set_id)

    def delete_review_stack(self, stack_id: str) -> None:
        """Delete the empty REVIEW_IN_PROGRESS stack a CREATE change set made, and wait."""
        self.client.delete_stack(aws_retry=True, StackName=stack_id)
        self.wait_stack(stack_id, "DELETE", None)

    def _judge(self, stack: dict[str, Any] | None, operation: str, marker: str | None) -> None:
        """Raise a StackError naming the first failing resource unless ``operation`` succeeded."""
        if operation == "DELETE" and stack is None:
            return
        status = stack["StackStatus"] if stack else "gone"
        if status in SUCCESS_STATES.get(operation, ()):
            return
        stack_id = stack["StackId"] if stack else self.name
        cause, recent = self.failure_cause(stack_id, marker)
        outcome = {
            "CREATE": "creation failed and was rolled back",
            "UPDATE": "update failed; CloudFormation rolled the stack back to its previous state",
            "DELETE": "deletion failed",
        }[operation]
        if cause is None:
            reason = (stack or {}).get("StackStatusReason") or "no event names a cause"
            head = f"stack {self.name}: {outcome} ({status}; {reason})"
        else:
            head = (
                f"stack {self.name}: {cause.logical_id} ({cause.resource_type}) failed: "
                f"{cause.reason} [{operation.lower()} ended in {status}]"
            )
        if operation == "CREATE":
            step = (
                "; fix the cause (a parameter, a service quota or a permission), then re-run "
                "with replace_failed_stack: true to delete the failed stack and create it again"
            )
        elif operation == "UPDATE":
            step = "; fix the cause, then re-run (the stack still runs its previous configuration)"
        else:
            step = (
                "; remove what blocks the deletion (for example objects in a bucket or a "
                "resource used outside the stack), then re-run with state: absent"
            )
        raise StackError(
            head + step,
            failed_resource=cause.as_dict() if cause else None,
            recent_events=recent,
            stack_status=status,
            stack_id=stack_id,
            events=self.progress,
        )

    def set_termination_protection(self, stack_id: str, enabled: bool) -> None:
        self.client.update_termination_protection(
            aws_retry=True, StackName=stack_id, EnableTerminationProtection=enabled
        )
        self.note(f"termination protection {'enabled' if enabled else 'disabled'}")

    # -- results ---------------------------------------------------------------------------------

    def _result(
        self,
        changed: bool,
        stack: dict[str, Any] | None,
        change_set: list[dict[str, Any]] | None = None,
        diff: dict[str, Any] | None = None,
        msg: str = "",
    ) -> dict[str, Any]:
        result: dict[str, Any] = {
            "changed": changed,
            "stack_id": stack.get("StackId") if stack else None,
            "stack_status": stack.get("StackStatus") if stack else None,
            "outputs": stack_outputs(stack),
            "parameters": stack_parameters(stack),
            "change_set": change_set or [],
            "events": self.progress,
        }
        if diff is not None:
            result["diff"] = diff
        if msg:
            result["msg"] = msg
        return result

    def _diff(
        self,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        changes: list[dict[str, Any]] | None,
        note: str = "",
    ) -> dict[str, Any]:
        diff: dict[str, Any] = {
            "before": before or {},
            "after": after or {},
            "before_header": f"stack {self.name} (deployed)",
            "after_header": f"stack {self.name} (requested)",
        }
        prepared = note
        if changes is not None:
            prepared += format_changes(changes)
        if prepared:
            diff["prepared"] = prepared
        return diff

    @staticmethod
    def _state(parameters: dict[str, str], tags: dict[str, str] | None, stack=None) -> dict:
        state: dict[str, Any] = {"parameters": dict(parameters)}
        if tags is not None:
            state["tags"] = dict(tags)
        if stack is not None:
            state["termination_protection"] = bool(stack.get("EnableTerminationProtection"))
        return state

    # -- operations ------------------------------------------------------------------------------

    def read(self) -> dict[str, Any]:
        stack = self.describe()
        if stack is None or stack["StackStatus"] == "DELETE_COMPLETE":
            raise StackError(
                f"stack {self.name} does not exist (state: read changes nothing); create it with "
                "state: present (playbooks/infra.yml), or check the stack name and region"
            )
        return self._result(False, stack)

    def absent(self, check_mode: bool, termination_protection: bool | None) -> dict[str, Any]:
        stack = self.describe()
        if stack is not None and stack["StackStatus"] == "DELETE_IN_PROGRESS":
            stack = self.settle(stack)
            return self._result(False, None, msg="the stack was being deleted; it is gone now")
        if stack is None or stack["StackStatus"] == "DELETE_COMPLETE":
            return self._result(False, None, msg="the stack does not exist")
        before = self._state(stack_parameters(stack), stack_tags(stack), stack)
        diff = self._diff(before, {}, None, f"stack {self.name} would be deleted\n")
        protected = bool(stack.get("EnableTerminationProtection"))
        if protected and termination_protection is not False:
            raise StackError(
                f"stack {self.name} has termination protection enabled; to delete it set "
                "termination_protection: false together with state: absent"
            )
        if check_mode:
            emptied = self.empty_buckets(stack["StackId"], True)
            diff["prepared"] += "".join(
                f"bucket {b} would be emptied first ({n} object versions)\n"
                for b, n in emptied.items()
                if n
            )
            result = self._result(True, stack, diff=diff, msg="the stack would be deleted")
            result["emptied_buckets"] = emptied
            return result
        stack = self.settle(stack) or stack
        if protected:
            self.set_termination_protection(stack["StackId"], False)
        emptied = self.empty_buckets(stack["StackId"], False)
        marker = self.latest_event_id(stack["StackId"])
        self.client.delete_stack(aws_retry=True, StackName=stack["StackId"])
        self.note("delete requested")
        gone = self.wait_stack(stack["StackId"], "DELETE", marker, stack["StackStatus"])
        self._judge(gone, "DELETE", marker)
        result = self._result(True, None, diff=diff, msg="the stack was deleted")
        result["stack_id"] = stack["StackId"]
        result["stack_status"] = "DELETE_COMPLETE"
        result["emptied_buckets"] = emptied
        return result

    def present(self, request: StackRequest, check_mode: bool) -> dict[str, Any]:
        stack = self.settle(self.describe())
        if stack is not None and stack["StackStatus"] == "DELETE_COMPLETE":
            stack = None
        replaced_note = ""
        if stack is not None and stack["StackStatus"] in FAILED_CREATE_STATES:
            status = stack["StackStatus"]
            cause, _recent = self.failure_cause(stack["StackId"], None)
            because = f"; its creation failed: {cause.describe()}" if cause else ""
            if not request.replace_failed_stack:
                raise StackError(
                    f"stack {self.name} is in {status}{because}. CloudFormation cannot update a "
                    "stack whose creation failed: fix the cause, then re-run with "
                    "replace_failed_stack: true to delete it and create it again (or delete it "
                    "with state: absent)",
                    stack_status=status,
                    stack_id=stack["StackId"],
                    failed_resource=cause.as_dict() if cause else None,
                )
            if check_mode:
                before = self._state(stack_parameters(stack), stack_tags(stack))
                after = self._state(request.parameters, request.tags)
                note = (
                    f"stack {self.name} is in {status}: it would be deleted and created again "
                    "(replace_failed_stack: true); CloudFormation cannot preview the new stack "
                    "while the failed one holds its name\n"
                )
                return self._result(
                    True,
                    stack,
                    diff=self._diff(before, after, None, note),
                    msg=f"the {status} stack would be replaced",
                )
            self.note(f"deleting the {status} stack (replace_failed_stack: true)")
            marker = self.latest_event_id(stack["StackId"])
            self.client.delete_stack(aws_retry=True, StackName=stack["StackId"])
            gone = self.wait_stack(stack["StackId"], "DELETE", marker, status)
            self._judge(gone, "DELETE", marker)
            replaced_note = f"replaced the {status} stack {stack['StackId']}\n"
            stack = None
        if stack is not None and stack["StackStatus"] not in (
            *UPDATABLE_STATES,
            REVIEW_IN_PROGRESS,
        ):
            raise StackError(self._stuck_message(stack), stack_status=stack["StackStatus"])
        if stack is None or stack["StackStatus"] == REVIEW_IN_PROGRESS:
            result = self._create(request, check_mode, stack)
        else:
            result = self._update(request, stack, check_mode)
        if replaced_note:
            result["diff"]["prepared"] = replaced_note + result["diff"].get("prepared", "")
        return result

    def _stuck_message(self, stack: dict[str, Any]) -> str:
        status = stack["StackStatus"]
        if status == "DELETE_FAILED":
            return (
                f"stack {self.name} is in DELETE_FAILED; finish the deletion first: run with "
                "state: absent once what blocked it is removed"
            )
        if status == "UPDATE_ROLLBACK_FAILED":
            return (
                f"stack {self.name} is in UPDATE_ROLLBACK_FAILED; fix what blocked the rollback, "
                "then run `aws cloudformation continue-update-rollback --stack-name "
                f"{self.name}` and re-run"
            )
        return f"stack {self.name} is in {status}, which CloudFormation cannot update"

    def _create(
        self, request: StackRequest, check_mode: bool, review_stack: dict[str, Any] | None
    ) -> dict[str, Any]:
        after = self._state(request.parameters, request.tags)
        if check_mode or request.use_change_sets:
            change_set = self.create_change_set("CREATE", request)
            description = self.wait_change_set(change_set["id"])
            changes = summarize_changes(description.get("Changes") or [])
            failed = description.get("Status") != "CREATE_COMPLETE"
            if check_mode or failed:
                self.delete_change_set(change_set["id"])
                if review_stack is None and change_set["stack_id"]:
                    self.delete_review_stack(change_set["stack_id"])
            if failed:
                raise StackError(
                    f"stack {self.name}: CloudFormation rejected the CREATE change set: "
                    f"{description.get('StatusReason') or description.get('Status')}; fix the "
                    "template or parameters named there and re-run",
                    events=self.progress,
                )
            diff = self._diff({}, after, changes)
            if check_mode:
                return self._result(
                    True, None, changes, diff, msg="the stack would be created (change set preview)"
                )
            marker = self.latest_event_id(change_set["stack_id"]) if review_stack else None
            self.client.execute_change_set(aws_retry=True, ChangeSetName=change_set["id"])
            self.note("change set executed")
            stack_id = change_set["stack_id"]
            stack = self.wait_stack(stack_id, "CREATE", marker, REVIEW_IN_PROGRESS)
            self._judge(stack, "CREATE", marker)
            if request.termination_protection:
                self.set_termination_protection(stack_id, True)
        else:
            changes = []
            note = "created with CreateStack (use_change_sets: false)\n"
            diff = self._diff({}, after, None, note)
            if review_stack is not None:
                self.delete_review_stack(review_stack["StackId"])
            kwargs: dict[str, Any] = {
                "StackName": self.name,
                **request.template_args(),
                "Parameters": parameter_list(request.parameters),
                "Capabilities": request.capabilities,
            }
            if request.tags is not None:
                kwargs["Tags"] = ansible_dict_to_boto3_tag_list(request.tags)
            if request.termination_protection is not None:
                kwargs["EnableTerminationProtection"] = request.termination_protection
            stack_id = self.client.create_stack(aws_retry=True, **kwargs)["StackId"]
            self.note("create requested")
            stack = self.wait_stack(stack_id, "CREATE", None)
            self._judge(stack, "CREATE", None)
        return self._result(True, self.describe(stack_id), changes, diff)

    def _update(
        self, request: StackRequest, stack: dict[str, Any], check_mode: bool
    ) -> dict[str, Any]:
        stack_id = stack["StackId"]
        deployed = stack_parameters(stack)
        deployed_tags = stack_tags(stack)
        param_changes = parameter_changes(
            deployed, request.parameters, request.declared, self.resolve_ssm
        )
        tags_changed = request.tags is not None and request.tags != deployed_tags
        deployed_body = self.deployed_template(stack_id)
        template_changed = not same_template(deployed_body, request.template_body)
        protection = bool(stack.get("EnableTerminationProtection"))
        protection_changed = (
            request.termination_protection is not None
            and request.termination_protection != protection
        )
        before = self._state(deployed, deployed_tags if request.tags is not None else None, stack)
        wanted_protection = protection != protection_changed  # flipped when it changes
        after = self._state(
            {**deployed, **{k: v["after"] for k, v in param_changes.items()}},
            request.tags,
            {"EnableTerminationProtection": wanted_protection},
        )
        note = "template body changed\n" if template_changed else ""

        changes: list[dict[str, Any]] = []
        stack_changed = False
        if param_changes or tags_changed or template_changed:
            if check_mode or request.use_change_sets:
                stack_changed, changes, stack = self._update_with_change_set(
                    request, stack, check_mode
                )
            else:
                stack_changed, stack = self._update_direct(request, stack)
        else:
            self.note("template, parameters and tags already deployed; nothing sent")
        if protection_changed and not check_mode:
            self.set_termination_protection(stack_id, bool(request.termination_protection))
            stack = self.describe(stack_id) or stack
        changed = stack_changed or protection_changed
        if not changed:
            after = before
            note = ""
        diff = self._diff(before, after, changes if stack_changed else None, note)
        msg = "" if changed else "the stack is up to date"
        if check_mode and changed:
            msg = "the stack would be updated (change set preview)"
        return self._result(changed, stack, changes, diff, msg)

    def _update_with_change_set(
        self, request: StackRequest, stack: dict[str, Any], check_mode: bool
    ) -> tuple[bool, list[dict[str, Any]], dict[str, Any]]:
        try:
            change_set = self.create_change_set("UPDATE", request)
        except is_boto3_error_message("No updates are to be performed"):
            self.note("CloudFormation reports no updates to perform")
            return False, [], stack
        description = self.wait_change_set(change_set["id"])
        if is_no_change(description):
            self.delete_change_set(change_set["id"])
            self.note("the change set contained no changes; deleted it")
            return False, [], stack
        if description.get("Status") != "CREATE_COMPLETE":
            self.delete_change_set(change_set["id"])
            raise StackError(
                f"stack {self.name}: CloudFormation rejected the UPDATE change set: "
                f"{description.get('StatusReason') or description.get('Status')}; fix the "
                "template or parameters named there and re-run (the stack is unchanged)",
                events=self.progress,
            )
        changes = summarize_changes(description.get("Changes") or [])
        if check_mode:
            self.delete_change_set(change_set["id"])
            return True, changes, stack
        marker = self.latest_event_id(stack["StackId"])
        self.client.execute_change_set(aws_retry=True, ChangeSetName=change_set["id"])
        self.note("change set executed")
        updated = self.wait_stack(stack["StackId"], "UPDATE", marker, stack["StackStatus"])
        self._judge(updated, "UPDATE", marker)
        return True, changes, self.describe(stack["StackId"]) or updated

    def _update_direct(
        self, request: StackRequest, stack: dict[str, Any]
    ) -> tuple[bool, dict[str, Any]]:
        kwargs: dict[str, Any] = {
            "StackName": stack["StackId"],
            **request.template_args(),
            "Parameters": parameter_list(request.parameters),
            "Capabilities": request.capabilities,
        }
        if request.tags is not None:
            kwargs["Tags"] = ansible_dict_to_boto3_tag_list(request.tags)
        marker = self.latest_event_id(stack["StackId"])
        try:
            self.client.update_stack(aws_retry=True, **kwargs)
        except is_boto3_error_message("No updates are to be performed"):
            self.note("CloudFormation reports no updates to perform")
            return False, stack
        self.note("update requested (use_change_sets: false)")
        updated = self.wait_stack(stack["StackId"], "UPDATE", marker, stack["StackStatus"])
        self._judge(updated, "UPDATE", marker)
        return True, self.describe(stack["StackId"]) or updated


def aws_error_types() -> tuple[type[BaseException], ...]:
    """The botocore exceptions a module turns into ``fail_json_aws``."""
    return (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
