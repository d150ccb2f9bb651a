"""The collection's metadata and its built artifact."""

from __future__ import annotations

import re
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"


def load(path: str) -> dict:
    return yaml.safe_load((ROOT / path).read_text())


def test_galaxy_metadata() -> None:
    galaxy = load("galaxy.yml")
    assert (galaxy["namespace"], galaxy["name"], galaxy["version"]) == (
        "xpu",
        "parallelcluster",
        "0.1.0",
    )
    assert galaxy["license"] == ["Apache-2.0"]
    assert {"amazon.aws", "containers.podman"} <= set(galaxy["dependencies"])


# Collections whose content a user's run could call, outside this one and ansible.builtin.
FQCN = re.compile(
    r"(?<![\w.])((?:amazon|community|containers|ansible)\.(?!builtin\b|legacy\b)\w+)\.\w+"
)
SHIPPED_DIRS = ("roles", "playbooks", "plugins", "inventories", "meta")
# ansible-core's own Python packages, imported by the plugins (not collections)
CORE_PACKAGES = {"ansible.module_utils", "ansible.plugins", "ansible.errors", "ansible.parsing"}


def test_dependencies_are_exactly_the_collections_the_content_uses() -> None:
    used: dict[str, str] = {}
    for top in SHIPPED_DIRS:
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix in (".yml", ".yaml", ".py", ".j2") and path.is_file():
                lines = path.read_text(errors="replace").splitlines()
                code = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
                for match in FQCN.finditer(code):
                    if match.group(1) not in CORE_PACKAGES:
                        used.setdefault(match.group(1), str(path.relative_to(ROOT)))
    declared = set(load("galaxy.yml")["dependencies"])
    undeclared = {name: where for name, where in used.items() if name not in declared}
    assert not undeclared, f"used but not in galaxy.yml dependencies: {undeclared}"
    assert declared <= set(used), f"declared but unused: {declared - set(used)}"


def test_galaxy_and_requirements_yml_pin_the_same_ranges() -> None:
    galaxy = load("galaxy.yml")["dependencies"]
    requirements = {c["name"]: c["version"] for c in load("requirements.yml")["collections"]}
    assert requirements == galaxy


def test_runtime_extends_the_amazon_aws_action_group() -> None:
    runtime = load("meta/runtime.yml")
    assert runtime["requires_ansible"].startswith(">=2.")
    group = runtime["action_groups"]["aws"]
    assert {"metadata": {"extend_group": ["amazon.aws.aws"]}} in group


def test_site_imports_only_playbooks_that_exist() -> None:
    site = load("playbooks/site.yml")
    imported = [play["ansible.builtin.import_playbook"] for play in site]
    assert imported, "site.yml imports no stage"
    for name in imported:
        assert (ROOT / "playbooks" / name).is_file(), f"site.yml imports missing {name}"


def test_build_produces_an_artifact_without_local_state(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            str(BIN / "ansible-galaxy"),
            "collection",
            "build",
            "--output-path",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    artifact = tmp_path / "xpu-parallelcluster-0.1.0.tar.gz"
    with tarfile.open(artifact) as tar:
        names = tar.getnames()
    assert "MANIFEST.json" in names and "meta/runtime.yml" in names
    assert "playbooks/site.yml" in names and "scripts/lab.sh" in names
    for private in (".venv", ".cache", ".lab", ".git"):
        assert not any(n == private or n.startswith(private + "/") for n in names), private


def test_demo_runs_the_site_stages_in_site_order() -> None:
    """The demo may add lab-only plays (playbooks/lab/...) but runs every site stage, in order."""
    site = [p["ansible.builtin.import_playbook"] for p in load("playbooks/site.yml")]
    demo = [
        p["ansible.builtin.import_playbook"].removeprefix("../")
        for p in load("playbooks/lab/demo.yml")
        if "ansible.builtin.import_playbook" in p
        and p["ansible.builtin.import_playbook"].startswith("../")
    ]
    assert demo == site


def _pins(path: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, _, version = line.partition("==")
            assert version, f"{path}: {line!r} is not pinned with =="
            pins[re.sub(r"\[.*\]", "", name).lower().replace("_", "-")] = version
    return pins


@pytest.mark.parametrize(
    ("requirements", "constraints"),
    [
        (("requirements.txt", "requirements-dev.txt"), "constraints.txt"),
        (("requirements-checkov.txt",), "constraints-checkov.txt"),
    ],
)
def test_constraints_hold_every_requirement_at_its_pin(
    requirements: tuple[str, ...], constraints: str
) -> None:
    held = _pins(constraints)
    for path in requirements:
        for name, version in _pins(path).items():
            assert held.get(name) == version, (
                f"{path} pins {name}=={version}; {constraints}: {held.get(name)}"
            )
