# Copyright: xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)
"""A thin, typed wrapper around the AWS ParallelCluster v3 CLI (``pcluster``).

Used by the ``pcluster_cluster`` and ``pcluster_cluster_info`` modules. It

* finds the ``pcluster`` executable (explicit path, next to the running Python, or ``PATH``);
* builds argv lists (never shell strings) and runs them with a timeout (:func:`run_command`,
  the one place a process is started, so tests patch it);
* parses every answer in one helper, :func:`parse_output`, which knows pcluster's output shapes
  (success JSON, ``{"message": ...}`` errors, ``configurationValidationErrors``,
  ``updateValidationErrors`` with a ``changeSet``, the dry-run "would have succeeded" message
  that comes with exit status 1, and non-JSON noise before the JSON) and turns failures into
  typed exceptions;
* waits for cluster and compute fleet states with a deadline and progress lines;
* gathers what explains a failed cluster: ``describe-cluster`` failures, the first failed stack
  resource and the tail of the failing node's bootstrap log.

Response shapes follow the OpenAPI spec shipped in aws-parallelcluster 3.16.1
(``pcluster/api/openapi/openapi.yaml``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

#: What ``pcluster ... --dryrun true`` says when the request would succeed (it exits 1 anyway).
DRYRUN_SUCCESS = "Request would have succeeded, but DryRun flag is set."
#: What ``update-cluster`` says when the desired config equals the deployed one.
NO_CHANGES = "No changes found in your cluster configuration"
_NOT_FOUND_RE = re.compile(r"\bdoes not exist\b", re.IGNORECASE)
# Update checks that stopping the compute fleet satisfies (pcluster/config/update_policy.py).
_FLEET_STOP_RE = re.compile(r"compute nodes must be stopped|stop the compute fleet", re.IGNORECASE)
_LOGIN_STOP_RE = re.compile(r"login nodes", re.IGNORECASE)
_HEAD_STOP_RE = re.compile(r"head node must be in a stopped state", re.IGNORECASE)

#: Seconds one read-only pcluster call may take (describe, list, logs).
READ_TIMEOUT = 300
#: Seconds one create/update/delete call may take (validation plus template build and upload).
WRITE_TIMEOUT = 1200

CLI_LOG_HINT = "~/.parallelcluster/pcluster-cli.log (or $PCLUSTER_LOG_FILE)"
INSTALL_HINT = (
    "install aws-parallelcluster (pinned in requirements.txt) into the Python that runs the "
    "module, or set pcluster_path"
)

# Cluster and stack states (CloudFormationStackStatus / ClusterStatus in the OpenAPI spec).
IN_PROGRESS = frozenset({"CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS"})
FAILED = frozenset({"CREATE_FAILED", "UPDATE_FAILED", "DELETE_FAILED"})
ROLLBACK_STACK_STATES = frozenset(
    {
        "ROLLBACK_IN_PROGRESS",
        "ROLLBACK_FAILED",
        "ROLLBACK_COMPLETE",
        "UPDATE_ROLLBACK_IN_PROGRESS",
        "UPDATE_ROLLBACK_FAILED",
        "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS",
        "UPDATE_ROLLBACK_COMPLETE",
    }
)
GOALS: dict[str, str] = {
    "create": "CREATE_COMPLETE",
    "update": "UPDATE_COMPLETE",
    "delete": "DELETED",
    "settle": "any state that is not *_IN_PROGRESS",
}
# Compute fleet: the request and the state that means it is done, per scheduler.
FLEET_STOP = {"slurm": ("STOP_REQUESTED", "STOPPED"), "awsbatch": ("DISABLED", "DISABLED")}
FLEET_START = {"slurm": ("START_REQUESTED", "RUNNING"), "awsbatch": ("ENABLED", "ENABLED")}

# Log stream suffixes ({hostname}.{instance_id}.{suffix}, from the ParallelCluster cookbook's
# CloudWatch agent config) to read, in order, for the failure of one kind of node.
HEAD_NODE_LOGS = ("cfn-init", "chef-client", "cloud-init", "clustermgtd")
COMPUTE_NODE_LOGS = ("bootstrap_error_msg", "cloud-init-output", "chef-client")


# --------------------------------------------------------------------------- exceptions


class PclusterError(Exception):
    """A pcluster call that did not give the answer asked for."""

    def __init__(
        self,
        message: str,
        *,
        operation: str = "",
        argv: list[str] | None = None,
        rc: int | None = None,
        data: Any = None,
        stdout: str = "",
        stderr: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation
        self.argv = list(argv or [])
        self.rc = rc
        self.data = data
        self.stdout = stdout
        self.stderr = stderr

    def details(self) -> dict[str, Any]:
        """Facts for a module's failure result."""
        out: dict[str, Any] = {"pcluster_command": self.argv, "rc": self.rc}
        if self.data is not None:
            out["pcluster_output"] = self.data
        elif self.stdout or self.stderr:
            out["stdout"] = self.stdout[-4000:]
            out["stderr"] = self.stderr[-4000:]
        return out


