"""The prometheus role end to end on this machine, without starting a service.

Each inventory host is one scenario (``ansible_connection: local``) whose paths (configuration,
data, binaries, cache, the package's flags file, the systemd unit) point into its own directory
under tmp_path, with the internal ``__prometheus_manage_service: false`` so systemd is left alone.
The real promtool checks the rules and the configuration before they go live, as on a node. The
binary install downloads a stand-in release tarball from a file:// URL, checked against its real
sha256; its promtool hands over to this machine's. One run covers every scenario, a second proves
idempotence, a third check mode.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from .. import harness
from ..harness import Run, local_inventory, role_playbook

# Runs ansible-playbook against the role: part of `make test`, not the fast `make check`.
pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[3]
RULES = ROOT / "roles" / "prometheus" / "files" / "rules"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
VERSION = "2.53.4"
AMP = "https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write"
FAILING = {"bad_checksum", "no_region", "bad_targets", "invalid_config"}
CONVERGED = ["lab_file", "head_amp", "monitoring_bin"]


class Lab(harness.Lab):
    timeout = 400
    pipelining = True

    def config(self, host: str) -> dict:
        return yaml.safe_load((self.node(host) / "etc/prometheus/prometheus.yml").read_text())


def stand_in_release(path: Path) -> str:
    """prometheus-<v>.linux-amd64.tar.gz whose prometheus prints the version and whose promtool
    is this machine's; returns its sha256."""
    top = f"prometheus-{VERSION}.linux-amd64"
    members = {
        f"{top}/prometheus": (
            f"#!/bin/sh\necho 'prometheus, version {VERSION} (branch: HEAD, revision: stand-in)'\n"
        ),
        f"{top}/promtool": f'#!/bin/sh\nexec {PROMTOOL} "$@"\n',
        f"{top}/LICENSE": "stand-in\n",
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def _scenarios(tmp: Path) -> dict[str, dict]:
    tarball = tmp / "dist" / f"prometheus-{VERSION}.linux-amd64.tar.gz"
    sha256 = stand_in_release(tarball)

    def paths(host: str) -> dict:
        base = tmp / host
        return {
            "prometheus_config_dir": str(base / "etc/prometheus"),
            "prometheus_data_dir": str(base / "var/lib/prometheus"),
            "prometheus_binary_dir": str(base / "usr/local/bin"),
            "prometheus_cache_dir": str(base / "var/cache/xpu-prometheus"),
            "__prometheus_args_file": str(base / "etc/default/prometheus"),
            "__prometheus_unit_path": str(base / "etc/systemd/system/prometheus.service"),
            "__prometheus_manage_service": False,
            "prometheus_cluster_name": "unit",
        }

    # The Debian package is installed here (it brings promtool); apt needs the system python.
    package = {
        "prometheus_install_method": "package",
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    binary = {
        "prometheus_install_method": "binary",
        "prometheus_binary_url": tarball.as_uri(),
        "prometheus_binary_checksums": {VERSION: {"amd64": sha256}},
    }
    lab_targets = {
        "node": [
            {
                "targets": ["xpu-lab-head:9100"],
                "labels": {"node_type": "head", "hostname": "xpu-lab-head", "instance_id": "i-1"},
            },
            {
                "targets": ["xpu-lab-c1:9100", "xpu-lab-c2:9100"],
                "labels": {"node_type": "compute", "queue": "q1", "compute_resource": "cpu"},
            },
        ],
        "slurm": [{"targets": ["xpu-lab-head:9102"], "labels": {"node_type": "head"}}],
    }
    ec2 = {"prometheus_sd_mode": "ec2", "prometheus_ec2_region": "us-east-1"}
    hosts = {
        # The lab: Debian package, file_sd, no size limit, loopback only.
        "lab_file": {
            **paths("lab_file"),
            **package,
            "prometheus_sd_mode": "file",
            "prometheus_file_sd_targets": lab_targets,
            "prometheus_retention_size": "",
            "prometheus_listen_address": "127.0.0.1:9091",
        },
        # Head node with amp-only monitoring: EC2 discovery, SigV4 remote write, Alertmanager.
        "head_amp": {
            **paths("head_amp"),
            **package,
            **ec2,
            "pc_node_type": "HeadNode",
            "prometheus_ec2_endpoint": "http://127.0.0.1:5055",
            "prometheus_gpu_instance_types": ["p5.48xlarge", "g6e.12xlarge"],
            "prometheus_efa_instance_types": ["p5.48xlarge"],
            "prometheus_remote_write": [
                {
                    "url": AMP,
                    "sigv4": {"region": "us-east-1"},
                    "queue_config": {"max_samples_per_send": 1000, "max_shards": 20},
                }
            ],
            "prometheus_alertmanager_urls": ["http://10.0.0.9:9093/am"],
            "prometheus_external_labels": {"environment": "test"},
        },
        # Monitoring instance (self-hosting): release binary, CPU-only cluster.
        "monitoring_bin": {**paths("monitoring_bin"), **binary, **ec2},
        # Failures, each before anything goes live.
        "bad_checksum": {
            **paths("bad_checksum"),
            **binary,
            **ec2,
            "prometheus_binary_checksums": {VERSION: {"amd64": "0" * 64}},
        },
        "no_region": {**paths("no_region"), **package, **ec2, "prometheus_ec2_region": ""},
        "bad_targets": {
            **paths("bad_targets"),
            **package,
            "prometheus_sd_mode": "file",
            "prometheus_file_sd_targets": {"node": [{"targets": ["xpu-lab-c1"]}]},
        },
        "invalid_config": {
            **paths("invalid_config"),
            **package,
            **ec2,
            "prometheus_scrape_interval": "thirty",
        },
        # Only ever run in check mode.
        "check_fresh": {**paths("check_fresh"), **binary, **ec2},
    }
    return hosts


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    tmp = tmp_path_factory.mktemp("prometheus")
    hosts = _scenarios(tmp)
    # What every node has before the role runs.
    for host in hosts:
        for directory in ("etc/default", "etc/systemd/system"):
            (tmp / host / directory).mkdir(parents=True)
    # A rule file an older version of the role shipped: removed by the run.
    stale = tmp / "lab_file/etc/prometheus/rules/xpu/xpu-old.yml"
    stale.parent.mkdir(parents=True)
    stale.write_text("groups: []\n")
    playbook = role_playbook("prometheus", name="Role prometheus on scratch trees")
    return Lab.create(tmp, local_inventory(hosts), playbook)


@pytest.fixture(scope="module")
def first(lab: Lab) -> Run:
    return lab.run("--limit", "all:!check_fresh")


@pytest.fixture(scope="module")
def second(lab: Lab, first: Run) -> Run:
    return lab.run("--limit", ",".join(CONVERGED))


@pytest.fixture(scope="module")
def check(lab: Lab, second: Run) -> Run:
    return lab.run("--check", "--diff", "--limit", "lab_file,monitoring_bin,check_fresh")


def promtool_check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_scenario_ends_as_expected(first: Run) -> None:
    failed = {h for h, s in first.stats.items() if s["failures"]}
    assert failed == FAILING, {h: first.failure(h)[:400] for h in failed ^ FAILING}


@pytest.mark.parametrize("host", CONVERGED)
def test_configuration_passes_promtool_with_the_installed_rules(
    lab: Lab, first: Run, host: str
) -> None:
    config = lab.node(host) / "etc/prometheus/prometheus.yml"
    assert "# Ansible managed" in config.read_text().splitlines()[:3]
    proc = promtool_check_config(config)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The rule_files glob found every rules file the role installed.
    assert f"SUCCESS: {len(list(RULES.glob('*.yml')))} rule files found" in proc.stdout
    rules_dir = lab.node(host) / "etc/prometheus/rules/xpu"
    assert sorted(p.name for p in rules_dir.iterdir()) == sorted(
        p.name for p in RULES.glob("*.yml")
    )
    for path in RULES.glob("*.yml"):
        assert (rules_dir / path.name).read_bytes() == path.read_bytes()
    assert lab.config(host)["rule_files"] == [str(rules_dir / "*.yml")]
    assert lab.config(host)["global"]["external_labels"]["cluster"] == "unit"


def test_rule_file_no_longer_shipped_is_removed(lab: Lab, first: Run) -> None:
    assert not (lab.node("lab_file") / "etc/prometheus/rules/xpu/xpu-old.yml").exists()


def test_file_mode_reads_one_file_per_job_with_the_cluster_label(lab: Lab, first: Run) -> None:
    config = lab.config("lab_file")
    sd_dir = lab.node("lab_file") / "etc/prometheus/file_sd"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert list(jobs) == ["prometheus", "node", "dcgm", "efa", "slurm"]
    for name in ("node", "dcgm", "efa", "slurm"):
        assert jobs[name]["file_sd_configs"] == [{"files": [str(sd_dir / f"{name}.yml")]}]
        assert "ec2_sd_configs" not in jobs[name]
    node = yaml.safe_load((sd_dir / "node.yml").read_text())
    assert node == [
        {
            "targets": ["xpu-lab-head:9100"],
            "labels": {
                "cluster": "unit",
                "node_type": "head",
                "hostname": "xpu-lab-head",
                "instance_id": "i-1",
            },
        },
        {
            "targets": ["xpu-lab-c1:9100", "xpu-lab-c2:9100"],
            "labels": {
                "cluster": "unit",
                "node_type": "compute",
                "queue": "q1",
                "compute_resource": "cpu",
            },
        },
    ]
    # Jobs without targets get an empty, valid file.
    assert yaml.safe_load((sd_dir / "dcgm.yml").read_text()) == []
    assert (sd_dir / "slurm.yml").read_text().startswith("#")
    # Prometheus scrapes itself where it listens.
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["127.0.0.1:9091"]
    assert jobs["prometheus"]["static_configs"][0]["labels"]["cluster"] == "unit"
    assert "remote_write" not in config and "alerting" not in config


def test_package_flags_file_sets_retention_listen_address_and_paths(lab: Lab, first: Run) -> None:
    node = lab.node("lab_file")
    text = (node / "etc/default/prometheus").read_text()
    (args,) = [line for line in text.splitlines() if line.startswith("ARGS=")]
    flags = args.removeprefix('ARGS="').removesuffix('"').split(" ")
    assert flags == [
        f"--config.file={node}/etc/prometheus/prometheus.yml",
        f"--storage.tsdb.path={node}/var/lib/prometheus",
        "--web.listen-address=127.0.0.1:9091",
        "--storage.tsdb.retention.time=15d",
    ]
    assert (node / "var/lib/prometheus").is_dir()
    # A package install has no unit of its own.
    assert not (node / "etc/systemd/system/prometheus.service").exists()
    head = (lab.node("head_amp") / "etc/default/prometheus").read_text()
    assert (
        "--storage.tsdb.retention.size=10GB" in head and "--web.listen-address=0.0.0.0:9090" in head
    )


def test_ec2_discovery_filters_on_the_cluster_and_relabels_the_tags(lab: Lab, first: Run) -> None:
    jobs = {job["job_name"]: job for job in lab.config("head_amp")["scrape_configs"]}
    assert list(jobs) == ["prometheus", "node", "dcgm", "efa", "slurm"]
    base = [
        {"name": "tag:parallelcluster:cluster-name", "values": ["unit"]},
        {"name": "instance-state-name", "values": ["running"]},
    ]
    extra = {
        "node": [],
        "dcgm": [{"name": "instance-type", "values": ["p5.48xlarge", "g6e.12xlarge"]}],
        "efa": [{"name": "instance-type", "values": ["p5.48xlarge"]}],
        "slurm": [{"name": "tag:parallelcluster:node-type", "values": ["HeadNode"]}],
    }
    ports = {"node": 9100, "dcgm": 9400, "efa": 9101, "slurm": 9102}
    for name, port in ports.items():
        (sd,) = jobs[name]["ec2_sd_configs"]
        assert sd["region"] == "us-east-1" and sd["endpoint"] == "http://127.0.0.1:5055"
        assert sd["port"] == port and sd["filters"] == base + extra[name]
        relabel = jobs[name]["relabel_configs"]
        targets = {r["target_label"] for r in relabel}
        assert targets == {
            "cluster",
            "node_type",
            "queue",
            "compute_resource",
            "instance_type",
            "instance_id",
            "hostname",
        }
        node_types = {
            r["regex"]: r["replacement"] for r in relabel if r["target_label"] == "node_type"
        }
        assert node_types == {"HeadNode": "head", "Compute": "compute", "LoginNode": "login"}
        sources = {r["target_label"]: r["source_labels"] for r in relabel}
        assert sources["cluster"] == ["__meta_ec2_tag_parallelcluster_cluster_name"]
        assert sources["queue"] == ["__meta_ec2_tag_parallelcluster_queue_name"]
        assert sources["compute_resource"] == [
            "__meta_ec2_tag_parallelcluster_compute_resource_name"
        ]
    self_labels = jobs["prometheus"]["static_configs"][0]["labels"]
    assert self_labels["node_type"] == "head" and self_labels["cluster"] == "unit"


def test_cpu_only_cluster_has_no_dcgm_or_efa_job(lab: Lab, first: Run) -> None:
    jobs = [job["job_name"] for job in lab.config("monitoring_bin")["scrape_configs"]]
    assert jobs == ["prometheus", "node", "slurm"]
    labels = lab.config("monitoring_bin")["scrape_configs"][0]["static_configs"][0]["labels"]
    assert labels["node_type"] == "monitoring"


def test_remote_write_with_sigv4_alertmanager_and_external_labels(lab: Lab, first: Run) -> None:
    config = lab.config("head_amp")
    assert config["remote_write"] == [
        {
            "url": AMP,
            "sigv4": {"region": "us-east-1"},
            "queue_config": {"max_samples_per_send": 1000, "max_shards": 20},
        }
    ]
    assert config["alerting"] == {
        "alertmanagers": [
            {
                "scheme": "http",
                "path_prefix": "/am",
                "static_configs": [{"targets": ["10.0.0.9:9093"]}],
            }
        ]
    }
    assert config["global"]["external_labels"] == {"cluster": "unit", "environment": "test"}


def test_binary_install_from_the_checksummed_release(lab: Lab, first: Run) -> None:
    node = lab.node("monitoring_bin")
    version = subprocess.run(
        [str(node / "usr/local/bin/prometheus"), "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"version {VERSION}" in version.stdout
    assert (node / f"var/cache/xpu-prometheus/prometheus-{VERSION}.linux-amd64.tar.gz").is_file()
    unit = (node / "etc/systemd/system/prometheus.service").read_text()
    assert unit.startswith("#") and "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert f"ExecStart={node}/usr/local/bin/prometheus \\" in unit
    assert f"  --config.file={node}/etc/prometheus/prometheus.yml \\" in unit
    assert "  --storage.tsdb.retention.size=10GB" in unit and "User=prometheus" in unit
    (say,) = first.ran("monitoring_bin", "say what will be installed")
    assert (
        f"Prometheus none installed in {node}/usr/local/bin, {VERSION} wanted: installing"
        in say["msg"]
    )


def test_failures_stop_before_anything_goes_live(lab: Lab, first: Run) -> None:
    assert "checksum" in first.failure("bad_checksum").lower()
    assert not (lab.node("bad_checksum") / "usr/local/bin/prometheus").exists()
    assert "ec2 needs prometheus_ec2_region (got '')" in first.failure("no_region")
    assert "prometheus_file_sd_targets on bad_targets must map jobs" in first.failure("bad_targets")
    for host in ("no_region", "bad_targets"):
        assert not (lab.node(host) / "etc/prometheus").exists()
    # promtool refused the configuration: the rules went in, prometheus.yml did not.
    assert "failed to validate" in first.failure("invalid_config")
    node = lab.node("invalid_config")
    assert (node / "etc/prometheus/rules/xpu/xpu-gpu-alerts.yml").is_file()
    assert not (node / "etc/prometheus/prometheus.yml").exists()


def test_service_is_left_alone_when_asked(first: Run) -> None:
    (say,) = first.ran("lab_file", "report that systemd is left alone")
    assert "service not started" in say["msg"]
    assert not first.ran("lab_file", "enable and start Prometheus")
    assert not first.ran("lab_file", "wait until Prometheus is ready")


def test_second_run_changes_nothing(second: Run) -> None:
    changed = {h: s["changed"] for h, s in second.stats.items() if s["changed"]}
    assert changed == {}
    assert set(second.stats) == set(CONVERGED)
    assert not {h for h, s in second.stats.items() if s["failures"]}
    assert not second.ran("monitoring_bin", "download the release tarball")


def test_check_mode_predicts_and_writes_nothing(lab: Lab, check: Run) -> None:
    changed = {h for h, s in check.stats.items() if s["changed"]}
    assert changed == {"check_fresh"}
    assert not {h for h, s in check.stats.items() if s["failures"]}
    (say,) = check.ran("check_fresh", "say what will be installed")
    assert "would install" in say["msg"]
    assert not (lab.node("check_fresh") / "etc/prometheus").exists()
    assert not list((lab.node("check_fresh") / "etc/systemd/system").iterdir())
    assert not (lab.node("check_fresh") / "usr").exists()
