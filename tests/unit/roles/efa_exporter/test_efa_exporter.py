"""roles/efa_exporter/files/efa_exporter.py: the collector on fake sysfs trees, and its HTTP server.

Every scrape is the real exposition text (prometheus_client.generate_latest) parsed back with
prometheus_client.parser, so names, types, labels and values are checked as Prometheus sees them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ..harness import free_port
from .conftest import (
    DEVICE_COUNTERS,
    PORT_COUNTERS,
    SCRIPT,
    Tree,
    expected_value,
    load_exporter,
    make_sysfs,
    scrape,
)

exporter = load_exporter()
KINDS = {"missing", "unreadable", "symlink_loop", "empty", "invalid"}
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def registry_for(tree: Tree):
    return exporter.make_registry(str(tree.root), process_metrics=False)


def sample_name(counter: str) -> str:
    return f"efa_{counter}" if counter == "lifespan" else f"efa_{counter}_total"


@pytest.mark.parametrize("count", [1, 8, 16, 32])
def test_every_port_and_device_counter_of_every_efa_device(tmp_path: Path, count: int) -> None:
    tree = make_sysfs(tmp_path, count, mellanox=2)
    registry = registry_for(tree)
    started = time.monotonic()
    result = scrape(registry)
    elapsed = time.monotonic() - started
    # Milliseconds on an idle machine; the bound leaves room for a loaded CI machine.
    assert elapsed < 5.0, f"a scrape of {count} devices took {elapsed:.2f}s"

    assert result.value("efa_devices") == count
    for index, device in enumerate(tree.efa):
        for counter in PORT_COUNTERS:
            value = result.value(sample_name(counter), device=device, port="1")
            assert value == expected_value(PORT_COUNTERS, counter, index), (device, counter)
        for counter in DEVICE_COUNTERS:
            value = result.value(sample_name(counter), device=device, port="")
            assert value == expected_value(DEVICE_COUNTERS, counter, index), (device, counter)
        assert result.value("efa_port_up", device=device, port="1") == 1
        assert result.value("efa_port_state_info", device=device, port="1", state="ACTIVE") == 1

    # Exactly these samples: one per device and file, nothing for the Mellanox devices.
    for counter in set(PORT_COUNTERS) | set(DEVICE_COUNTERS):
        samples = result.samples(sample_name(counter))
        per_device = (counter in PORT_COUNTERS) + (counter in DEVICE_COUNTERS)
        assert len(samples) == count * per_device, counter
        assert {dict(k)["device"] for k in samples} == set(tree.efa)
    assert "mlx5" not in result.text
    assert result.errors() == dict.fromkeys(KINDS, 0)
    assert 0 < result.value("efa_exporter_scrape_duration_seconds") < 5.0


def test_counter_types_and_names(tmp_path: Path) -> None:
    result = scrape(registry_for(make_sysfs(tmp_path, 1)))
    for counter in (set(PORT_COUNTERS) | set(DEVICE_COUNTERS)) - {"lifespan"}:
        family = f"efa_{counter}"
        assert result.type_of(family) == "counter", counter
        assert f"# TYPE efa_{counter}_total counter" in result.text
        assert {s.name for s in result.families[family].samples} == {f"efa_{counter}_total"}
    assert result.type_of("efa_lifespan") == "gauge"
    assert "# TYPE efa_lifespan gauge" in result.text
    assert "efa_lifespan_total" not in result.text
    for gauge in ("efa_devices", "efa_port_up", "efa_port_state_info"):
        assert result.type_of(gauge) == "gauge"
    assert result.type_of("efa_exporter_read_errors") == "counter"
    assert result.type_of("efa_exporter_scrape_duration_seconds") == "gauge"
    # Labels: device and port on every hw_counters sample, state on the info metric only.
    labels = {frozenset(s.labels) for s in result.families["efa_tx_bytes"].samples}
    assert labels == {frozenset({"device", "port"})}
    assert "# HELP efa_tx_bytes_total Bytes transmitted." in result.text


def test_counters_a_newer_kernel_adds_are_exported(tmp_path: Path) -> None:
    tree = make_sysfs(tmp_path, 1)
    tree.port_file(tree.efa[0], "rdma_atomic_wrs").write_text("77\n")
    tree.port_file(tree.efa[0], "odd-name.v2").write_text("5\n")
    result = scrape(registry_for(tree))
    assert result.value("efa_rdma_atomic_wrs_total", device=tree.efa[0], port="1") == 77
    assert result.type_of("efa_rdma_atomic_wrs") == "counter"
    assert result.value("efa_odd_name_v2_total", device=tree.efa[0], port="1") == 5


def test_port_states(tmp_path: Path) -> None:
    names = ["rdmap16s27", "rdmap32s27", "rdmap144s27"]
    tree = make_sysfs(tmp_path, names, states={"rdmap32s27": "1: DOWN", "rdmap144s27": "ACTIVE?"})
    result = scrape(registry_for(tree))
    assert result.value("efa_port_up", device="rdmap16s27", port="1") == 1
    assert result.value("efa_port_up", device="rdmap32s27", port="1") == 0
    assert result.value("efa_port_state_info", device="rdmap32s27", port="1", state="DOWN") == 1
    # An unparsable state: no port sample, an error counted, its counters still served.
    assert result.value("efa_port_up", device="rdmap144s27", port="1") is None
    assert not [k for k in result.samples("efa_port_state_info") if ("device", "rdmap144s27") in k]
    assert result.errors()["invalid"] == 1
    assert result.value("efa_tx_bytes_total", device="rdmap144s27", port="1") is not None


def test_several_ports_sort_numerically(tmp_path: Path) -> None:
    tree = make_sysfs(tmp_path, 1)
    device = tree.device_dir(tree.efa[0])
    for port in ("2", "10"):
        shutil.copytree(device / "ports" / "1", device / "ports" / port)
    result = scrape(registry_for(tree))
    ports = [s.labels["port"] for s in result.families["efa_tx_bytes"].samples]
    assert ports == ["1", "2", "10"]
    assert result.value("efa_port_up", device=tree.efa[0], port="10") == 1


def test_odd_files_are_left_out_and_counted(tmp_path: Path) -> None:
    tree = make_sysfs(tmp_path, 2)
    first, second = tree.efa
    tree.port_file(first, "tx_bytes").write_text("")  # empty
    tree.port_file(first, "rx_bytes").write_text("abc\n")  # not an integer
    tree.port_file(first, "rx_pkts").write_text("1.5\n")  # not an integer either
    tree.port_file(first, "rx_drops").unlink()
    tree.port_file(first, "rx_drops").mkdir()  # a directory where a file should be
    tree.port_file(first, "send_bytes").unlink()
    tree.port_file(first, "send_bytes").symlink_to(tmp_path / "nowhere")  # dangling
    tree.port_file(first, "recv_bytes").unlink()
    tree.port_file(first, "recv_bytes").symlink_to(tree.port_file(first, "recv_bytes"))  # loop
    tree.device_file(second, "cmds_err").write_text("\n")  # empty after the newline
    registry = registry_for(tree)

    result = scrape(registry)
    expected = {"empty": 2, "invalid": 2, "unreadable": 1, "missing": 1, "symlink_loop": 1}
    assert result.errors() == expected
    for counter in ("tx_bytes", "rx_bytes", "rx_pkts", "rx_drops", "send_bytes", "recv_bytes"):
        assert result.value(f"efa_{counter}_total", device=first, port="1") is None, counter
        assert result.value(f"efa_{counter}_total", device=second, port="1") is not None
    assert result.value("efa_cmds_err_total", device=second, port="") is None
    # Everything else of both devices is still there.
    assert result.value("efa_tx_pkts_total", device=first, port="1") == PORT_COUNTERS["tx_pkts"]
    assert result.value("efa_devices") == 2
    # The error counter only grows.
    again = scrape(registry)
    assert again.errors() == {kind: 2 * count for kind, count in expected.items()}


def test_permission_denied_is_counted_as_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = make_sysfs(tmp_path, 1)
    denied = str(tree.port_file(tree.efa[0], "rdma_read_bytes"))
    real_open = open

    def fake_open(path, *args, **kwargs):
        if os.fspath(path).endswith("/rdma_read_bytes") and "ports" in os.fspath(path):
            raise PermissionError(13, "Permission denied", denied)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(exporter, "open", fake_open, raising=False)
    result = scrape(registry_for(tree))
    assert result.errors()["unreadable"] == 1
    assert result.value("efa_rdma_read_bytes_total", device=tree.efa[0], port="1") is None
    assert result.value("efa_rdma_write_bytes_total", device=tree.efa[0], port="1") is not None


def test_device_vanishing_mid_scrape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = make_sysfs(tmp_path, 8)
    gone = tree.efa[3]
    real_scan = exporter.scan_devices

    def scan_then_unplug(*args, **kwargs):
        found = real_scan(*args, **kwargs)
        shutil.rmtree(tree.device_dir(gone))  # hot-unplug after the listing
        return found

    monkeypatch.setattr(exporter, "scan_devices", scan_then_unplug)
    result = scrape(registry_for(tree))
    assert result.value("efa_devices") == 8  # counted when listed
    assert not [k for k in result.samples("efa_tx_bytes_total") if ("device", gone) in k]
    served = {dict(k)["device"] for k in result.samples("efa_tx_bytes_total")}
    assert served == set(tree.efa) - {gone}
    assert result.errors()["missing"] >= 1
    assert sum(result.errors().values()) == result.errors()["missing"]


def test_files_vanishing_between_listing_and_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = make_sysfs(tmp_path, 1)
    real_list = exporter.list_dir

    def list_then_remove(path: str) -> list[str]:
        names = real_list(path)
        if path.endswith(os.path.join("ports", "1", "hw_counters")):
            os.unlink(os.path.join(path, "tx_bytes"))
        return names

    monkeypatch.setattr(exporter, "list_dir", list_then_remove)
    result = scrape(registry_for(tree))
    assert result.errors()["missing"] == 1
    assert result.value("efa_tx_bytes_total", device=tree.efa[0], port="1") is None
    assert result.value("efa_rx_bytes_total", device=tree.efa[0], port="1") is not None


def test_node_without_rdma_devices(tmp_path: Path) -> None:
    result = scrape(exporter.make_registry(str(tmp_path / "no-sysfs"), process_metrics=False))
    assert result.value("efa_devices") == 0
    assert result.errors() == dict.fromkeys(KINDS, 0)
    assert "efa_tx_bytes" not in result.text


def test_devices_that_are_not_efa_are_ignored(tmp_path: Path) -> None:
    tree = make_sysfs(tmp_path, 1, mellanox=3)
    # Soft RoCE: an RDMA device without a PCI function (no device link).
    rxe = tmp_path / "devices" / "virtual" / "infiniband" / "rxe0"
    (rxe / "ports" / "1" / "hw_counters").mkdir(parents=True)
    (rxe / "ports" / "1" / "hw_counters" / "sent_pkts").write_text("9\n")
    (tmp_path / "class" / "infiniband" / "rxe0").symlink_to(rxe)
    # A device whose link loops: counted as an error, never as EFA.
    loop = tmp_path / "class" / "infiniband" / "rdmap99s0"
    loop.symlink_to(loop)
    result = scrape(registry_for(tree))
    assert result.value("efa_devices") == 1
    devices = {dict(k)["device"] for k in result.samples("efa_tx_bytes_total")}
    assert devices == {tree.efa[0]}
    assert "rxe0" not in result.text and "mlx5" not in result.text
    assert result.errors()["symlink_loop"] == 1
    efa, other = exporter.scan_devices(str(tmp_path))
    assert efa == [tree.efa[0]]
    assert other == ["mlx5_0", "mlx5_1", "mlx5_2", "rdmap99s0", "rxe0"]


def test_clashing_file_names_do_not_break_the_scrape(tmp_path: Path) -> None:
    tree = make_sysfs(tmp_path, 1)
    tree.port_file(tree.efa[0], "devices").write_text("3\n")
    tree.port_file(tree.efa[0], "exporter_read_errors").write_text("3\n")
    result = scrape(registry_for(tree))
    assert result.value("efa_devices") == 1
    assert result.errors()["invalid"] == 2


def test_nothing_is_read_at_import_or_registration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_listdir = os.listdir

    def spy(path="."):
        calls.append(os.fspath(path))
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", spy)
    module = load_exporter()
    registry = module.make_registry(str(make_sysfs(tmp_path, 1).root), process_metrics=False)
    assert not [c for c in calls if "infiniband" in c]
    scrape(registry)
    assert [c for c in calls if c.endswith("class/infiniband")]


def test_helpers() -> None:
    assert exporter.parse_state("4: ACTIVE") == (4, "ACTIVE")
    assert exporter.parse_state("1: DOWN") == (1, "DOWN")
    assert exporter.parse_state("5:ACTIVE_DEFER") == (5, "ACTIVE_DEFER")
    for bad in ("ACTIVE", "", "x: ACTIVE", "4:"):
        with pytest.raises(exporter.ReadError):
            exporter.parse_state(bad)
    assert exporter.metric_name("tx_bytes") == "efa_tx_bytes"
    assert exporter.metric_name("a-b.c") == "efa_a_b_c"


def _fetch(port: int, path: str = "/metrics") -> str:
    with NO_PROXY.open(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        assert response.status == 200
        return response.read().decode()


def test_http_server_serves_on_loopback(tmp_path: Path) -> None:
    tree = make_sysfs(tmp_path, 2)
    httpd = exporter.serve(exporter.make_registry(str(tree.root)), "127.0.0.1", 0)
    try:
        port = httpd.server_address[1]
        assert httpd.server_address[0] == "127.0.0.1"
        text = _fetch(port)
        assert "efa_devices 2.0" in text
        assert f'efa_tx_bytes_total{{device="{tree.efa[1]}",port="1"}}' in text
        assert "process_resident_memory_bytes" in text or sys.platform != "linux"
        # A scrape later sees a counter that moved: values are read per scrape.
        tree.port_file(tree.efa[0], "tx_bytes").write_text("42\n")
        assert f'efa_tx_bytes_total{{device="{tree.efa[0]}",port="1"}} 42.0' in _fetch(port)
    finally:
        httpd.shutdown()
        httpd.server_close()


def _wait_for(port: int, proc: subprocess.Popen, deadline: float = 15.0) -> str:
    stop = time.monotonic() + deadline
    while True:
        try:
            return _fetch(port)
        except OSError:
            if proc.poll() is not None or time.monotonic() > stop:
                raise
            time.sleep(0.05)


def test_daemon_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    tree = make_sysfs(tmp_path, 1)
    port = free_port()
    argv = ["--listen-address", "127.0.0.1", "--port", str(port), "--sysfs-root", str(tree.root)]
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        text = _wait_for(port, proc)
        assert "efa_devices 1.0" in text
        assert 'efa_exporter_read_errors_total{kind="missing"} 0.0' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out == ""
    assert f"serving {tree.root}/class/infiniband on 127.0.0.1:{port}" in err


def test_daemon_reports_a_busy_port(tmp_path: Path) -> None:
    httpd = exporter.serve(exporter.make_registry(str(tmp_path)), "127.0.0.1", 0)
    try:
        port = httpd.server_address[1]
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), "--listen-address", "127.0.0.1", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr


# Runs the script as __main__ in an interpreter where importing prometheus_client fails.
WITHOUT_CLIENT = (
    "import runpy, sys; sys.modules['prometheus_client'] = None; "
    "sys.argv = [sys.argv[1]] + sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def test_list_devices_needs_no_prometheus_client(tmp_path: Path) -> None:
    tree = make_sysfs(tmp_path, 8, mellanox=1)
    argv = ["--list-devices", "--sysfs-root", str(tree.root)]
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_CLIENT, str(SCRIPT), *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "sysfs_root": str(tree.root),
        "devices": tree.efa,
        "device_count": 8,
        "other_rdma_devices": ["mlx5_0"],
    }


def test_serving_without_prometheus_client_says_what_to_install(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_CLIENT, str(SCRIPT), "--sysfs-root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "prometheus_client is missing" in proc.stderr
    assert "python3-prometheus-client" in proc.stderr
