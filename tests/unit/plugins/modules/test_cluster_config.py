"""The cluster_config module: writes dest only when the YAML changes, check mode, diff, failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.xpu.parallelcluster.plugins.module_utils import cluster_render
from ansible_collections.xpu.parallelcluster.plugins.modules import cluster_config

from .conftest import ansible_doc

ROOT = Path(__file__).resolve().parents[4]
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "cluster_config"
INFRA = json.loads((FIXTURES / "infra_outputs.json").read_text())
PRESET = yaml.safe_load((ROOT / "playbooks/vars/cluster_presets/p5.yml").read_text())[
    "cluster_spec"
]


@pytest.fixture
def run(run_module):
    """cluster_config's main() with ``args`` over the p5 preset and the infra outputs fixture."""

    def run_cluster_config(check: bool = False, diff: bool = False, **args: Any) -> dict[str, Any]:
        args.setdefault("spec", PRESET)
        args.setdefault("infra_outputs", INFRA)
        return run_module(cluster_config.main, args, check=check, diff=diff)

    return run_cluster_config


def test_renders_without_dest_and_changes_nothing(run) -> None:
    result = run()
    assert result["changed"] is False and "failed" not in result
    assert result["config"]["Region"] == "us-east-1"
    assert result["config_yaml"] == (FIXTURES / "p5.yaml").read_text()
    assert result["summary"]["compute"][0]["instance_type"] == "p5.48xlarge"
    assert result["summary"]["prices_date"] == "2025-07-01"
    assert result["bootstrap_timeouts"]["head_node"]["seconds"] >= 600
    assert any("placement_group: true" in n for n in result["notes"])
    assert "dest" not in result


def test_writes_dest_only_when_the_content_changes(run, tmp_path: Path) -> None:
    dest = tmp_path / "cluster.yaml"
    first = run(dest=str(dest))
    assert first["changed"] is True and first["dest"] == str(dest)
    assert dest.read_text() == first["config_yaml"]
    assert oct(dest.stat().st_mode & 0o777) == "0o644"
    stamp = dest.stat().st_mtime_ns
    again = run(dest=str(dest))
    assert again["changed"] is False
    assert dest.stat().st_mtime_ns == stamp
    bigger = dict(
        PRESET,
        queues=[
            dict(
                PRESET["queues"][0],
                compute_resources=[dict(PRESET["queues"][0]["compute_resources"][0], max_count=8)],
            )
        ],
    )
    changed = run(dest=str(dest), spec=bigger)
    assert changed["changed"] is True
    assert "MaxCount: 8" in dest.read_text()


def test_check_mode_predicts_without_writing(run, tmp_path: Path) -> None:
    dest = tmp_path / "cluster.yaml"
    result = run(dest=str(dest), check=True)
    assert result["changed"] is True
    assert not dest.exists()
    dest.write_text(result["config_yaml"])
    assert run(dest=str(dest), check=True)["changed"] is False


def test_diff_shows_the_yaml_difference(run, tmp_path: Path) -> None:
    dest = tmp_path / "cluster.yaml"
    old = run(dest=str(dest))["config_yaml"]
    spec = dict(PRESET, slurm={"scaledown_idletime": 30})
    result = run(dest=str(dest), spec=spec, diff=True, check=True)
    assert result["changed"] is True
    diff = result["diff"]
    assert diff["before"] == old and diff["after"] == result["config_yaml"]
    assert "ScaledownIdletime: 15" in diff["before"] and "ScaledownIdletime: 30" in diff["after"]
    assert diff["before_header"] == diff["after_header"] == str(dest)
    assert dest.read_text() == old  # check mode: untouched


def test_diff_of_a_new_file(run, tmp_path: Path) -> None:
    dest = tmp_path / "new.yaml"
    diff = run(dest=str(dest), diff=True)["diff"]
    assert diff["before"] == "" and diff["before_header"].endswith("(absent)")


def test_a_bad_spec_fails_with_every_problem_named(run) -> None:
    spec = json.loads(json.dumps(PRESET))
    spec["queues"][0]["compute_resources"][0]["instance_type"] = "p5.48xlarg"
    spec["head_node"]["allowed_ssh_cidr"] = "0.0.0.0/0"
    result = run(spec=spec)
    assert result["failed"] is True
    assert (
        "queues[0].compute_resources[0].instance_type: unknown instance type 'p5.48xlarg'; "
        "did you mean 'p5.48xlarge'?"
    ) in result["spec_errors"]
    assert any(e.startswith("head_node.allowed_ssh_cidr:") for e in result["spec_errors"])
    assert "2 problems" in result["msg"]


