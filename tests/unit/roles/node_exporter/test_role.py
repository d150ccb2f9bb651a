"""The node_exporter role end to end on this machine (no lab, no network, no systemd).

Each inventory host is one scenario with ``ansible_connection: local``; the role's internal paths
(ARGS file, unit directory, bin and cache directories) point into tmp_path, package and service
management are switched off, and the binary the flag check runs is a stub printing the real
``--help`` of node_exporter 1.5.0. The binary install downloads a stand-in release tarball from a
file:// URL (its real sha256). The HTTP check of /metrics runs against loopback servers that serve
a recorded /metrics (or one without node_exporter_build_info). One run covers every scenario; a
second run proves idempotence and a check-mode run proves check mode changes nothing.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import shlex
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..harness import Lab, Run, local_inventory, role_playbook

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[4]
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "node_exporter"
HELP = FIXTURES / "node_exporter_1.5.0_help.txt"
VERSION = "1.10.2"
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}[os.uname().machine]


def _serve(body: bytes) -> tuple[http.server.ThreadingHTTPServer, int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def _stub_binary(path: Path) -> None:
    """A node_exporter stand-in: prints the real 1.5.0 --help (kingpin prints it on stdout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'#!/bin/sh\nif [ "$1" = --help ]; then cat {shlex.quote(str(HELP))}; exit 0; fi\nexit 1\n'
    )
    path.chmod(0o755)


def _release_tarball(path: Path, stub_dir: Path) -> str:
    """node_exporter-<v>.linux-<arch>.tar.gz laid out as upstream's, with the stub; its sha256."""
    _stub_binary(stub_dir / "node_exporter")
    path.parent.mkdir(parents=True, exist_ok=True)
    top = f"node_exporter-{VERSION}.linux-{ARCH}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(stub_dir / "node_exporter", arcname=f"{top}/node_exporter")
        for name in ("LICENSE", "NOTICE"):
            data = f"{name}\n".encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def _paths(base: Path) -> dict:
    # Directories every node has; the role creates the rest.
    for directory in ("etc/default", "etc/systemd/system", "usr/local/bin"):
        (base / directory).mkdir(parents=True, exist_ok=True)
    return {
        "__node_exporter_manage_packages": False,
        "__node_exporter_manage_service": False,
        "__node_exporter_package_binary": str(base / "usr/bin/prometheus-node-exporter"),
        "__node_exporter_package_default_file": str(base / "etc/default/prometheus-node-exporter"),
        "__node_exporter_binary_default_file": str(base / "etc/default/node_exporter"),
        "__node_exporter_unit_dir": str(base / "etc/systemd/system"),
        "__node_exporter_bin_dir": str(base / "usr/local/bin"),
        "__node_exporter_cache_dir": str(base / "var/cache/xpu-node-exporter"),
        "node_exporter_textfile_dir": str(base / "var/lib/node-exporter"),
    }


FAILING = {"metrics_without_build_info", "unknown_flag", "bad_checksum", "spaces_in_flag"}
CHECKED = ["debian_package", "rhel_binary", "container", "fresh_binary_check"]


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[int, int]]:
    good, good_port = _serve((FIXTURES / "metrics_sample.prom").read_bytes())
    bad, bad_port = _serve(b"# TYPE other_metric gauge\nother_metric 1\n")
    yield good_port, bad_port
    good.shutdown()
    bad.shutdown()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, servers: tuple[int, int]) -> Lab:
    tmp = tmp_path_factory.mktemp("node_exporter")
    good_port, bad_port = servers
    hosts: dict[str, dict] = {}

    def package_host(name: str, **role_vars) -> None:
        base = tmp / name
        _stub_binary(base / "usr/bin/prometheus-node-exporter")
        hosts[name] = {**_paths(base), **role_vars}

    def binary_host(name: str, sha256: str | None = None, **role_vars) -> None:
        base = tmp / name
        tarball = tmp / "dist" / name / f"node_exporter-{VERSION}.linux-{ARCH}.tar.gz"
        real = _release_tarball(tarball, tmp / "dist" / name / "stub")
        hosts[name] = {
            **_paths(base),
            "node_exporter_install_method": "binary",
            "node_exporter_download_url": tarball.as_uri(),
            "node_exporter_checksums": {ARCH: sha256 or real},
            # Users that exist on any Debian host: nothing is created on this machine.
            "node_exporter_system_user": "nobody",
            "node_exporter_system_group": "nogroup",
            **role_vars,
        }

    # Debian family: the package's /etc/default file, checked over HTTP against a recorded /metrics.
    package_host("debian_package", __node_exporter_verify=True, node_exporter_port=good_port)
    # A node in a container without systemd: the systemd collector off, hwmon off too.
    package_host(
        "container",
        node_exporter_collectors_enabled=[],
        node_exporter_collectors_disabled=["systemd", "hwmon"],
        node_exporter_listen_host="127.0.0.1",
    )
    # RedHat family path: the pinned tarball from a file:// URL, our unit, a system user.
    binary_host("rhel_binary")
    # Only ever run in check mode: the download is predicted, nothing is written.
    binary_host("fresh_binary_check")
    # Broken: an exporter that answers without node_exporter_build_info; a flag 1.5.0 does not
    # know; a checksum that does not match; a flag with a space in it.
    package_host(
        "metrics_without_build_info",
        __node_exporter_verify=True,
        __node_exporter_verify_retries=0,
        node_exporter_port=bad_port,
    )
    package_host("unknown_flag", node_exporter_extra_args=["--collector.bogus-collector"])
    binary_host("bad_checksum", sha256="0" * 64)
    package_host("spaces_in_flag", node_exporter_extra_args=["--collector.textfile.directory=/a b"])

    return Lab.create(tmp, local_inventory(hosts), role_playbook("node_exporter"))