class PclusterNotInstalled(PclusterError):
    """The pcluster executable cannot be found or started."""


class PclusterTimeout(PclusterError):
    """One pcluster call ran past its timeout and was killed."""


class PclusterOutputError(PclusterError):
    """pcluster printed nothing parsable (crash, argparse usage error, missing credentials)."""


class PclusterApiError(PclusterError):
    """pcluster answered with an error document ``{"message": ...}``."""


class PclusterNotFound(PclusterApiError):
    """The cluster does not exist (or belongs to another ParallelCluster major version)."""


class PclusterNoChanges(PclusterApiError):
    """update-cluster found no difference between the deployed and the requested config."""


class PclusterValidationError(PclusterApiError):
    """The config failed ParallelCluster's validators (``configurationValidationErrors``)."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        return list((self.data or {}).get("configurationValidationErrors") or [])


class PclusterUpdateError(PclusterApiError):
    """update-cluster refused changes its update policies do not allow now."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        return list((self.data or {}).get("updateValidationErrors") or [])

    @property
    def change_set(self) -> list[dict[str, Any]]:
        return list((self.data or {}).get("changeSet") or [])


class ClusterStateError(Exception):
    """A wait ended in a state other than the goal (failure, rollback or deadline)."""

    def __init__(self, message: str, cluster: dict[str, Any] | None, status: str) -> None:
        super().__init__(message)
        self.message = message
        self.cluster = cluster
        self.status = status


class ClusterFailed(ClusterStateError):
    """The cluster reached a failed or rolled-back state."""


class WaitTimeout(ClusterStateError):
    """The deadline passed before the goal state."""


@dataclass
class DryRun:
    """A dry run that would have succeeded: its change set and non-blocking validator messages."""

    message: str
    change_set: list[dict[str, Any]] = field(default_factory=list)
    validation_messages: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- parsing


def extract_json(text: str) -> Any:
    """The JSON document in pcluster's stdout, skipping any non-JSON lines around it.

    Returns None when there is none. The whole text is tried first; otherwise each line that
    starts (in column 0, as ``json.dumps(indent=2)`` prints a document) with ``{`` or ``[`` is
    decoded, and the last document found wins: pcluster prints its answer last, after any log
    lines (``PCLUSTER_LOG_TO_STDOUT``), tracebacks or warnings. A log line such as
    ``[WARNING] ...`` fails to decode and is skipped.
    """
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    found = None
    offset = 0
    for line in text.splitlines(keepends=True):
        start = offset
        offset += len(line)
        if line[:1] not in ("{", "["):
            continue
        try:
            value, _end = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(value, (dict, list)):
            found = value
    return found


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(line for line in text.strip().splitlines()[-lines:] if line.strip())


