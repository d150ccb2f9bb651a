"""Static tests of files/cloudformation/infra.yaml, the infrastructure stack template.

Three layers:

1. The linters the issue names: cfn-lint and checkov must report nothing. checkov evaluates the
   template's Conditions with the parameters' defaults and silently drops resources whose Condition
   is false, so it also scans variants of the template whose defaults switch on self-hosting (with
   and without a certificate) and amp+amg; a test checks those variants really reach the monitoring
   resources, and that every checkov suppression is used and carries a reason.
2. Structure: the parameter and output contract the ``infra_stack`` module relies on, and the
   security properties docs/infra.md promises (no ingress from the world, EFA self rules, Lustre
   ports, private encrypted TLS-only bucket, scoped S3 endpoint policy, IMDSv2, scoped IAM).
3. Behaviour through a small evaluator of the intrinsic functions the template uses (Ref, Fn::If,
   Fn::Select, Fn::Split, Fn::Sub, Fn::Join, Fn::Contains and the condition functions): the subnet
   layout, NAT gateways, names at the longest cluster name, the Rules against good and bad parameter
   combinations, and what the emulator configuration (moto 5.2.1) creates.

cfn-lint and checkov run once per module, in parallel, as subprocesses of the project's tools.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE_PATH = ROOT / "files" / "cloudformation" / "infra.yaml"
BIN = ROOT / ".venv" / "bin"


# --------------------------------------------------------------------------- loading


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation short tags into their long form: ``!Sub x`` ->
    ``{"Fn::Sub": x}``, ``!Ref x`` -> ``{"Ref": x}``, ``!GetAtt a.b`` -> ``{"Fn::GetAtt": [a, b]}``,
    ``!Condition x`` -> ``{"Condition": x}``."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_tag)

TEXT = TEMPLATE_PATH.read_text()
TEMPLATE: dict[str, Any] = yaml.load(TEXT, Loader=CfnLoader)
PARAMS: dict[str, Any] = TEMPLATE["Parameters"]
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
OUTPUTS: dict[str, Any] = TEMPLATE["Outputs"]
RULES: dict[str, Any] = TEMPLATE["Rules"]

REQUIRED = object()  # marks a parameter without a default

# The parameters and outputs the infra_stack module and the cluster stage rely on (issue 3).
CONTRACT_PARAMETERS: dict[str, tuple[str, Any, list[str] | None]] = {
    "ClusterName": ("String", REQUIRED, None),
    "PrimaryAz": ("AWS::EC2::AvailabilityZone::Name", REQUIRED, None),
    "SecondaryAz": ("String", "", None),
    "VpcCidr": ("String", "10.0.0.0/16", None),
    "SecondaryCidr": ("String", "10.1.0.0/16", None),
    "NatGateways": ("String", "single", ["single", "per-az"]),
    "SshAllowedCidr": ("String", REQUIRED, None),
    "MonitoringAllowedCidr": ("String", "", None),
    "ExistingFsxId": ("String", "", None),
    "FsxDeploymentType": ("String", "PERSISTENT_2", ["PERSISTENT_2", "PERSISTENT_1"]),
    "FsxStorageCapacity": ("Number", 1200, None),
    "FsxThroughputPerTiB": ("Number", 250, ["50", "100", "125", "200", "250", "500", "1000"]),
    "FsxDataCompression": ("String", "LZ4", ["LZ4", "NONE"]),
    "FsxLustreVersion": ("String", "2.15", ["2.15", "2.12"]),
    "MonitoringType": ("String", "none", ["none", "self-hosting", "amp-only", "amp+amg"]),
    "MonitoringInstanceType": ("String", "t3.medium", None),
    "MonitoringImageId": (
        "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>",
        "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
        None,
    ),
    "CertificateArn": ("String", "", None),
    "AmgAuthenticationProvider": ("String", "AWS_SSO", ["AWS_SSO", "SAML"]),
}
# Added beyond the contract (docs/infra.md); all have defaults, so callers may ignore them.
ADDED_PARAMETERS = {"CreateFsx", "MonitoringVolumeSize", "S3EndpointExtraResources"}

UNCONDITIONAL_OUTPUTS = {
    "VpcId",
    "PublicSubnetIds",
    "PrivateSubnetIds",
    "HeadNodeSubnetId",
    "HeadNodeSecurityGroupId",
    "LoginNodeSecurityGroupId",
    "ComputeSecurityGroupId",
    "FsxSecurityGroupId",
    "NodeAssetsBucketName",
    "MonitoringType",
}
CONDITIONAL_OUTPUTS = {
    "FsxFileSystemId": "HasFsx",
    "MonitoringSecurityGroupId": "SelfHosted",
    "MonitoringInstanceId": "SelfHosted",
    "MonitoringUrl": "SelfHosted",
    "AmpWorkspaceId": "HasAmp",
    "AmpWorkspaceArn": "HasAmp",
    "AmpRemoteWriteUrl": "HasAmp",
    "AmpQueryUrl": "HasAmp",
    "AmpRemoteWritePolicyArn": "HasAmp",
    "AmpQueryPolicyArn": "HasAmp",
    "AmgWorkspaceId": "HasAmg",
    "AmgWorkspaceUrl": "HasAmg",
    "AmgWorkspaceRoleArn": "HasAmg",
}

MONITORING_TYPES = ("none", "self-hosting", "amp-only", "amp+amg")

# The configuration the local emulator (moto 5.2.1) deploys: see docs/infra.md.
EMULATOR_PARAMS = {
    "ClusterName": "xpu-lab",
    "PrimaryAz": "us-east-1a",
    "SshAllowedCidr": "203.0.113.0/24",
    "ExistingFsxId": "fs-0123456789abcdef0",
    "SecondaryCidr": "",
    "MonitoringType": "none",
}
BASE_PARAMS = {"ClusterName": "demo", "PrimaryAz": "us-east-1a", "SshAllowedCidr": "203.0.113.0/24"}
SELF_HOSTING = {
    "MonitoringType": "self-hosting",
    "SecondaryAz": "us-east-1b",
    "MonitoringAllowedCidr": "198.51.100.0/24",
}
CERT = "arn:aws:acm:us-east-1:111122223333:certificate/0123abcd-0000-4000-8000-000000000000"

# Resource types the emulator skips silently (and answers HTTP 500 for a GetAtt on in Outputs).
EMULATOR_GAPS = {
    "AWS::FSx::FileSystem",
    "AWS::APS::Workspace",
    "AWS::Grafana::Workspace",
    "AWS::EC2::VPCCidrBlock",
}


# --------------------------------------------------------------------------- evaluator


class Eval:
    """Evaluates the template's intrinsic functions for one set of parameter values.

    Parameters are strings as CloudFormation passes them; a Ref or GetAtt on a resource becomes a
    placeholder ``<Name>`` / ``<Name.Attr>``.
    """

    NO_VALUE = object()

    def __init__(self, **params: str) -> None:
        self.params: dict[str, str] = {
            name: str(spec["Default"]) for name, spec in PARAMS.items() if "Default" in spec
        }
        self.params.update(params)
        missing = [name for name in PARAMS if name not in self.params]
        assert not missing, f"no value for required parameters {missing}"
        self.params.update(
            {
                "AWS::Region": "us-east-1",
                "AWS::Partition": "aws",
                "AWS::AccountId": "111122223333",
                "AWS::StackName": "s",
            }
        )

    def condition(self, name: str) -> bool:
        return self.truth(TEMPLATE["Conditions"][name])

    def truth(self, expr: Any) -> bool:
        if isinstance(expr, dict) and len(expr) == 1:
            ((key, args),) = expr.items()
            if key == "Condition":
                return self.condition(args)
            if key == "Fn::Equals":
                return self.value(args[0]) == self.value(args[1])
            if key == "Fn::Not":
                return not self.truth(args[0])
            if key == "Fn::And":
                return all(self.truth(a) for a in args)
            if key == "Fn::Or":
                return any(self.truth(a) for a in args)
            if key == "Fn::Contains":
                return self.value(args[1]) in self.value(args[0])
        raise AssertionError(f"not a condition: {expr!r}")

    def created(self, logical_id: str) -> bool:
        condition = RESOURCES[logical_id].get("Condition")
        return condition is None or self.condition(condition)

    def value(self, expr: Any) -> Any:
        if isinstance(expr, list):
            items = [self.value(e) for e in expr]
            return [i for i in items if i is not self.NO_VALUE]
        if not isinstance(expr, dict):
            return (
                str(expr) if isinstance(expr, int | float) and not isinstance(expr, bool) else expr
            )
        if len(expr) == 1:
            ((key, args),) = expr.items()
            if key == "Ref":
                if args == "AWS::NoValue":
                    return self.NO_VALUE
                if args in self.params:
                    return self.params[args]
                assert args in RESOURCES, f"Ref to unknown {args}"
                return f"<{args}>"
            if key == "Fn::GetAtt":
                assert args[0] in RESOURCES, f"GetAtt on unknown {args[0]}"
                return f"<{args[0]}.{args[1]}>"
            if key == "Fn::If":
                return self.value(args[1] if self.condition(args[0]) else args[2])
            if key == "Fn::Select":
                return self.value(args[1])[int(self.value(args[0]))]
            if key == "Fn::Split":
                return self.value(args[1]).split(args[0])
            if key == "Fn::Join":
                return args[0].join(self.value(args[1]))
            if key == "Fn::Sub":
                return self._sub(args)
            if key in ("Condition", "Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Fn::Contains"):
                return self.truth(expr)
        out = {k: self.value(v) for k, v in expr.items()}
        return {k: v for k, v in out.items() if v is not self.NO_VALUE}

    def _sub(self, args: Any) -> str:
        text, names = (args, {}) if isinstance(args, str) else (args[0], args[1])
        local = {k: self.value(v) for k, v in names.items()}

        def repl(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in local:
                return str(local[name])
            if "." in name:
                return str(self.value({"Fn::GetAtt": name.split(".", 1)}))
            return str(self.value({"Ref": name}))

        return re.sub(r"\$\{([^}]+)\}", repl, text)

    def rule_failures(self) -> list[str]:
        failed = []
        for name, rule in RULES.items():
            if "RuleCondition" in rule and not self.truth(rule["RuleCondition"]):
                continue
            if not all(self.truth(a["Assert"]) for a in rule["Assertions"]):
                failed.append(name)
        return failed

    def outputs(self) -> dict[str, Any]:
        return {
            key: self.value(out["Value"])
            for key, out in OUTPUTS.items()
            if "Condition" not in out or self.condition(out["Condition"])
        }


# --------------------------------------------------------------------------- helpers


def resources_of(kind: str) -> dict[str, Any]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


def ref(expr: Any) -> str | None:
    return expr.get("Ref") if isinstance(expr, dict) else None


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def sg_rules() -> list[dict[str, Any]]:
    """Every security group rule: ``direction``, ``group`` (logical id), ``peer`` (logical id of
    the other group, or None), ``cidr`` (the CidrIp expression, or None), ``rule``, ``where``."""
    rules = []
    for name, res in resources_of("AWS::EC2::SecurityGroup").items():
        props = res["Properties"]
        for direction, key in (
            ("ingress", "SecurityGroupIngress"),
            ("egress", "SecurityGroupEgress"),
        ):
            for rule in props.get(key, []):
                peer = ref(
                    rule.get("SourceSecurityGroupId") or rule.get("DestinationSecurityGroupId")
                )
                cidr = rule.get("CidrIp")
                rules.append(
                    {
                        "direction": direction,
                        "group": name,
                        "peer": peer,
                        "cidr": cidr,
                        "rule": rule,
                        "where": f"{name}.{key}",
                        "condition": res.get("Condition"),
                    }
                )
    for kind, direction in (
        ("AWS::EC2::SecurityGroupIngress", "ingress"),
        ("AWS::EC2::SecurityGroupEgress", "egress"),
    ):
        for name, res in resources_of(kind).items():
            props = res["Properties"]
            peer = ref(
                props.get("SourceSecurityGroupId") or props.get("DestinationSecurityGroupId")
            )
            rules.append(
                {
                    "direction": direction,
                    "group": ref(props["GroupId"]),
                    "peer": peer,
                    "cidr": props.get("CidrIp"),
                    "rule": props,
                    "where": name,
                    "condition": res.get("Condition"),
                }
            )
    return rules


def ports(rule: dict[str, Any]) -> tuple[str, int, int]:
    proto = str(rule["IpProtocol"])
    if proto == "-1":
        return proto, 0, 65535
    return proto, int(rule["FromPort"]), int(rule["ToPort"])


def ingress_to(group: str) -> list[dict[str, Any]]:
    return [r for r in sg_rules() if r["direction"] == "ingress" and r["group"] == group]


# --------------------------------------------------------------------------- linters


def _variant(defaults: dict[str, str]) -> dict[str, Any]:
    variant = json.loads(json.dumps(TEMPLATE))
    for name, value in defaults.items():
        variant["Parameters"][name]["Default"] = value
    return variant


CHECKOV_VARIANTS = {
    "default": {},
    "self-hosting-https": {**SELF_HOSTING, "CertificateArn": CERT, "NatGateways": "per-az"},
    "self-hosting-http": SELF_HOSTING,
    "amp-amg": {"MonitoringType": "amp+amg", "ExistingFsxId": "fs-0123456789abcdef0"},
}


@pytest.fixture(scope="module")
def linters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Runs cfn-lint on the template and checkov on it and its variants, in parallel."""
    for tool in ("cfn-lint", "checkov"):
        assert (BIN / tool).exists(), f"{BIN / tool} is missing: run `make deps`"
    variants = tmp_path_factory.mktemp("checkov")
    for name, defaults in CHECKOV_VARIANTS.items():
        (variants / f"infra-{name}.json").write_text(json.dumps(_variant(defaults), indent=1))
    cfn_lint = subprocess.Popen(
        [str(BIN / "cfn-lint"), "--format", "parseable", str(TEMPLATE_PATH)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    checkov = subprocess.Popen(
        [
            str(BIN / "checkov"),
            "--skip-download",
            "--framework",
            "cloudformation",
            "--output",
            "json",
            "--directory",
            str(variants),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lint_out, _ = cfn_lint.communicate(timeout=120)
    checkov_out, checkov_err = checkov.communicate(timeout=180)
    assert checkov_out.strip(), f"checkov printed nothing: {checkov_err[-2000:]}"
    reports = json.loads(checkov_out)
    if isinstance(reports, dict):
        reports = [reports]
    results: dict[str, list[dict[str, Any]]] = {"passed": [], "failed": [], "skipped": []}
    for report in reports:
        for kind in results:
            results[kind] += report["results"][f"{kind}_checks"]
    return {"cfn_lint": (cfn_lint.returncode, lint_out), "checkov": results}


@pytest.mark.slow
def test_cfn_lint_reports_nothing(linters: dict[str, Any]) -> None:
    returncode, output = linters["cfn_lint"]
    assert (returncode, output.strip()) == (0, "")


@pytest.mark.slow
def test_checkov_reports_no_failed_check(linters: dict[str, Any]) -> None:
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in linters["checkov"]["failed"]
    ]
    assert failed == []


@pytest.mark.slow
def test_checkov_scanned_every_monitoring_option(linters: dict[str, Any]) -> None:
    scanned = {
        c["resource"].split(".", 1)[1]
        for kind in ("passed", "skipped")
        for c in linters["checkov"][kind]
    }
    for name in (
        "NodeAssetsBucket",
        "MonitoringInstance",
        "MonitoringInstanceRole",
        "MonitoringLoadBalancer",
        "HttpsListener",
        "HttpRedirectListener",
        "HttpListener",
        "AmpRemoteWritePolicy",
        "AmpQueryPolicy",
        "AmgWorkspaceRole",
        "ComputeSecurityGroup",
    ):
        assert name in scanned, f"checkov never evaluated {name}: a variant no longer reaches it"


@pytest.mark.slow
def test_checkov_suppressions_are_used_and_explained(linters: dict[str, Any]) -> None:
    declared = {
        (name, skip["id"]): skip.get("comment", "")
        for name, res in RESOURCES.items()
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", [])
    }
    assert declared, "expected the documented suppressions"
    for (name, check), comment in declared.items():
        assert len(comment) > 30, f"{name} skips {check} without a reason"
    used = {(c["resource"].split(".", 1)[1], c["check_id"]) for c in linters["checkov"]["skipped"]}
    assert used == set(declared), "a suppression no longer matches a check, or one is undeclared"
    assert set(declared) == {
        ("NodeAssetsBucket", "CKV_AWS_18"),
        ("MonitoringLoadBalancer", "CKV_AWS_91"),
        ("HttpListener", "CKV_AWS_2"),
        ("HttpListener", "CKV_AWS_103"),
    }


def test_cfn_lint_is_not_silenced() -> None:
    metadata = [TEMPLATE.get("Metadata", {})] + [r.get("Metadata", {}) for r in RESOURCES.values()]
    assert not [m for m in metadata if "cfn-lint" in m]


# --------------------------------------------------------------------------- contract


@pytest.mark.parametrize("name", sorted(CONTRACT_PARAMETERS))
def test_contract_parameter(name: str) -> None:
    kind, default, allowed = CONTRACT_PARAMETERS[name]
    spec = PARAMS[name]
    assert spec["Type"] == kind
    if default is REQUIRED:
        assert "Default" not in spec
    else:
        assert str(spec["Default"]) == str(default)
    if allowed is not None:
        assert [str(v) for v in spec["AllowedValues"]] == allowed
    assert spec.get("Description")


def test_parameters_are_the_contract_plus_documented_additions() -> None:
    assert set(PARAMS) == set(CONTRACT_PARAMETERS) | ADDED_PARAMETERS
    for name in ADDED_PARAMETERS:
        assert "Default" in PARAMS[name], f"{name} must not be required: the module may omit it"


def test_interface_groups_list_every_parameter_once() -> None:
    groups = TEMPLATE["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    listed = [p for g in groups for p in g["Parameters"]]
    assert sorted(listed) == sorted(PARAMS)


def test_contract_outputs_and_their_conditions() -> None:
    assert set(OUTPUTS) == UNCONDITIONAL_OUTPUTS | set(CONDITIONAL_OUTPUTS)
    for key in UNCONDITIONAL_OUTPUTS:
        assert "Condition" not in OUTPUTS[key], key
    for key, condition in CONDITIONAL_OUTPUTS.items():
        assert OUTPUTS[key].get("Condition") == condition, key
    for key, out in OUTPUTS.items():
        assert out.get("Description"), key


def _guarded_refs(expr: Any, guards: frozenset[str]) -> Iterator[tuple[str, frozenset[str]]]:
    """Yields (resource, conditions known true) for every resource reference in an expression."""
    if isinstance(expr, list):
        for item in expr:
            yield from _guarded_refs(item, guards)
    elif isinstance(expr, dict):
        if "Fn::If" in expr:
            cond, yes, no = expr["Fn::If"]
            yield from _guarded_refs(yes, guards | {cond})
            yield from _guarded_refs(no, guards)
            return
        if "Ref" in expr and expr["Ref"] in RESOURCES:
            yield expr["Ref"], guards
        if "Fn::GetAtt" in expr:
            yield expr["Fn::GetAtt"][0], guards
        if "Fn::Sub" in expr:
            args = expr["Fn::Sub"]
            text = args if isinstance(args, str) else args[0]
            for name in re.findall(r"\$\{([A-Za-z0-9]+)[.}]", text):
                if name in RESOURCES:
                    yield name, guards
            if not isinstance(args, str):
                yield from _guarded_refs(args[1], guards)
            return
        for value in expr.values():
            yield from _guarded_refs(value, guards)


def _scenarios() -> Iterator[Eval]:
    """Every combination of the parameters the Conditions read."""
    cidr_for = {m: "198.51.100.0/24" if m == "self-hosting" else "" for m in MONITORING_TYPES}
    for az in ("", "us-east-1b"):
        for nat in ("single", "per-az"):
            for fsx_id in ("", "fs-0123456789abcdef0"):
                for create in ("true", "false"):
                    for mon in MONITORING_TYPES:
                        for cert in ("", CERT):
                            for cidr in ("", "10.1.0.0/16"):
                                yield Eval(
                                    **BASE_PARAMS,
                                    SecondaryAz=az,
                                    NatGateways=nat,
                                    ExistingFsxId=fsx_id,
                                    CreateFsx=create,
                                    MonitoringType=mon,
                                    CertificateArn=cert,
                                    SecondaryCidr=cidr,
                                    MonitoringAllowedCidr=cidr_for[mon],
                                )


SCENARIOS = list(_scenarios())


def test_outputs_name_conditional_resources_only_where_those_exist() -> None:
    for key, out in OUTPUTS.items():
        base = frozenset({out["Condition"]}) if "Condition" in out else frozenset()
        for resource, guards in _guarded_refs(out["Value"], base):
            condition = RESOURCES[resource].get("Condition")
            if condition is None:
                continue
            assert all(
                e.condition(condition) for e in SCENARIOS if all(e.condition(g) for g in guards)
            ), f"output {key} names {resource} (condition {condition}) where it may not exist"


def test_emulator_configuration_avoids_what_moto_cannot_deploy() -> None:
    e = Eval(**EMULATOR_PARAMS)
    created = {RESOURCES[n]["Type"] for n in RESOURCES if e.created(n)}
    assert not created & EMULATOR_GAPS
    outputs = e.outputs()
    assert set(outputs) == UNCONDITIONAL_OUTPUTS | {"FsxFileSystemId"}
    assert outputs["FsxFileSystemId"] == "fs-0123456789abcdef0"
    assert e.rule_failures() == []
    # moto 5.2.1 reads the short !Condition tag as Fn::Condition and evaluates it as false.
    assert "!Condition" not in TEXT


# --------------------------------------------------------------------------- security groups


def test_no_ingress_from_the_world() -> None:
    sources = set()
    for rule in sg_rules():
        if rule["direction"] != "ingress":
            continue
        assert rule["rule"].get("CidrIp") not in ("0.0.0.0/0",), rule["where"]
        assert rule["rule"].get("CidrIpv6") is None, rule["where"]
        assert "SourcePrefixListId" not in rule["rule"], rule["where"]
        if rule["cidr"] is not None:
            sources.add(ref(rule["cidr"]))
        else:
            assert rule["peer"] in RESOURCES, f"{rule['where']} has no source"
    # Address-based ingress only from the two validated CIDR parameters.
    assert sources == {"SshAllowedCidr", "MonitoringAllowedCidr"}


def test_every_security_group_rule_has_a_description() -> None:
    allowed = re.compile(r"^[a-zA-Z0-9. _\-:/()#,@\[\]+=&;{}!$*]{1,255}$")
    longest = {**BASE_PARAMS, "ClusterName": "c" * 25}
    for rule in sg_rules():
        description = rule["rule"].get("Description")
        assert description, f"{rule['where']} has no Description"
        for text in {
            str(Eval(**longest, **SELF_HOSTING, CertificateArn=c).value(description))
            for c in ("", CERT)
        }:
            assert allowed.match(text), f"{rule['where']}: {text!r} breaks the EC2 character set"
    for name, group in resources_of("AWS::EC2::SecurityGroup").items():
        text = Eval(**longest).value(group["Properties"]["GroupDescription"])
        assert allowed.match(text), f"{name}: {text!r}"


def test_compute_group_allows_all_traffic_to_and_from_itself_for_efa() -> None:
    for direction in ("ingress", "egress"):
        matches = [
            r
            for r in sg_rules()
            if r["direction"] == direction
            and r["group"] == "ComputeSecurityGroup"
            and r["peer"] == "ComputeSecurityGroup"
            and str(r["rule"]["IpProtocol"]) == "-1"
            and r["condition"] is None
        ]
        assert len(matches) == 1, f"EFA needs an all-traffic self {direction} rule"


LUSTRE_PORTS = {("tcp", 988, 988), ("tcp", 1018, 1023)}
CLIENTS = ("HeadNodeSecurityGroup", "LoginNodeSecurityGroup", "ComputeSecurityGroup")


def test_fsx_group_admits_lustre_from_itself_and_every_client_and_nothing_else() -> None:
    rules = ingress_to("FsxSecurityGroup")
    got = {(r["peer"], ports(r["rule"])) for r in rules}
    expected = {(peer, p) for peer in ("FsxSecurityGroup", *CLIENTS) for p in LUSTRE_PORTS}
    assert got == expected
    assert all(r["condition"] is None for r in rules)


def test_clients_admit_lustre_from_the_file_system() -> None:
    for client in CLIENTS:
        got = {ports(r["rule"]) for r in ingress_to(client) if r["peer"] == "FsxSecurityGroup"}
        assert got == LUSTRE_PORTS, client


def _sources(group: str, port: int, proto: str = "tcp") -> set[str]:
    found = set()
    for r in ingress_to(group):
        p, low, high = ports(r["rule"])
        if (p == proto or p == "-1") and low <= port <= high:
            found.add(r["peer"] or ref(r["cidr"]))
    return found


def test_ssh_paths() -> None:
    # users from SshAllowedCidr, through the login pool's load balancer, which ParallelCluster
    # puts in the pool's security groups (health checks included)
    assert _sources("LoginNodeSecurityGroup", 22) == {"SshAllowedCidr", "LoginNodeSecurityGroup"}
    assert _sources("HeadNodeSecurityGroup", 22) == {"LoginNodeSecurityGroup"}
    assert _sources("ComputeSecurityGroup", 22) == {
        "LoginNodeSecurityGroup",
        "HeadNodeSecurityGroup",
        "ComputeSecurityGroup",  # the EFA all-traffic self rule
    }
    for group in ("FsxSecurityGroup", "MonitoringSecurityGroup", "AlbSecurityGroup"):
        assert _sources(group, 22) == set(), group


def test_slurm_and_nfs_reach_the_head_node_from_cluster_nodes_only() -> None:
    nodes = {"ComputeSecurityGroup", "LoginNodeSecurityGroup"}
    for port in (6817, 6818, 6819, 6820, 6829, 2049, 111):
        assert _sources("HeadNodeSecurityGroup", port) == nodes, port
    assert _sources("HeadNodeSecurityGroup", 111, "udp") == nodes
    assert _sources("HeadNodeSecurityGroup", 60001) == {"ComputeSecurityGroup"}
    assert _sources("LoginNodeSecurityGroup", 60001) == {"ComputeSecurityGroup"}
    assert _sources("LoginNodeSecurityGroup", 63000) == {"ComputeSecurityGroup"}
    assert _sources("ComputeSecurityGroup", 6818) == {
        "HeadNodeSecurityGroup",
        "LoginNodeSecurityGroup",
        "ComputeSecurityGroup",
    }


def test_exporters_and_prometheus_are_reachable_from_prometheus_only() -> None:
    prometheus = {"HeadNodeSecurityGroup", "MonitoringSecurityGroup"}
    for group in CLIENTS:
        for port in (9090, 9100, 9101, 9102, 9400):
            sources = _sources(group, port) - {group if group == "ComputeSecurityGroup" else ""}
            assert sources <= prometheus, (group, port, sources)
    assert _sources("ComputeSecurityGroup", 9400) >= prometheus
    assert _sources("ComputeSecurityGroup", 9101) >= prometheus
    assert _sources("LoginNodeSecurityGroup", 9100) == prometheus
    assert _sources("HeadNodeSecurityGroup", 9102) == {"MonitoringSecurityGroup"}
    assert _sources("HeadNodeSecurityGroup", 9090) == {"MonitoringSecurityGroup"}


def test_monitoring_path_is_alb_to_grafana_only() -> None:
    assert _sources("MonitoringSecurityGroup", 3000) == {"AlbSecurityGroup"}
    assert {r["peer"] for r in ingress_to("MonitoringSecurityGroup")} == {"AlbSecurityGroup"}
    alb = {ports(r["rule"]): ref(r["cidr"]) for r in ingress_to("AlbSecurityGroup")}
    assert alb == {
        ("tcp", 443, 443): "MonitoringAllowedCidr",
        ("tcp", 80, 80): "MonitoringAllowedCidr",
    }
    egress = [
        r for r in sg_rules() if r["direction"] == "egress" and r["group"] == "AlbSecurityGroup"
    ]
    assert [(r["peer"], ports(r["rule"])) for r in egress] == [
        ("MonitoringSecurityGroup", ("tcp", 3000, 3000))
    ]


def test_node_egress_leaves_the_vpc_only_for_http_and_https() -> None:
    for rule in sg_rules():
        if rule["direction"] == "egress" and rule["rule"].get("CidrIp") == "0.0.0.0/0":
            assert ports(rule["rule"]) in {("tcp", 443, 443), ("tcp", 80, 80)}, rule["where"]


# --------------------------------------------------------------------------- parameters and rules

IPV4 = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"


@pytest.mark.parametrize("name", ["SshAllowedCidr", "MonitoringAllowedCidr"])
def test_allowed_cidr_parameters_refuse_the_world(name: str) -> None:
    pattern = re.compile(PARAMS[name]["AllowedPattern"])
    for good in ("203.0.113.0/24", "10.0.0.0/8", "192.0.2.7/32"):
        assert pattern.fullmatch(good), good
    bad_values = (
        "0.0.0.0/0",
        "0.0.0.0/1",
        "128.0.0.0/1",
        "10.0.0.0/7",
        "10.0.0.0",
        "::/0",
        "1.2.3.4/33",
    )
    for bad in bad_values:
        assert not pattern.fullmatch(bad), bad
    assert bool(pattern.fullmatch("")) == (name == "MonitoringAllowedCidr")


def test_other_parameter_patterns() -> None:
    def ok(name: str, value: str) -> bool:
        return re.fullmatch(PARAMS[name]["AllowedPattern"], value) is not None

    assert ok("ClusterName", "a" * 25) and not ok("ClusterName", "a" * 26)
    assert not ok("ClusterName", "1abc") and not ok("ClusterName", "a_b")
    assert ok("VpcCidr", "10.0.0.0/16") and ok("VpcCidr", "172.31.0.0/16")
    assert not ok("VpcCidr", "10.0.0.0/20") and not ok("VpcCidr", "10.0.1.0/16")
    assert ok("SecondaryCidr", "") and ok("SecondaryCidr", "100.64.0.0/16")
    assert ok("ExistingFsxId", "fs-0123456789abcdef0") and ok("ExistingFsxId", "")
    assert not ok("ExistingFsxId", "fs-XYZ") and not ok("ExistingFsxId", "0123456789abcdef0")
    assert ok("SecondaryAz", "us-east-1b") and ok("SecondaryAz", "us-gov-west-1a")
    assert not ok("SecondaryAz", "us-east-1")
    assert ok("CertificateArn", CERT) and ok("CertificateArn", "")
    assert not ok("CertificateArn", "arn:aws:iam::111122223333:server-certificate/x")
    assert ok("S3EndpointExtraResources", "arn:aws:s3:::data,arn:aws:s3:::data/*")
    assert not ok("S3EndpointExtraResources", "*") and not ok("S3EndpointExtraResources", "data")


SH = "self-hosting"
BAD_COMBINATIONS = [
    (
        {"MonitoringType": SH, "MonitoringAllowedCidr": "198.51.100.0/24"},
        "SelfHostingNeedsSecondAz",
    ),
    ({"MonitoringType": SH, "SecondaryAz": "us-east-1b"}, "SelfHostingNeedsAllowedCidr"),
    ({"MonitoringAllowedCidr": "198.51.100.0/24"}, "AllowedCidrOnlyWithSelfHosting"),
    ({"MonitoringType": "amp-only", "CertificateArn": CERT}, "CertificateOnlyWithSelfHosting"),
    ({"SecondaryAz": "us-east-1a"}, "SecondaryAzDiffersFromPrimary"),
    ({"SecondaryCidr": "10.0.0.0/16"}, "SecondaryCidrDiffersFromPrimary"),
    ({"FsxThroughputPerTiB": "100"}, "FsxPersistent2Throughput"),
    ({"FsxDeploymentType": "PERSISTENT_1"}, "FsxPersistent1Throughput"),
    (
        {"FsxDeploymentType": "PERSISTENT_1", "FsxThroughputPerTiB": "125"},
        "FsxPersistent1Throughput",
    ),
    ({"FsxStorageCapacity": "3600"}, "FsxStorageCapacityStep"),
    ({"FsxStorageCapacity": "1000"}, "FsxStorageCapacityStep"),
    ({"FsxStorageCapacity": "242400"}, "FsxStorageCapacityStep"),
]


@pytest.mark.parametrize(("params", "rule"), BAD_COMBINATIONS)
def test_rules_reject_bad_combinations(params: dict[str, str], rule: str) -> None:
    assert Eval(**{**BASE_PARAMS, **params}).rule_failures() == [rule]


GOOD_COMBINATIONS = [
    {},
    EMULATOR_PARAMS,
    {**SELF_HOSTING},
    {**SELF_HOSTING, "CertificateArn": CERT},
    {"MonitoringType": "amp-only"},
    {"MonitoringType": "amp+amg", "AmgAuthenticationProvider": "SAML"},
    {"FsxDeploymentType": "PERSISTENT_1", "FsxThroughputPerTiB": "200", "FsxLustreVersion": "2.12"},
    {"FsxThroughputPerTiB": "1000", "FsxStorageCapacity": "2400"},
    {"FsxStorageCapacity": "240000"},
    # FSx settings are not checked when no file system is created.
    {"ExistingFsxId": "fs-0123456789abcdef0", "FsxThroughputPerTiB": "50"},
    {"CreateFsx": "false", "FsxStorageCapacity": "3600"},
    {"SecondaryAz": "us-east-1b", "NatGateways": "per-az", "SecondaryCidr": ""},
]


@pytest.mark.parametrize("params", GOOD_COMBINATIONS)
def test_rules_accept_good_combinations(params: dict[str, str]) -> None:
    assert Eval(**{**BASE_PARAMS, **params}).rule_failures() == []


def test_rules_have_descriptions() -> None:
    for name, rule in RULES.items():
        for assertion in rule["Assertions"]:
            assert len(assertion.get("AssertDescription", "")) > 20, name


# --------------------------------------------------------------------------- network layout


def _subnets(e: Eval) -> dict[str, ipaddress.IPv4Network]:
    return {
        name: ipaddress.ip_network(e.value(res["Properties"]["CidrBlock"]))
        for name, res in resources_of("AWS::EC2::Subnet").items()
        if e.created(name)
    }


@pytest.mark.parametrize("vpc", ["10.0.0.0/16", "172.20.0.0/16"])
@pytest.mark.parametrize("secondary", ["10.1.0.0/16", "100.64.0.0/16", ""])
@pytest.mark.parametrize("second_az", ["", "us-east-1b"])
def test_subnet_layout(vpc: str, secondary: str, second_az: str) -> None:
    e = Eval(**BASE_PARAMS, VpcCidr=vpc, SecondaryCidr=secondary, SecondaryAz=second_az)
    subnets = _subnets(e)
    primary = ipaddress.ip_network(vpc)
    public = list(primary.subnets(new_prefix=24))[:2]  # what Fn::Cidr [vpc, 2, 8] gives
    if secondary:
        private = list(ipaddress.ip_network(secondary).subnets(new_prefix=17))
    else:
        private = list(primary.subnets(new_prefix=18))[2:]
    count = 2 if second_az else 1
    assert [subnets.get(f"PublicSubnet{i + 1}") for i in range(count)] == public[:count]
    assert [subnets.get(f"PrivateSubnet{i + 1}") for i in range(count)] == private[:count]
    assert len(subnets) == 2 * count
    nets = list(subnets.values())
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    azs = {n: e.value(RESOURCES[n]["Properties"]["AvailabilityZone"]) for n in subnets}
    assert azs["PublicSubnet1"] == azs["PrivateSubnet1"] == "us-east-1a"
    if second_az:
        assert azs["PublicSubnet2"] == azs["PrivateSubnet2"] == "us-east-1b"
    for name in subnets:
        assert RESOURCES[name]["Properties"]["MapPublicIpOnLaunch"] is False


def test_private_subnets_wait_for_the_secondary_cidr() -> None:
    for name in ("PrivateSubnet1", "PrivateSubnet2"):
        cidr = RESOURCES[name]["Properties"]["CidrBlock"]
        refs = {r for r, _ in _guarded_refs(cidr, frozenset())}
        assert "SecondaryCidrBlock" in refs, name


@pytest.mark.parametrize(
    ("second_az", "nat", "gateways", "route2"),
    [
        ("", "single", 1, None),
        ("", "per-az", 1, None),
        ("us-east-1b", "single", 1, "<NatGateway1>"),
        ("us-east-1b", "per-az", 2, "<NatGateway2>"),
    ],
)
def test_nat_gateways(second_az: str, nat: str, gateways: int, route2: str | None) -> None:
    e = Eval(**BASE_PARAMS, SecondaryAz=second_az, NatGateways=nat)
    assert sum(e.created(n) for n in resources_of("AWS::EC2::NatGateway")) == gateways
    nat_of = {
        n: RESOURCES[n]["Properties"].get("NatGatewayId")
        for n in ("PrivateDefaultRoute1", "PrivateDefaultRoute2")
    }
    assert e.value(nat_of["PrivateDefaultRoute1"]) == "<NatGateway1>"
    assert e.created("PrivateDefaultRoute2") == bool(route2)
    if route2:
        assert e.value(nat_of["PrivateDefaultRoute2"]) == route2
    endpoint_tables = e.value(RESOURCES["S3GatewayEndpoint"]["Properties"]["RouteTableIds"])
    route_tables = [f"<{n}>" for n in resources_of("AWS::EC2::RouteTable") if e.created(n)]
    assert sorted(endpoint_tables) == sorted(route_tables)


# --------------------------------------------------------------------------- bucket and endpoint


def test_node_assets_bucket_is_private_encrypted_versioned_and_tls_only() -> None:
    props = RESOURCES["NodeAssetsBucket"]["Properties"]
    sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert "BucketName" not in props
    policy = resources_of("AWS::S3::BucketPolicy")
    assert [ref(p["Properties"]["Bucket"]) for p in policy.values()] == ["NodeAssetsBucket"]
    statements = next(iter(policy.values()))["Properties"]["PolicyDocument"]["Statement"]
    e = Eval(**BASE_PARAMS)
    tls = [
        s
        for s in statements
        if s["Effect"] == "Deny"
        and s["Action"] == "s3:*"
        and s["Principal"] == "*"
        and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert len(tls) == 1
    assert e.value(tls[0]["Resource"]) == ["<NodeAssetsBucket.Arn>", "<NodeAssetsBucket.Arn>/*"]


def _endpoint_statements(**params: str) -> list[dict[str, Any]]:
    doc = RESOURCES["S3GatewayEndpoint"]["Properties"]["PolicyDocument"]
    return Eval(**{**BASE_PARAMS, **params}).value(doc)["Statement"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_s3_endpoint_policy_names_its_buckets() -> None:
    statements = _endpoint_statements()
    resources = [r for s in statements for r in _as_list(s["Resource"])]
    for s in statements:
        assert s["Effect"] == "Allow" and s["Principal"] == "*"
        actions = _as_list(s["Action"])
        assert not any(a in ("*", "s3:*") for a in actions), s["Sid"]
        for resource in _as_list(s["Resource"]):
            assert resource != "*", s["Sid"]
            bucket = resource.removeprefix("arn:aws:s3:::").split("/", 1)[0]
            assert bucket and bucket != "*", f"{s['Sid']} opens every bucket: {resource}"
            if s["Sid"] == "CloudFormationSignals":
                # the pre-signed URLs of wait conditions and custom resources: writes only
                assert actions == ["s3:PutObject"]
                assert bucket.startswith("cloudformation-"), resource
            elif "s3:PutObject" in actions and not resource.startswith("<NodeAssetsBucket"):
                # beyond our bucket, writes go only to ParallelCluster's bucket in this account
                assert "parallelcluster-*-v1-do-not-delete" in resource, resource
                assert s["Condition"] == {"StringEquals": {"aws:ResourceAccount": "111122223333"}}
    assert "<NodeAssetsBucket.Arn>/*" in resources
    assert "arn:aws:s3:::us-east-1-aws-parallelcluster/*" in resources
    assert "arn:aws:s3:::parallelcluster-*-v1-do-not-delete/*" in resources
    # the head node signals its wait condition through a pre-signed URL on this bucket; without it
    # the cluster's creation hangs until the wait condition times out
    assert "arn:aws:s3:::cloudformation-waitcondition-us-east-1/*" in resources
    assert not [s for s in statements if s["Sid"] == "ExtraResources"]


def test_s3_endpoint_extra_resources() -> None:
    extra = "arn:aws:s3:::training-data,arn:aws:s3:::training-data/*"
    statements = _endpoint_statements(S3EndpointExtraResources=extra)
    (added,) = [s for s in statements if s["Sid"] == "ExtraResources"]
    assert added["Resource"] == extra.split(",")


# --------------------------------------------------------------------------- monitoring


def test_monitoring_instance_is_private_imdsv2_and_encrypted() -> None:
    props = RESOURCES["MonitoringInstance"]["Properties"]
    assert props["MetadataOptions"]["HttpTokens"] == "required"
    assert props["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
    devices = props["BlockDeviceMappings"]
    assert devices and all(d["Ebs"]["Encrypted"] is True for d in devices)
    assert ref(props["SubnetId"]) == "PrivateSubnet1"
    assert "NetworkInterfaces" not in props and "UserData" not in props and "KeyName" not in props
    assert [ref(g) for g in props["SecurityGroupIds"]] == ["MonitoringSecurityGroup"]


def test_monitoring_instance_role_is_read_only() -> None:
    props = RESOURCES["MonitoringInstanceRole"]["Properties"]
    for policy in props["Policies"]:
        for s in policy["PolicyDocument"]["Statement"]:
            actions = _as_list(s["Action"])
            if s["Resource"] == "*":
                assert all(a.startswith("ec2:Describe") for a in actions), actions
            assert all(a.split(":")[1].startswith(("Describe", "Get", "List")) for a in actions)
    managed = [Eval(**BASE_PARAMS).value(m) for m in props["ManagedPolicyArns"]]
    assert managed == ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]


def test_load_balancer_listeners() -> None:
    alb = RESOURCES["MonitoringLoadBalancer"]["Properties"]
    assert alb["Scheme"] == "internet-facing"
    assert [ref(s) for s in alb["Subnets"]] == ["PublicSubnet1", "PublicSubnet2"]
    https = Eval(**BASE_PARAMS, **SELF_HOSTING, CertificateArn=CERT)
    http = Eval(**BASE_PARAMS, **SELF_HOSTING)
    listeners = resources_of("AWS::ElasticLoadBalancingV2::Listener")
    on_https = {n: listeners[n]["Properties"] for n in listeners if https.created(n)}
    on_http = {n: listeners[n]["Properties"] for n in listeners if http.created(n)}
    assert {(p["Protocol"], p["Port"]) for p in on_https.values()} == {("HTTPS", 443), ("HTTP", 80)}
    for p in on_https.values():
        if p["Protocol"] == "HTTP":
            (action,) = p["DefaultActions"]
            assert action["Type"] == "redirect"
            assert action["RedirectConfig"]["Protocol"] == "HTTPS"
        else:
            assert p["SslPolicy"].startswith("ELBSecurityPolicy-TLS13-")
    assert {(p["Protocol"], p["Port"]) for p in on_http.values()} == {("HTTP", 80)}
    assert not [n for n in listeners if Eval(**BASE_PARAMS).created(n)]
    assert (
        Eval(**BASE_PARAMS, **SELF_HOSTING)
        .value(OUTPUTS["MonitoringUrl"]["Value"])
        .startswith("http://")
    )
    assert https.value(OUTPUTS["MonitoringUrl"]["Value"]).startswith("https://")
    target = RESOURCES["GrafanaTargetGroup"]["Properties"]
    assert (target["Port"], target["HealthCheckPath"]) == (3000, "/api/health")


def test_amp_policies_are_scoped_to_the_workspace() -> None:
    write = RESOURCES["AmpRemoteWritePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    query = RESOURCES["AmpQueryPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert [(s["Action"], s["Resource"]) for s in write] == [
        ("aps:RemoteWrite", {"Fn::GetAtt": ["AmpWorkspace", "Arn"]})
    ]
    (q,) = query
    assert sorted(q["Action"]) == [
        "aps:GetLabels",
        "aps:GetMetricMetadata",
        "aps:GetSeries",
        "aps:QueryMetrics",
    ]
    assert q["Resource"] == {"Fn::GetAtt": ["AmpWorkspace", "Arn"]}
    for name in ("AmpWorkspace", "AmpRemoteWritePolicy", "AmpQueryPolicy"):
        assert RESOURCES[name]["Condition"] == "HasAmp"
    with_amp = {
        m
        for m in CONTRACT_PARAMETERS["MonitoringType"][2] or []
        if Eval(**BASE_PARAMS, MonitoringType=m).condition("HasAmp")
    }
    assert with_amp == {"amp-only", "amp+amg"}


def test_amg_workspace_and_role() -> None:
    ws = RESOURCES["AmgWorkspace"]
    assert ws["Condition"] == "HasAmg"
    props = ws["Properties"]
    assert props["AccountAccessType"] == "CURRENT_ACCOUNT"
    assert props["AuthenticationProviders"] == [{"Ref": "AmgAuthenticationProvider"}]
    assert props["PermissionType"] == "CUSTOMER_MANAGED"
    assert props["RoleArn"] == {"Fn::GetAtt": ["AmgWorkspaceRole", "Arn"]}
    role = RESOURCES["AmgWorkspaceRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "grafana.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert role["ManagedPolicyArns"] == [{"Ref": "AmpQueryPolicy"}]


def test_no_lambda_no_api_keys_no_secrets() -> None:
    kinds = {r["Type"] for r in RESOURCES.values()}
    code = ("AWS::Lambda::", "AWS::Serverless::", "Custom::")
    assert not [k for k in kinds if k.startswith(code)]
    assert not [k for k in kinds if "ApiKey" in k or k.startswith("AWS::SecretsManager::")]
    assert not [p for p in PARAMS.values() if p.get("NoEcho")]


def test_template_holds_no_account_or_resource_ids() -> None:
    assert not re.search(r"(?<![\d\[{])\d{12}(?![\d\]}])", TEXT)
    assert not re.search(r"\b(ami|vpc|subnet|sg|i|vol|eni|rtb|igw|nat)-[0-9a-f]{8,17}\b", TEXT)


# --------------------------------------------------------------------------- names and tags

LONGEST_CLUSTER_NAME = "a" * 25

# Resources whose names CloudFormation generates (it keeps them within each service's limit for
# any stack name): the template must not set them.
GENERATED_NAMES = {
    "AWS::ElasticLoadBalancingV2::LoadBalancer": "Name",
    "AWS::ElasticLoadBalancingV2::TargetGroup": "Name",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::IAM::InstanceProfile": "InstanceProfileName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::EC2::SecurityGroup": "GroupName",
}


def test_longest_cluster_name_is_what_the_pattern_allows() -> None:
    pattern = PARAMS["ClusterName"]["AllowedPattern"]
    assert re.fullmatch(pattern, LONGEST_CLUSTER_NAME)
    assert not re.fullmatch(pattern, LONGEST_CLUSTER_NAME + "a")


def test_names_fit_aws_limits_for_the_longest_cluster_name() -> None:
    e = Eval(**{**BASE_PARAMS, "ClusterName": LONGEST_CLUSTER_NAME})
    for name, res in RESOURCES.items():
        prop = GENERATED_NAMES.get(res["Type"])
        if prop:
            assert prop not in res.get("Properties", {}), f"{name} sets {prop}: let CFN name it"
    alias = e.value(RESOURCES["AmpWorkspace"]["Properties"]["Alias"])
    assert 1 <= len(alias) <= 100
    grafana = e.value(RESOURCES["AmgWorkspace"]["Properties"]["Name"])
    assert re.fullmatch(r"[a-zA-Z0-9\-._~]{1,255}", grafana)
    assert len(e.value(RESOURCES["AmgWorkspace"]["Properties"]["Description"])) <= 2048
    for name, res in RESOURCES.items():
        for tag in res.get("Properties", {}).get("Tags", []):
            assert len(tag["Key"]) <= 128 and len(e.value(tag["Value"])) <= 256, name
        description = res.get("Properties", {}).get("Description")
        if res["Type"] == "AWS::IAM::Role":
            assert len(e.value(description)) <= 1000, name
        if res["Type"] == "AWS::IAM::ManagedPolicy":
            assert len(e.value(description)) <= 1000, name
        if res["Type"] == "AWS::EC2::SecurityGroup":
            assert len(e.value(res["Properties"]["GroupDescription"])) <= 255, name


def test_taggable_resources_carry_the_cluster_tag_and_a_name() -> None:
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    checked = 0
    for name, res in RESOURCES.items():
        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", res["Type"]).schema
        if "Tags" not in schema.get("properties", {}):
            continue
        tags = {t["Key"]: t["Value"] for t in res["Properties"].get("Tags", [])}
        assert tags.get("parallelcluster-infra:cluster-name") == {"Ref": "ClusterName"}, name
        assert "Name" in tags, name
        checked += 1
    assert checked >= 25


def test_a_replaced_file_system_keeps_its_data() -> None:
    fsx = RESOURCES["FsxFileSystem"]
    assert fsx["UpdateReplacePolicy"] == "Retain"
    assert fsx["DeletionPolicy"] == "Delete"  # deleting the stack is deliberate