@pytest.fixture(scope="module")
def first(lab: Lab) -> Run:
    return lab.run("--limit", "all:!fresh_binary_check")


@pytest.fixture(scope="module")
def second(lab: Lab, first: Run) -> Run:
    return lab.run("--limit", "all:!fresh_binary_check")


@pytest.fixture(scope="module")
def check(lab: Lab, second: Run) -> Run:
    return lab.run("--check", "--diff", "--limit", ",".join(CHECKED))


def _args(path: Path) -> list[str]:
    """ARGS as the unit gets them: the file's one ARGS="..." line, split on whitespace."""
    (line,) = [x for x in path.read_text().splitlines() if x.startswith("ARGS=")]
    return shlex.split(line.partition("=")[2])[0].split()


def test_every_scenario_ends_as_expected(first: Run) -> None:
    failed = {h for h, s in first.stats.items() if s["failures"]}
    assert failed == FAILING, {h: first.failure(h)[:400] for h in failed ^ FAILING}


def test_debian_package_gets_its_flags_in_etc_default(lab: Lab, first: Run, servers) -> None:
    node = lab.node("debian_package")
    text = (node / "etc/default/prometheus-node-exporter").read_text()
    assert "# Ansible managed" in text.splitlines()[:3]
    assert _args(node / "etc/default/prometheus-node-exporter") == [
        f"--web.listen-address=:{servers[0]}",
        f"--collector.textfile.directory={node / 'var/lib/node-exporter'}",
        "--collector.systemd",
    ]
    assert (node / "var/lib/node-exporter").is_dir()
    # No unit of ours for the package: its own unit reads the file.
    assert not list((node / "etc/systemd/system").iterdir())
    (verdict,) = first.ran("debian_package", "check that it exports node_exporter_build_info")
    assert not verdict.get("failed") and f"port {servers[0]}" in verdict["msg"]


def test_container_turns_collectors_off(lab: Lab, first: Run) -> None:
    args = _args(lab.node("container") / "etc/default/prometheus-node-exporter")
    assert args[0] == "--web.listen-address=127.0.0.1:9100"
    assert args[-2:] == ["--no-collector.systemd", "--no-collector.hwmon"]
    assert "--collector.systemd" not in args
    # Service management off: no HTTP check was made.
    assert not first.ran("container", "fetch /metrics")


def test_binary_install_from_the_pinned_tarball(lab: Lab, first: Run) -> None:
    node = lab.node("rhel_binary")
    binary = node / "usr/local/bin/node_exporter"
    assert binary.stat().st_mode & 0o777 == 0o755
    assert (
        "--collector.textfile.directory"
        in subprocess.run(
            [str(binary), "--help"], capture_output=True, text=True, check=True
        ).stdout
    )
    unit = (node / "etc/systemd/system/node_exporter.service").read_text()
    assert "# Ansible managed" in unit.splitlines()[:3]
    assert f"ExecStart={binary} $ARGS" in unit
    assert f"EnvironmentFile={node / 'etc/default/node_exporter'}" in unit
    assert "User=nobody" in unit and "Group=nogroup" in unit
    assert f"Prometheus node_exporter {VERSION}" in unit
    assert _args(node / "etc/default/node_exporter")[0] == "--web.listen-address=:9100"
    assert (
        node / f"var/cache/xpu-node-exporter/node_exporter-{VERSION}.linux-{ARCH}.tar.gz"
    ).is_file()
    # Flags checked against the installed binary's --help.
    (verdict,) = first.ran("rhel_binary", "check every flag")
    assert verdict["msg"] == f"3 flags known to {binary}"


def test_exporter_without_build_info_fails_with_what_to_do(first: Run, servers) -> None:
    message = first.failure("metrics_without_build_info")
    assert "does not answer with node_exporter_build_info" in message
    assert f"http://127.0.0.1:{servers[1]}/metrics (HTTP 200)" in message
    assert "journalctl -u prometheus-node-exporter" in message


def test_unknown_flag_never_reaches_the_service(lab: Lab, first: Run) -> None:
    message = first.failure("unknown_flag")
    assert "does not know the flags --collector.bogus-collector" in message
    assert not (lab.node("unknown_flag") / "etc/default/prometheus-node-exporter").exists()


def test_bad_checksum_installs_nothing(lab: Lab, first: Run) -> None:
    assert "checksum" in first.failure("bad_checksum").lower()
    assert not (lab.node("bad_checksum") / "usr/local/bin/node_exporter").exists()


def test_flag_with_a_space_is_refused_in_preflight(first: Run) -> None:
    message = first.failure("spaces_in_flag")
    assert "every flag must look like --name=value" in message and "/a b" in message


def test_second_run_changes_nothing(second: Run) -> None:
    changed = {h: s["changed"] for h, s in second.stats.items() if s["changed"]}
    assert changed == {}
    assert {h for h, s in second.stats.items() if s["failures"]} == FAILING


def test_check_mode_predicts_the_fresh_install_and_changes_nothing_else(
    lab: Lab, check: Run
) -> None:
    changed = {h for h, s in check.stats.items() if s["changed"]}
    assert changed == {"fresh_binary_check"}
    assert not {h for h, s in check.stats.items() if s["failures"]}
    (say,) = check.ran("fresh_binary_check", "predict the download")
    assert "would download file://" in say["msg"] and f"node_exporter {VERSION}" in say["msg"]
    node = lab.node("fresh_binary_check")
    assert not (node / "usr/local/bin/node_exporter").exists()
    assert not (node / "etc/default/node_exporter").exists()
    assert not (node / "etc/systemd/system/node_exporter.service").exists()
