"""The prometheus role's recording and alert rules, checked and unit-tested with promtool.

``rules/*_test.yml`` are promtool unit-test files (``promtool test rules``). Besides running them,
these tests make sure none of the role's rules escapes them: every alert needs a case where it
fires and one where it stays silent, every recording rule a query of its result. No Ansible here:
promtool takes well under a second.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
ROLE = ROOT / "roles" / "prometheus"
RULES = sorted((ROLE / "files" / "rules").glob("*.yml"))
TESTS = sorted((HERE / "rules").glob("*_test.yml"))
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
SEVERITIES = {"critical", "warning"}
# Labels an alert's text may use to name where the problem is.
WHERE = re.compile(r"\$labels\.(hostname|node|cluster|device|gpu|mountpoint)")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False
    )


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def rules(kind: str) -> dict[str, dict]:
    """Every rule of the role's files with a ``kind`` key (alert or record), by name."""
    found: dict[str, dict] = {}
    for path in RULES:
        for group in load(path)["groups"]:
            for rule in group["rules"]:
                if kind in rule:
                    assert rule[kind] not in found, f"{rule[kind]} defined twice"
                    found[rule[kind]] = {**rule, "file": path.name, "group": group["name"]}
    return found


def alert_cases() -> list[dict]:
    return [
        case
        for path in TESTS
        for test in load(path)["tests"]
        for case in test.get("alert_rule_test", [])
    ]


def test_promtool_is_installed() -> None:
    assert Path(PROMTOOL).is_file(), "promtool is missing: scripts/install-deps.sh installs it"


@pytest.mark.parametrize("path", RULES, ids=[p.name for p in RULES])
def test_rules_file_passes_promtool_check(path: Path) -> None:
    proc = promtool("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    count = sum(len(g["rules"]) for g in load(path)["groups"])
    assert f"SUCCESS: {count} rules found" in proc.stdout


@pytest.mark.parametrize("path", TESTS, ids=[p.name for p in TESTS])
def test_promtool_unit_tests_pass(path: Path) -> None:
    # Relative rule_files resolve against the test file's directory.
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_unit_tests_load_the_role_files() -> None:
    loaded = set()
    for path in TESTS:
        for name in load(path)["rule_files"]:
            target = (path.parent / name).resolve()
            assert target.parent == ROLE / "files" / "rules", (path.name, name)
            loaded.add(target)
    assert loaded == set(RULES)


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    firing = {c["alertname"] for c in alert_cases() if c.get("exp_alerts")}
    silent = {c["alertname"] for c in alert_cases() if not c.get("exp_alerts")}
    alerts = set(rules("alert"))
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - silent == set(), "alerts never tested silent"
    # A test of an alert that does not exist would pass for nothing.
    assert (firing | silent) - alerts == set()


def test_every_recording_rule_is_queried() -> None:
    queried = " ".join(
        case["expr"]
        for path in TESTS
        for test in load(path)["tests"]
        for case in test.get("promql_expr_test", [])
    )
    names = set(re.findall(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", queried))
    assert set(rules("record")) - names == set()


def test_expected_alerts_carry_the_severity_and_text_of_the_rule() -> None:
    alerts = rules("alert")
    for case in alert_cases():
        rule = alerts[case["alertname"]]
        for alert in case.get("exp_alerts", []):
            assert alert["exp_labels"]["severity"] == rule["labels"]["severity"]
            assert set(alert["exp_annotations"]) == {"summary", "description"}


@pytest.mark.parametrize("name", sorted(rules("alert")))
def test_alert_is_labelled_and_explained(name: str) -> None:
    rule = rules("alert")[name]
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description"}
    # Summary and description name the node, GPU, device, mount point or cluster.
    assert WHERE.search(annotations["summary"]), annotations["summary"]
    assert WHERE.search(annotations["description"]), annotations["description"]
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", name)


def test_role_lists_every_rules_file_and_group() -> None:
    """tasks/configure.yml installs __prometheus_rule_files; the verify step expects
    __prometheus_rule_groups to be loaded: both must match the files."""
    internal = load(ROLE / "vars" / "main.yml")
    assert sorted(internal["__prometheus_rule_files"]) == sorted(p.name for p in RULES)
    groups = [g["name"] for p in RULES for g in load(p)["groups"]]
    assert sorted(internal["__prometheus_rule_groups"]) == sorted(groups)
    assert len(set(groups)) == len(groups)


def test_a_broken_rule_fails_the_check(tmp_path: Path) -> None:
    """The check the role runs as `validate:` refuses a bad rule (so it would never go live)."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "groups:\n  - name: bad\n    rules:\n      - alert: Bad\n        expr: rate(up[5m]\n"
    )
    proc = promtool("check", "rules", str(bad))
    assert proc.returncode != 0