def parse_output(
    operation: str, argv: list[str], rc: int, stdout: str, stderr: str
) -> dict[str, Any] | DryRun:
    """Turn one pcluster answer into data, a :class:`DryRun`, or a typed exception.

    The exit status alone decides nothing: a dry run that would succeed exits 1, so the message
    is read first.
    """
    data = extract_json(stdout)
    context = {"operation": operation, "argv": argv, "rc": rc, "stdout": stdout, "stderr": stderr}
    if data is None:
        if rc == 0 and not stdout.strip():
            return {}
        detail = _tail(stderr) or _tail(stdout) or "no output"
        raise PclusterOutputError(
            f"pcluster {operation} exited {rc} without a JSON answer ({detail}); "
            f"see {CLI_LOG_HINT}",
            **context,
        )
    if not isinstance(data, dict):
        if rc == 0:
            return {"items": data}
        raise PclusterOutputError(f"pcluster {operation} exited {rc}: {data!r}", **context)
    message = str(data.get("message") or "")
    if DRYRUN_SUCCESS.rstrip(".") in message:
        return DryRun(
            message=message,
            change_set=list(data.get("changeSet") or []),
            validation_messages=list(data.get("validationMessages") or []),
            data=data,
        )
    if rc == 0:
        return data
    context["data"] = data
    if data.get("configurationValidationErrors"):
        raise PclusterValidationError(
            f"pcluster {operation}: {message or 'Invalid cluster configuration.'} "
            + format_validation_messages(data["configurationValidationErrors"]),
            **context,
        )
    if data.get("updateValidationErrors"):
        raise PclusterUpdateError(
            f"pcluster {operation}: {message or 'Update failure'}: "
            + "; ".join(format_update_error(e) for e in data["updateValidationErrors"]),
            **context,
        )
    if NO_CHANGES in message:
        raise PclusterNoChanges(message, **context)
    if _NOT_FOUND_RE.search(message):
        raise PclusterNotFound(message, **context)
    raise PclusterApiError(
        f"pcluster {operation}: {message or json.dumps(data, sort_keys=True)}", **context
    )


def format_validation_messages(messages: Iterable[Mapping[str, Any]]) -> str:
    """``[ERROR] EfaValidator: Instance type 'c6i.xlarge' does not support EFA.; [...]``"""
    return "; ".join(
        f"[{m.get('level', '?')}] {m.get('type', '?')}: {m.get('message', '')}" for m in messages
    )


def format_update_error(error: Mapping[str, Any]) -> str:
    return (
        f"{error.get('parameter', '?')} ({error.get('currentValue', '-')} -> "
        f"{error.get('requestedValue', '-')}): {error.get('message', '')}"
    )


def update_policy(message: str | None) -> str:
    """Name the update policy behind one of update-cluster's refusals (None: it was allowed)."""
    if not message:
        return "SUPPORTED"
    if _LOGIN_STOP_RE.search(message):
        return "LOGIN_NODES_STOP"
    if _FLEET_STOP_RE.search(message):
        return "COMPUTE_FLEET_STOP"
    if _HEAD_STOP_RE.search(message):
        return "HEAD_NODE_STOP"
    return "UNSUPPORTED"


def change_rows(
    change_set: Iterable[Mapping[str, Any]], errors: Iterable[Mapping[str, Any]] = ()
) -> list[dict[str, Any]]:
    """One row per changed parameter: parameter, current, requested, update policy, message."""
    refused = {str(e.get("parameter")): str(e.get("message") or "") for e in errors}
    rows = []
    for change in change_set:
        parameter = str(change.get("parameter", ""))
        message = refused.get(parameter)
        rows.append(
            {
                "parameter": parameter,
                "current_value": change.get("currentValue"),
                "requested_value": change.get("requestedValue"),
                "update_policy": update_policy(message),
                "message": message or "",
            }
        )
    # A refused parameter pcluster left out of the change set still gets its row.
    listed = {row["parameter"] for row in rows}
    for error in errors:
        if str(error.get("parameter")) not in listed:
            rows.append(
                {
                    "parameter": str(error.get("parameter", "")),
                    "current_value": error.get("currentValue"),
                    "requested_value": error.get("requestedValue"),
                    "update_policy": update_policy(str(error.get("message") or "refused")),
                    "message": str(error.get("message") or ""),
                }
            )
    return rows


