"""The grafana role end to end on this machine (no Grafana server, no network, no AWS).

Each inventory host is one scenario with ``ansible_connection: local``: the role's node paths
(``__grafana_etc_dir``, ``__grafana_dashboards_dir``, ``__grafana_download_dir``) point at a tree
under tmp_path, service management is off (``__grafana_manage_service: false``: there is no
Grafana to start here) and installation is off (no package repository is reachable). One
ansible-playbook run covers every scenario; a second run proves idempotence, a check-mode run
proves check mode changes nothing. A second play runs the signing-key check (``tasks/gpg_key.yml``)
against key files that gpg generates under tmp_path.
"""

from __future__ import annotations

import configparser
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from .. import harness
from ..harness import local_inventory

# Runs ansible-playbook against the role: part of `make test`, not the fast `make check`.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[4]
ROLE = ROOT / "roles" / "grafana"
OVERVIEW = ROLE / "files" / "dashboards" / "overview.json"
EXPORTED = ROOT / "tests" / "unit" / "fixtures" / "grafana" / "exported-dashboard.json"
STRONG = "Vault-kept-password-0123456789"

# Hosts that must fail in preflight, and the words their failure must contain.
FAILING = {
    "vault_default": ["grafana_admin_password must be set", "well-known default"],
    "vault_empty": ["grafana_admin_password must be set"],
    "vault_short": ["at least 16 characters"],
    "secret_without_id": ["grafana_admin_password_secret_id must name"],
    "http_with_secure_cookie": ["plain HTTP", "grafana_cookie_secure"],
    "missing_dashboard": ["Missing:", "nope.json"],
    "amg_without_workspace": ["grafana_amg_workspace_id must be the workspace id"],
    "key_other_only": ["does not hold exactly the pinned usable signing key"],
    "key_extra_usable": ["does not hold exactly the pinned usable signing key"],
}
CONFIGURED = ["generated", "vault_sigv4"]
KEYS_OK = ["key_pinned", "key_with_expired"]


class Run(harness.Run):
    def message(self, result: dict) -> str:
        return " ".join(super().message(result).split())


class Lab(harness.Lab):
    run_class = Run