def test_missing_infra_outputs_fail_with_the_field(run) -> None:
    result = run(infra_outputs={})
    assert result["failed"] is True
    assert any(e.startswith("head_node.subnet_id:") for e in result["spec_errors"])


def test_ansible_type_checks_come_first(run) -> None:
    spec = json.loads(json.dumps(PRESET))
    spec["queues"][0]["capacity_type"] = "SPOTT"
    result = run(spec=spec)
    assert result["failed"] is True and "capacity_type" in result["msg"]


def test_schema_errors_fail_with_the_config_path(run, monkeypatch: pytest.MonkeyPatch) -> None:
    real_render = cluster_render.render

    def broken(*args: Any, **kwargs: Any) -> cluster_render.Rendered:
        rendered = real_render(*args, **kwargs)
        rendered.config["HeadNode"]["Ssh"]["AllowedIps"] = "everyone"
        return rendered

    monkeypatch.setattr(cluster_config, "render", broken)
    result = run()
    assert result["failed"] is True
    assert any(e.startswith("HeadNode.Ssh.AllowedIps:") for e in result["schema_errors"])


def test_validate_false_skips_the_schema(run, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("validate_offline ran")

    monkeypatch.setattr(cluster_config, "validate_offline", must_not_run)
    assert "failed" not in run(validate=False)


def test_missing_parallelcluster_fails_with_the_install_hint(
    run, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(*args: Any, **kwargs: Any) -> None:
        raise cluster_render.PclusterMissingError(
            f"aws-parallelcluster is not importable; {cluster_render.PCLUSTER_PIP_HINT}"
        )

    monkeypatch.setattr(cluster_config, "validate_offline", missing)
    result = run()
    assert result["failed"] is True
    assert "pip install aws-parallelcluster==3.16.1" in result["msg"]


def test_a_missing_dest_directory_fails_clearly(run, tmp_path: Path) -> None:
    result = run(dest=str(tmp_path / "nope" / "cluster.yaml"))
    assert result["failed"] is True and "does not exist" in result["msg"]


def test_render_warnings_are_returned_and_emitted(run, warnings: list[str]) -> None:
    result = run(spec=dict(PRESET, region="eu-west-1"))
    assert any("us-east-1 on-demand list prices" in w for w in result["render_warnings"])
    assert warnings == result["render_warnings"]


# ---------------------------------------------------------------------------------------------
# The documentation is the contract: DOCUMENTATION and argument_spec agree, ansible-doc renders.
# ---------------------------------------------------------------------------------------------


def _compare(doc: dict[str, Any], spec: dict[str, Any], path: str) -> list[str]:
    problems = []
    if set(doc) != set(spec):
        problems.append(f"{path}: documented {sorted(set(doc) ^ set(spec))} differ from the code")
    for name in set(doc) & set(spec):
        d, s = doc[name], spec[name]
        where = f"{path}.{name}" if path else name
        for key in ("type", "elements", "choices"):
            if d.get(key) != s.get(key):
                problems.append(f"{where}: {key} {d.get(key)!r} documented, {s.get(key)!r} in code")
        if bool(d.get("required")) != bool(s.get("required")):
            problems.append(f"{where}: required differs")
        doc_default = d.get("default")
        code_default = s.get("default")
        if s.get("apply_defaults") and code_default is None:
            code_default = {}
        if doc_default != code_default:
            problems.append(
                f"{where}: default {doc_default!r} documented, {code_default!r} in code"
            )
        if not d.get("description"):
            problems.append(f"{where}: no description")
        if "options" in s or "suboptions" in d:
            problems += _compare(d.get("suboptions", {}), s.get("options", {}), where)
    return problems


def test_documentation_matches_the_argument_spec() -> None:
    doc = yaml.safe_load(cluster_config.DOCUMENTATION)["options"]
    assert _compare(doc, cluster_config.argument_spec(), "") == []


def test_examples_and_return_parse() -> None:
    examples = yaml.safe_load(cluster_config.EXAMPLES)
    assert all(
        "xpu.parallelcluster.cluster_config" in task or "ansible.builtin.debug" in task
        for task in examples
    )
    returned = yaml.safe_load(cluster_config.RETURN)
    for key in ("config", "config_yaml", "summary", "render_warnings", "notes"):
        assert returned[key]["type"]


def test_ansible_doc_renders() -> None:
    proc = ansible_doc("cluster_config")
    assert proc.returncode == 0, proc.stderr
    assert "queues" in proc.stdout and "ERROR" not in proc.stderr