def needs_only_fleet_stop(errors: Iterable[Mapping[str, Any]]) -> bool:
    """True when every refusal goes away once the compute fleet is stopped."""
    errors = list(errors)
    return bool(errors) and all(
        update_policy(str(e.get("message") or "refused")) == "COMPUTE_FLEET_STOP" for e in errors
    )


# --------------------------------------------------------------------------- running


def find_pcluster(path: str | None = None) -> str:
    """The pcluster executable: ``path``, else next to the running Python, else on PATH."""
    if path:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
        raise PclusterNotInstalled(
            f"pcluster_path {path} is not an executable file; point it at the pcluster CLI "
            f"or leave it unset to use the one next to {sys.executable} or on PATH"
        )
    beside = os.path.join(os.path.dirname(sys.executable), "pcluster")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("pcluster")
    if found:
        return found
    raise PclusterNotInstalled(
        f"pcluster CLI not found next to {sys.executable} or on PATH: {INSTALL_HINT}"
    )


def run_command(argv: list[str], *, timeout: float, env: Mapping[str, str] | None = None):
    """Run ``argv`` (no shell) and return ``(rc, stdout, stderr)``; the only process launcher."""
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        raise PclusterTimeout(
            f"{' '.join(argv[1:3])} did not answer within {int(timeout)}s and was stopped; "
            f"check connectivity to the AWS endpoint and {CLI_LOG_HINT}, then re-run",
            operation=argv[1] if len(argv) > 1 else "",
            argv=argv,
            stdout=out,
            stderr=err,
        ) from exc
    except OSError as exc:
        raise PclusterNotInstalled(
            f"cannot run {argv[0]}: {exc}; {INSTALL_HINT}", argv=argv
        ) from exc
    return proc.returncode, proc.stdout, proc.stderr


def aws_environment(params: Mapping[str, Any], base: Mapping[str, str] | None = None) -> dict:
    """The environment for pcluster: ``base`` plus the module's AWS connection options.

    pcluster uses boto3, so the standard variables carry the endpoint (botocore honours
    ``AWS_ENDPOINT_URL`` for every service), profile and credentials.
    """
    env = dict(os.environ if base is None else base)
    if params.get("endpoint_url"):
        env["AWS_ENDPOINT_URL"] = str(params["endpoint_url"])
    if params.get("profile"):
        env["AWS_PROFILE"] = str(params["profile"])
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            env.pop(name, None)
    else:
        for option, name in (
            ("access_key", "AWS_ACCESS_KEY_ID"),
            ("secret_key", "AWS_SECRET_ACCESS_KEY"),
            ("session_token", "AWS_SESSION_TOKEN"),
        ):
            if params.get(option):
                env[name] = str(params[option])
    if params.get("aws_ca_bundle"):
        env["AWS_CA_BUNDLE"] = str(params["aws_ca_bundle"])
    if params.get("region"):
        env["AWS_DEFAULT_REGION"] = str(params["region"])
    return env


def _flag(value: bool) -> str:
    return "true" if value else "false"