def gpg(home: Path, *args: str) -> str:
    proc = subprocess.run(
        ["gpg", "--batch", "--homedir", str(home), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return proc.stdout


def make_keys(tmp: Path) -> tuple[str, dict[str, Path]]:
    """A pinned key, another usable key and an expired one; key files combining them."""
    home = tmp / "gnupg"
    home.mkdir(mode=0o700)
    gpg(home, "--passphrase", "", "--quick-gen-key", "Pinned <p@example.invalid>", "ed25519")
    gpg(home, "--passphrase", "", "--quick-gen-key", "Other <o@example.invalid>", "ed25519")
    # Created in 2020, valid for one day: expired now.
    gpg(
        home,
        "--faked-system-time",
        "20200101T000000",
        "--passphrase",
        "",
        "--quick-gen-key",
        "Expired <e@example.invalid>",
        "ed25519",
        "sign",
        "1d",
    )
    primaries: list[str] = []
    after_pub = False
    for line in gpg(home, "--with-colons", "--list-keys").splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            after_pub = True
        elif fields[0] == "fpr" and after_pub:
            primaries.append(fields[9])
            after_pub = False
    pinned, other, expired = primaries
    files = {}
    for name, keys in {
        "key_pinned": [pinned],
        "key_with_expired": [pinned, expired],
        "key_other_only": [other],
        "key_extra_usable": [pinned, other],
    }.items():
        path = tmp / name / "cache" / "grafana-signing-key.asc"
        path.parent.mkdir(parents=True)
        path.write_text(gpg(home, "--armor", "--export", *keys))
        files[name] = path
    return pinned, files


def _inventory(tmp: Path) -> dict:
    def node(name: str, **role_vars) -> dict:
        base = tmp / name
        return {
            "__grafana_etc_dir": str(base / "etc/grafana"),
            "__grafana_dashboards_dir": str(base / "var/lib/grafana/dashboards/xpu"),
            "__grafana_download_dir": str(base / "cache"),
            "__grafana_group": "root",
            "grafana_admin_password_dir": str(tmp / "controller-state"),
            "grafana_dashboards": [str(OVERVIEW)],
            **role_vars,
        }

    vault = {"grafana_admin_password_source": "vault"}
    role_hosts = {
        "generated": node("generated"),
        "vault_sigv4": node(
            "vault_sigv4",
            **vault,
            grafana_admin_password=STRONG,
            grafana_public_url="https://monitoring.example.com/",
            grafana_sub_path="",
            grafana_prometheus_url="https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/",
            grafana_datasource_sigv4=True,
            grafana_aws_region="us-east-1",
            grafana_dashboards=[str(OVERVIEW), str(EXPORTED)],
        ),
        "vault_default": node("vault_default", **vault, grafana_admin_password="admin"),
        "vault_empty": node("vault_empty", **vault),
        "vault_short": node("vault_short", **vault, grafana_admin_password="Short-1234"),
        "secret_without_id": node(
            "secret_without_id", grafana_admin_password_source="secretsmanager"
        ),
        "http_with_secure_cookie": node(
            "http_with_secure_cookie", grafana_public_url="http://monitoring.example.com"
        ),
        "missing_dashboard": node(
            "missing_dashboard", grafana_dashboards=[str(OVERVIEW), str(tmp / "nope.json")]
        ),
        "amg_without_workspace": node(
            "amg_without_workspace", grafana_type="amg", grafana_amg_workspace_id=""
        ),
    }
    pinned, files = make_keys(tmp)
    key_hosts = {
        name: {
            "__grafana_download_dir": str(path.parent),
            "__grafana_key_download": str(path),
            "grafana_gpg_fingerprint": pinned,
        }
        for name, path in files.items()
    }
    return local_inventory(
        children={"role_hosts": {"hosts": role_hosts}, "key_hosts": {"hosts": key_hosts}},
        group_vars={"grafana_install": False, "__grafana_manage_service": False},
    )


PLAYBOOK = """\
- name: Role grafana on scratch trees
  hosts: role_hosts
  gather_facts: false
  roles:
    - role: xpu.parallelcluster.grafana

- name: Signing-key check of the grafana role
  hosts: key_hosts
  gather_facts: false
  tasks:
    - name: Check the key file
      ansible.builtin.include_role:
        name: xpu.parallelcluster.grafana
        tasks_from: gpg_key.yml
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    tmp = tmp_path_factory.mktemp("grafana")
    lab = Lab.create(tmp, _inventory(tmp), PLAYBOOK)
    # A dashboard left from an earlier list: the first run must remove it.
    stale = tmp / "generated" / "var/lib/grafana/dashboards/xpu/old.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    return lab


@pytest.fixture(scope="module")
def first(lab: Lab) -> Run:
    return lab.run()


@pytest.fixture(scope="module")
def second(lab: Lab, first: Run) -> Run:
    # The failing scenarios fail in preflight, as in the first run; only the others run again.
    return lab.run("--limit", ",".join(CONFIGURED + KEYS_OK))


@pytest.fixture(scope="module")
def check(lab: Lab, second: Run) -> Run:
    return lab.run("--check", "--diff", "--limit", ",".join(CONFIGURED))


def ini(lab: Lab, host: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string((lab.node(host) / "etc/grafana/grafana.ini").read_text())
    return parser


def test_every_scenario_ends_as_expected(first: Run) -> None:
    failed = {h for h, s in first.stats.items() if s["failures"]}
    assert failed == set(FAILING), {h: first.failure(h)[:300] for h in failed ^ set(FAILING)}
    for host, words in FAILING.items():
        message = first.failure(host)
        assert host in message or host.startswith("amg"), message
        assert all(w in message for w in words), (host, message)


@pytest.mark.parametrize("host", [h for h in FAILING if not h.startswith("key_")])
def test_preflight_failures_write_nothing(lab: Lab, first: Run, host: str) -> None:
    assert not (lab.node(host) / "etc").exists()
    assert first.stats[host]["changed"] == 0


def test_grafana_ini_serves_the_sub_path_with_a_generated_password(lab: Lab, first: Run) -> None:
    config = ini(lab, "generated")
    text = (lab.node("generated") / "etc/grafana/grafana.ini").read_text()
    assert text.startswith(";\n; Ansible managed")
    server = config["server"]
    assert server["http_port"] == "3000"
    assert server["root_url"] == "%(protocol)s://%(domain)s:%(http_port)s/grafana/"
    assert server["serve_from_sub_path"] == "true"
    security = config["security"]
    assert security["cookie_secure"] == "true" and security["disable_gravatar"] == "true"
    assert config["users"]["allow_sign_up"] == "false"
    assert config["auth.anonymous"]["enabled"] == "false"
    assert config["analytics"]["reporting_enabled"] == "false"
    # The password: the generated one, kept on the controller with mode 0600, never 'admin'.
    stored = lab.tmp / "controller-state" / "generated-admin-password"
    password = stored.read_text().strip()
    assert len(password) == 32 and password.isalnum()
    assert security["admin_password"] == f'"""{password}"""'
    assert stored.stat().st_mode & 0o777 == 0o600
    assert stored.parent.stat().st_mode & 0o777 == 0o700
    assert (lab.node("generated") / "etc/grafana/grafana.ini").stat().st_mode & 0o777 == 0o640
    # Never echoed: not in the play's output.
    assert password not in json.dumps(first.output) and password not in first.stderr


def test_vault_password_public_url_and_sigv4(lab: Lab, first: Run) -> None:
    config = ini(lab, "vault_sigv4")
    assert config["security"]["admin_password"] == f'"""{STRONG}"""'
    assert config["server"]["root_url"] == "https://monitoring.example.com/"
    assert config["server"]["serve_from_sub_path"] == "false"
    assert config["server"]["domain"] == "monitoring.example.com"
    assert config["auth"]["sigv4_auth_enabled"] == "true"
    assert config["aws"]["allowed_auth_providers"] == "default"
    assert STRONG not in json.dumps(first.output) and STRONG not in first.stderr
    provisioned = yaml.safe_load(
        (lab.node("vault_sigv4") / "etc/grafana/provisioning/datasources/xpu.yaml").read_text()
    )
    (source,) = provisioned["datasources"]
    assert source["uid"] == "xpu-prometheus" and source["type"] == "prometheus"
    assert source["url"].startswith("https://aps-workspaces.us-east-1.amazonaws.com/")
    assert source["jsonData"]["sigV4Auth"] is True
    assert source["jsonData"]["sigV4AuthType"] == "default"
    assert source["jsonData"]["sigV4Region"] == "us-east-1"


def test_provisioning_files_point_at_the_dashboards(lab: Lab, first: Run) -> None:
    etc = lab.node("generated") / "etc/grafana/provisioning"
    sources = yaml.safe_load((etc / "datasources/xpu.yaml").read_text())
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert source["url"] == "http://127.0.0.1:9090" and "sigV4Auth" not in source["jsonData"]
    assert source["isDefault"] is True
    providers = yaml.safe_load((etc / "dashboards/xpu.yaml").read_text())["providers"]
    (provider,) = providers
    dashboards = lab.node("generated") / "var/lib/grafana/dashboards/xpu"
    assert provider["type"] == "file" and provider["options"]["path"] == str(dashboards)
    assert provider["folderUid"] == "xpu-parallelcluster"
    assert sorted(p.name for p in dashboards.iterdir()) == ["overview.json"]
    assert "Ansible managed" in (etc / "dashboards/xpu.yaml").read_text()


def test_dashboards_are_bound_to_the_provisioned_data_source(lab: Lab, first: Run) -> None:
    dashboards = lab.node("vault_sigv4") / "var/lib/grafana/dashboards/xpu"
    assert sorted(p.name for p in dashboards.iterdir()) == [
        "exported-dashboard.json",
        "overview.json",
    ]
    for path in dashboards.iterdir():
        dashboard = json.loads(path.read_text())
        assert dashboard["id"] is None
        (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
        assert variable["current"]["value"] == "xpu-prometheus", path.name
    exported = json.loads((dashboards / "exported-dashboard.json").read_text())
    assert "__inputs" not in exported and "__requires" not in exported
    assert "${DS_PROMETHEUS}" not in json.dumps(exported)
    assert exported["panels"][0]["datasource"]["uid"] == "xpu-prometheus"
    overview = json.loads((dashboards / "overview.json").read_text())
    source = json.loads(OVERVIEW.read_text())
    assert overview["panels"] == source["panels"]  # only the binding changed


@pytest.mark.parametrize("host", KEYS_OK)
def test_key_file_with_the_pinned_key_passes(first: Run, host: str) -> None:
    (verdict,) = first.results(host, "check the key file against the pinned fingerprint")
    assert not verdict.get("failed") and "holds the pinned key" in verdict["msg"]


def test_a_dashboard_no_longer_listed_is_removed(lab: Lab, first: Run) -> None:
    assert not (lab.node("generated") / "var/lib/grafana/dashboards/xpu/old.json").exists()


def test_second_run_changes_nothing(second: Run) -> None:
    assert set(second.stats) == set(CONFIGURED + KEYS_OK)
    changed = {h: s["changed"] for h, s in second.stats.items() if s["changed"]}
    assert changed == {}
    assert not [h for h, s in second.stats.items() if s["failures"]]


def test_check_mode_changes_nothing(lab: Lab, check: Run) -> None:
    assert set(check.stats) == set(CONFIGURED)
    assert {h: s["changed"] for h, s in check.stats.items() if s["changed"]} == {}
    assert not [h for h, s in check.stats.items() if s["failures"]]
    (report,) = [
        r
        for r in check.results("generated", "report that the service is left alone")
        if not r.get("skipped")
    ]
    assert "check mode: not starting or querying grafana-server" in report["msg"]