class PclusterCli:
    """pcluster commands as methods; each returns parsed JSON or raises a PclusterError."""

    def __init__(
        self,
        executable: str,
        region: str | None = None,
        env: Mapping[str, str] | None = None,
        read_timeout: float = READ_TIMEOUT,
        write_timeout: float = WRITE_TIMEOUT,
    ) -> None:
        self.executable = executable
        self.region = region
        self.env = dict(env) if env is not None else None
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.calls: list[list[str]] = []

    def argv(self, operation: str, *args: str) -> list[str]:
        argv = [self.executable, operation, *args]
        if self.region:
            argv += ["--region", self.region]
        return argv

    def call(self, operation: str, *args: str, timeout: float | None = None):
        argv = self.argv(operation, *args)
        self.calls.append(argv)
        rc, stdout, stderr = run_command(argv, timeout=timeout or self.read_timeout, env=self.env)
        return parse_output(operation, argv, rc, stdout, stderr)

    def _data(self, operation: str, *args: str, timeout: float | None = None) -> dict[str, Any]:
        result = self.call(operation, *args, timeout=timeout)
        if isinstance(result, DryRun):  # only dry runs answer like this
            raise PclusterApiError(f"pcluster {operation}: unexpected {result.message}")
        return result

    # ---- cluster lifecycle

    def describe_cluster(self, name: str) -> dict[str, Any]:
        return self._data("describe-cluster", "--cluster-name", name)

    def create_cluster(
        self,
        name: str,
        config: str,
        *,
        dryrun: bool = False,
        suppress_validators: Iterable[str] = (),
        rollback_on_failure: bool = True,
    ) -> dict[str, Any] | DryRun:
        """``config`` is the path of the cluster YAML (pcluster reads the file itself)."""
        args = ["--cluster-name", name, "--cluster-configuration", config]
        args += ["--dryrun", _flag(dryrun), "--rollback-on-failure", _flag(rollback_on_failure)]
        suppress = list(suppress_validators)
        if suppress:
            args += ["--suppress-validators", *suppress]
        return self.call("create-cluster", *args, timeout=self.write_timeout)

    def update_cluster(
        self,
        name: str,
        config: str,
        *,
        dryrun: bool = False,
        force_update: bool = False,
        suppress_validators: Iterable[str] = (),
    ) -> dict[str, Any] | DryRun:
        args = ["--cluster-name", name, "--cluster-configuration", config]
        args += ["--dryrun", _flag(dryrun), "--force-update", _flag(force_update)]
        suppress = list(suppress_validators)
        if suppress:
            args += ["--suppress-validators", *suppress]
        return self.call("update-cluster", *args, timeout=self.write_timeout)

    def delete_cluster(self, name: str) -> dict[str, Any]:
        return self._data("delete-cluster", "--cluster-name", name, timeout=self.write_timeout)

    # ---- instances and fleet

    def describe_cluster_instances(
        self, name: str, node_type: str | None = None, queue: str | None = None
    ) -> list[dict[str, Any]]:
        """All instances (every page) of the cluster."""
        args = ["--cluster-name", name]
        if node_type:
            args += ["--node-type", node_type]
        if queue:
            args += ["--queue-name", queue]
        return self._pages("describe-cluster-instances", "instances", *args)

    def describe_compute_fleet(self, name: str) -> dict[str, Any]:
        return self._data("describe-compute-fleet", "--cluster-name", name)

    def update_compute_fleet(self, name: str, status: str) -> dict[str, Any]:
        return self._data("update-compute-fleet", "--cluster-name", name, "--status", status)

    # ---- logs and events

    def list_cluster_log_streams(
        self, name: str, filters: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        args = ["--cluster-name", name]
        filters = list(filters)
        if filters:
            args += ["--filters", *filters]
        return self._pages("list-cluster-log-streams", "logStreams", *args)

    def get_cluster_log_events(
        self, name: str, stream: str, *, limit: int | None = None, start_from_head: bool = False
    ) -> list[dict[str, Any]]:
        """Events of one stream, oldest first; with ``start_from_head`` false, the latest ones."""
        args = ["--cluster-name", name, "--log-stream-name", stream]
        args += ["--start-from-head", _flag(start_from_head)]
        if limit:
            args += ["--limit", str(int(limit))]
        events = list(self._data("get-cluster-log-events", *args).get("events") or [])
        return sorted(events, key=lambda e: str(e.get("timestamp", "")))

    def get_cluster_stack_events(self, name: str) -> list[dict[str, Any]]:
        """The main stack's events, newest first (first page: the most recent ones)."""
        return list(
            self._data("get-cluster-stack-events", "--cluster-name", name).get("events") or []
        )

    def _pages(self, operation: str, key: str, *args: str, max_pages: int = 50) -> list:
        items: list = []
        token = None
        for _ in range(max_pages):
            page_args = [*args, "--next-token", token] if token else list(args)
            data = self._data(operation, *page_args)
            items.extend(data.get(key) or [])
            token = data.get("nextToken")
            if not token:
                break
        return items


# --------------------------------------------------------------------------- waiting


class Clock:
    """Time source for waits; tests replace it with a fake one."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass
class Progress:
    """Progress lines of one module run, each stamped with seconds since the run started."""

    clock: Clock
    lines: list[str] = field(default_factory=list)
    started: float | None = None

    def add(self, text: str) -> None:
        now = self.clock.now()
        if self.started is None:
            self.started = now
        self.lines.append(f"+{int(now - self.started)}s {text}")


def _state(cluster: Mapping[str, Any]) -> str:
    parts = [str(cluster.get("clusterStatus"))]
    stack = cluster.get("cloudFormationStackStatus")
    if stack and stack != cluster.get("clusterStatus"):
        parts.append(f"stack {stack}")
    fleet = cluster.get("computeFleetStatus")
    if fleet:
        parts.append(f"fleet {fleet}")
    return ", ".join(parts)


def wait_for_cluster(
    cli: PclusterCli,
    name: str,
    goal: str,
    *,
    timeout: float,
    poll_interval: float,
    progress: Progress,
    clock: Clock,
) -> dict[str, Any] | None:
    """Poll describe-cluster until ``goal`` (a key of GOALS); returns the last description.

    ``delete`` ends when the cluster is gone (returns None). A failed or rolled-back state
    raises :class:`ClusterFailed`, the deadline :class:`WaitTimeout`.
    """
    deadline = clock.now() + timeout
    last_state = None
    cluster: dict[str, Any] | None = None
    while True:
        try:
            cluster = cli.describe_cluster(name)
        except PclusterNotFound:
            if goal == "delete":
                progress.add(f"cluster {name}: deleted")
                return None
            raise
        status = str(cluster.get("clusterStatus"))
        stack = str(cluster.get("cloudFormationStackStatus"))
        state = _state(cluster)
        if state != last_state:
            progress.add(f"cluster {name}: {state}")
            last_state = state
        if status not in IN_PROGRESS:
            if goal == "settle":
                return cluster
            if status == GOALS[goal] and stack not in ROLLBACK_STACK_STATES:
                return cluster
            if status in FAILED or stack in ROLLBACK_STACK_STATES:
                raise ClusterFailed(f"cluster {name}: {status}", cluster, status)
            raise ClusterFailed(
                f"cluster {name}: {status} while waiting for {GOALS[goal]}", cluster, status
            )
        # UPDATE_ROLLBACK_IN_PROGRESS reads as UPDATE_IN_PROGRESS: the update has failed, but the
        # wait goes on until the rollback ends so that the report sees the final state.
        remaining = deadline - clock.now()
        if remaining <= 0:
            progress.add(f"cluster {name}: deadline of {int(timeout)}s passed at {state}")
            raise WaitTimeout(
                f"cluster {name}: still {status} after {int(timeout)}s", cluster, status
            )
        clock.sleep(min(poll_interval, remaining))


def wait_for_fleet(
    cli: PclusterCli,
    name: str,
    target: str,
    *,
    timeout: float,
    poll_interval: float,
    progress: Progress,
    clock: Clock,
) -> dict[str, Any]:
    """Poll describe-compute-fleet until its status is ``target`` (STOPPED, RUNNING...)."""
    deadline = clock.now() + timeout
    last = None
    while True:
        fleet = cli.describe_compute_fleet(name)
        status = str(fleet.get("status"))
        if status != last:
            progress.add(f"cluster {name}: compute fleet {status}")
            last = status
        if status == target:
            return fleet
        remaining = deadline - clock.now()
        if remaining <= 0:
            raise WaitTimeout(
                f"cluster {name}: compute fleet still {status} after {int(timeout)}s "
                f"(waiting for {target})",
                None,
                status,
            )
        clock.sleep(min(poll_interval, remaining))


def scheduler_of(cluster: Mapping[str, Any]) -> str:
    return str((cluster.get("scheduler") or {}).get("type") or "slurm")


# --------------------------------------------------------------------------- failures


def first_failed_resource(events: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The root cause among stack events: the oldest *_FAILED event not merely cancelled."""
    failed = [e for e in events if str(e.get("resourceStatus", "")).endswith("_FAILED")]
    if not failed:
        return None
    failed.sort(key=lambda e: str(e.get("timestamp", "")))
    causes = [
        e
        for e in failed
        if "cancelled" not in str(e.get("resourceStatusReason", "")).lower()
        and e.get("resourceType") != "AWS::CloudFormation::Stack"
    ]
    event = (causes or failed)[0]
    return {
        "logical_resource_id": event.get("logicalResourceId"),
        "resource_type": event.get("resourceType"),
        "resource_status": event.get("resourceStatus"),
        "reason": event.get("resourceStatusReason"),
        "timestamp": event.get("timestamp"),
    }


def pick_log_stream(
    streams: Iterable[Mapping[str, Any]],
    head_instance_id: str | None,
    failure_code: str | None,
) -> str | None:
    """The stream that best explains the failure (head node bootstrap or compute bootstrap)."""
    names = [str(s.get("logStreamName", "")) for s in streams]

    def find(suffix: str, instance: str | None = None) -> str | None:
        for stream in names:
            if stream.endswith("." + suffix) and (instance is None or f".{instance}." in stream):
                return stream
        return None

    head = [(suffix, head_instance_id) for suffix in HEAD_NODE_LOGS]
    compute = [(suffix, None) for suffix in COMPUTE_NODE_LOGS]
    # Static compute nodes that fail to bootstrap put the cluster in protected mode.
    order = compute + head if failure_code == "StaticNodeBootstrapFailure" else head + compute
    for suffix, instance in order:
        stream = find(suffix, instance) if instance else None
        stream = stream or find(suffix)
        if stream:
            return stream
    return None


def diagnose_failure(
    cli: PclusterCli, name: str, cluster: Mapping[str, Any] | None, tail_lines: int
) -> dict[str, Any]:
    """What explains a failed cluster, each part best effort (a part that fails adds a note)."""
    cluster = cluster or {}
    report: dict[str, Any] = {
        "failures": list(cluster.get("failures") or []),
        "failed_resource": None,
        "log_stream": None,
        "log_tail": [],
        "log_node": None,
        "notes": [],
    }
    try:
        report["failed_resource"] = first_failed_resource(cli.get_cluster_stack_events(name))
    except PclusterError as exc:
        report["notes"].append(f"stack events unavailable: {exc.message}")
    if tail_lines <= 0:
        return report
    head = (cluster.get("headNode") or {}).get("instanceId")
    code = next((f.get("failureCode") for f in report["failures"] if f.get("failureCode")), None)
    try:
        stream = pick_log_stream(cli.list_cluster_log_streams(name), head, code)
    except PclusterError as exc:
        report["notes"].append(f"log streams unavailable: {exc.message}")
        return report
    if not stream:
        report["notes"].append("no bootstrap log stream found (CloudWatch logs disabled?)")
        return report
    report["log_stream"] = stream
    report["log_node"] = "head node" if head and f".{head}." in stream else "node"
    try:
        events = cli.get_cluster_log_events(name, stream, limit=tail_lines)
    except PclusterError as exc:
        report["notes"].append(f"log events of {stream} unavailable: {exc.message}")
        return report
    lines: list[str] = []
    for event in events:
        lines.extend(str(event.get("message", "")).rstrip("\n").splitlines() or [""])
    report["log_tail"] = lines[-tail_lines:]
    return report


def failure_message(
    name: str, status: str, report: Mapping[str, Any], next_step: str, shown_lines: int = 5
) -> str:
    """One line: what failed, why, where the log says so, and what to do next.

    ``cluster NAME: CREATE_FAILED: <failureCode>: <reason>; first failed resource ...;
    head node log <stream>: <last lines>; <next step>``
    """
    text = f"cluster {name}: {status}"
    failures = [
        f"{f.get('failureCode', '?')}: {f.get('failureReason', '')}"
        for f in report.get("failures") or []
    ]
    if failures:
        text += ": " + "; ".join(failures)
    resource = report.get("failed_resource")
    if resource:
        text += (
            f"; first failed resource {resource.get('logical_resource_id')} "
            f"({resource.get('resource_type')}): {resource.get('reason')}"
        )
    stream = report.get("log_stream")
    if stream:
        tail = [line for line in report.get("log_tail") or [] if line.strip()]
        shown = " | ".join(tail[-shown_lines:]) if tail else "(empty)"
        text += f"; {report.get('log_node') or 'node'} log {stream}: {shown}"
    return f"{text}; {next_step}"


# --------------------------------------------------------------------------- deployed config


def parse_s3_url(url: str) -> tuple[str, str, str | None]:
    """(bucket, key, version id) of an S3 URL, presigned or not, virtual-hosted or path style."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        return parts.netloc, unquote(parts.path.lstrip("/")), None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an S3 URL: {url!r}")
    query = parse_qs(parts.query)
    version = (query.get("versionId") or [None])[0]
    match = re.match(r"^(?P<bucket>.+?)\.s3[.-]", parts.hostname)
    if match:
        key = unquote(parts.path.lstrip("/"))
        return match.group("bucket"), key, version
    bucket, _, key = parts.path.lstrip("/").partition("/")
    if not bucket or not key:
        raise ValueError(f"no bucket and key in S3 URL {url!r}")
    return bucket, unquote(key), version


def fetch_deployed_config(s3_client: Any, url: str) -> str:
    """The deployed cluster config that describe-cluster's ``clusterConfiguration.url`` names.

    Read with the caller's S3 client (it honours the module's endpoint and credentials) rather
    than by opening the presigned URL.
    """
    if not url or url == "NOT_AVAILABLE":
        raise ValueError("describe-cluster gave no configuration URL (NOT_AVAILABLE)")
    bucket, key, version = parse_s3_url(url)
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version:
        kwargs["VersionId"] = version
    body = s3_client.get_object(**kwargs)["Body"].read()
    return body.decode("utf-8") if isinstance(body, bytes) else str(body)


# --------------------------------------------------------------------------- views


def head_node_view(cluster: Mapping[str, Any]) -> dict[str, Any] | None:
    head = cluster.get("headNode")
    if not head:
        return None
    return {
        "instance_id": head.get("instanceId"),
        "instance_type": head.get("instanceType"),
        "private_ip": head.get("privateIpAddress"),
        "public_ip": head.get("publicIpAddress"),
        "state": head.get("state"),
        "launch_time": head.get("launchTime"),
    }


def login_nodes_view(cluster: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "pool_name": pool.get("poolName"),
            "status": pool.get("status"),
            "address": pool.get("address"),
            "scheme": pool.get("scheme"),
            "healthy_nodes": pool.get("healthyNodes"),
            "unhealthy_nodes": pool.get("unhealthyNodes"),
        }
        for pool in cluster.get("loginNodes") or []
    ]


def instances_by_queue(instances: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Compute instances grouped by Slurm queue, sorted by instance id."""
    queues: dict[str, list[dict[str, Any]]] = {}
    for instance in instances:
        if instance.get("nodeType") != "ComputeNode":
            continue
        queue = str(instance.get("queueName") or "")
        queues.setdefault(queue, []).append(
            {
                "instance_id": instance.get("instanceId"),
                "node_type": instance.get("nodeType"),
                "state": instance.get("state"),
                "private_ip": instance.get("privateIpAddress"),
                "instance_type": instance.get("instanceType"),
                "launch_time": instance.get("launchTime"),
            }
        )
    return {q: sorted(v, key=lambda i: str(i["instance_id"])) for q, v in sorted(queues.items())}
