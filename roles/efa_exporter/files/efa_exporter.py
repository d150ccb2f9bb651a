#!/usr/bin/env python3
# Copyright: xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)
"""Prometheus exporter for the hw_counters of a node's EFA devices (Amazon Elastic Fabric Adapter).

Installed and run as a systemd service by the ``efa_exporter`` role. Every scrape reads sysfs afresh
(one custom collector; nothing is read at import time or between scrapes):

- ``<sysfs>/class/infiniband/<dev>/hw_counters/<name>``: device-level counters, label ``port=""``;
- ``<sysfs>/class/infiniband/<dev>/ports/<n>/hw_counters/<name>``: port-level counters,
  label ``port="<n>"``;
- ``<sysfs>/class/infiniband/<dev>/ports/<n>/state`` (``4: ACTIVE``): ``efa_port_up`` and
  ``efa_port_state_info``.

Only devices whose PCI vendor (``device/vendor``) is 0x1d0f (Amazon) are EFA devices; other RDMA
devices (Mellanox 0x15b3, soft RoCE) are ignored. Every hw_counters file becomes one metric family
named after the file: monotonic counters as Prometheus counters ``efa_<name>_total``, and the few
values that are not monotonic (``lifespan``, the refresh interval in milliseconds the RDMA core adds
to every hw_counters directory) as gauges ``efa_<name>``. Counter files a newer kernel adds are
exported too (as counters), so nothing depends on a fixed list.

Bad input never stops the exporter: a file that is missing, unreadable, empty or not an integer, a
device that vanishes in the middle of a scrape, a symlink loop - the value is left out and
``efa_exporter_read_errors_total{kind}`` counts it; the other values are served as usual.

``--list-devices`` prints the EFA devices as JSON and exits; it needs no prometheus_client (the
role runs it to decide whether a node has EFA before installing anything). Python 3.9+.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from http.server import ThreadingHTTPServer
from typing import Any

try:
    from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.exposition import MetricsHandler
except ImportError:  # only --list-devices works without it
    HAVE_PROMETHEUS_CLIENT = False
else:
    HAVE_PROMETHEUS_CLIENT = True

AMAZON_PCI_VENDOR = "0x1d0f"
DEFAULT_PORT = 9101
NAMESPACE = "efa"
# Largest sysfs attribute is one page; a hw_counters value is one line.
MAX_READ = 4096
# InfiniBand port states (include/rdma/ib_verbs.h, enum ib_port_state); 4 is ACTIVE.
PORT_ACTIVE = 4

# hw_counters files whose value is not monotonic: exported as gauges ``efa_<name>``.
GAUGES = {
    "lifespan": (
        "Minimum milliseconds between two refreshes of the hw_counters values by the RDMA core "
        "(sysfs hw_counters/lifespan; a setting, not a counter)."
    ),
}

# Help text for the counters the Linux efa driver defines (drivers/infiniband/hw/efa/efa_verbs.c:
# EFA_DEFINE_DEVICE_STATS and EFA_DEFINE_PORT_STATS). Other names get a generic help text.
HELP = {
    # Device-level (hw_counters/ of the device): admin queue and verbs errors.
    "submitted_cmds": "Admin commands submitted to the EFA device.",
    "completed_cmds": "Admin commands the EFA device completed.",
    "cmds_err": "Admin commands that completed with an error.",
    "no_completion_cmds": "Admin commands that never completed (timed out).",
    "keep_alive_rcvd": "Keep-alive events received from the EFA device.",
    "alloc_pd_err": "Failed protection domain allocations.",
    "create_qp_err": "Failed queue pair creations.",
    "create_cq_err": "Failed completion queue creations.",
    "reg_mr_err": "Failed memory registrations.",
    "alloc_ucontext_err": "Failed user context allocations.",
    "create_ah_err": "Failed address handle creations.",
    "mmap_err": "Failed mmap requests.",
    # Port-level (ports/<n>/hw_counters/): traffic, RDMA and SRD network health.
    "tx_bytes": "Bytes transmitted.",
    "tx_pkts": "Packets transmitted.",
    "rx_bytes": "Bytes received.",
    "rx_pkts": "Packets received.",
    "rx_drops": "Packets received and then dropped.",
    "send_bytes": "Bytes sent by send operations.",
    "send_wrs": "Send work requests completed.",
    "recv_bytes": "Bytes received by receive operations.",
    "recv_wrs": "Receive work requests completed.",
    "rdma_read_wrs": "RDMA read work requests completed.",
    "rdma_read_bytes": "Bytes received by RDMA read operations.",
    "rdma_read_wr_err": "RDMA read work requests that failed.",
    "rdma_read_resp_bytes": "Bytes sent in responses to RDMA reads of other instances.",
    "rdma_write_wrs": "RDMA write work requests completed.",
    "rdma_write_bytes": "Bytes written by RDMA write operations.",
    "rdma_write_wr_err": "RDMA write work requests that failed.",
    "rdma_write_recv_bytes": "Bytes received by RDMA writes of other instances.",
    "retrans_bytes": "SRD bytes retransmitted.",
    "retrans_pkts": "SRD packets retransmitted.",
    "retrans_timeout_events": "SRD retransmission timeouts that changed the network path.",
    "unresponsive_remote_events": "Times an SRD remote connection was unresponsive.",
    "impaired_remote_conn_events": (
        "Times an SRD connection entered the impaired state (reduced rate limit)."
    ),
}

# Kinds of efa_exporter_read_errors_total.
ERROR_KINDS = (
    # A file or directory listed a moment ago is gone (device vanished, dangling link).
    "missing",
    # Any other read error: permission denied, a directory where a file should be, EIO.
    "unreadable",
    # Too many levels of symbolic links.
    "symlink_loop",
    # The file is empty.
    "empty",
    # Not an integer, a port state that is not "<number>: <NAME>", or a hw_counters file whose
    # name clashes with the exporter's own metrics.
    "invalid",
)

# Families the exporter writes itself; a hw_counters file whose name would clash is left out.
RESERVED = {"devices", "port_up", "port_state_info"}

NAME_RE = re.compile(r"[^a-zA-Z0-9_]")
INTEGER_RE = re.compile(r"^-?[0-9]+$")
STATE_RE = re.compile(r"^([0-9]+)\s*:\s*(\S+)$")


class ReadError(Exception):
    """A sysfs value that could not be read; ``kind`` is one of ERROR_KINDS."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def _error_kind(exc: OSError) -> str:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENODEV, errno.ENXIO):
        return "missing"
    if exc.errno == errno.ELOOP:
        return "symlink_loop"
    return "unreadable"


def read_text(path: str) -> str:
    """The stripped content of a sysfs file; raises ReadError."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_READ)
    except OSError as exc:
        raise ReadError(_error_kind(exc)) from exc
    text = data.decode("ascii", errors="replace").strip()
    if not text:
        raise ReadError("empty")
    return text


def read_int(path: str) -> int:
    text = read_text(path)
    if not INTEGER_RE.match(text):
        raise ReadError("invalid")
    return int(text)


def list_dir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path), key=_natural)
    except OSError as exc:
        raise ReadError(_error_kind(exc)) from exc


def _natural(name: str) -> tuple[Any, ...]:
    """Sort key putting port 2 before port 10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"([0-9]+)", name))


def parse_state(text: str) -> tuple[int, str]:
    """``4: ACTIVE`` -> (4, "ACTIVE"); raises ReadError("invalid")."""
    match = STATE_RE.match(text)
    if not match:
        raise ReadError("invalid")
    return int(match.group(1)), match.group(2)


def metric_name(counter: str) -> str:
    """The metric family name for a hw_counters file name (without the counters' _total)."""
    name = NAME_RE.sub("_", counter)
    return f"{NAMESPACE}_{name}"


def scan_devices(sysfs_root: str, errors: dict[str, int] | None = None) -> tuple[list, list]:
    """(EFA device names, other RDMA device names) under <sysfs_root>/class/infiniband.

    A node without that directory has no RDMA device (not an error). A device without a readable
    ``device/vendor`` link is not an EFA device (soft RoCE has none); reading errors other than a
    missing file are counted in ``errors``.
    """
    base = os.path.join(sysfs_root, "class", "infiniband")
    try:
        names = list_dir(base)
    except ReadError as exc:
        if exc.kind != "missing" and errors is not None:
            errors[exc.kind] = errors.get(exc.kind, 0) + 1
        return [], []
    efa, other = [], []
    for name in names:
        try:
            vendor = read_text(os.path.join(base, name, "device", "vendor")).lower()
        except ReadError as exc:
            if exc.kind != "missing" and errors is not None:
                errors[exc.kind] = errors.get(exc.kind, 0) + 1
            other.append(name)
            continue
        (efa if vendor == AMAZON_PCI_VENDOR else other).append(name)
    return efa, other


class EfaCollector:
    """Reads every EFA hw_counters value and port state at scrape time."""

    def __init__(self, sysfs_root: str = "/sys") -> None:
        self.sysfs_root = sysfs_root
        self._class_dir = os.path.join(sysfs_root, "class", "infiniband")
        self._lock = threading.Lock()
        self._errors_total = dict.fromkeys(ERROR_KINDS, 0)

    def describe(self) -> list:
        # Nothing to describe up front: registering the collector reads nothing.
        return []

    def collect(self) -> Iterator[Any]:
        started = time.monotonic()
        errors: dict[str, int] = {}
        devices, _ = scan_devices(self.sysfs_root, errors)
        counters: dict[str, Any] = {}
        labels = ["device", "port"]
        port_up = GaugeMetricFamily(
            f"{NAMESPACE}_port_up",
            "1 when the EFA port's state is ACTIVE (sysfs ports/<n>/state 4), else 0.",
            labels=labels,
        )
        port_state = GaugeMetricFamily(
            f"{NAMESPACE}_port_state_info",
            "EFA port state as the kernel names it (sysfs ports/<n>/state); value always 1.",
            labels=[*labels, "state"],
        )

        def add(directory: str, device: str, port: str) -> None:
            try:
                names = list_dir(directory)
            except ReadError as exc:
                errors[exc.kind] = errors.get(exc.kind, 0) + 1
                return
            for counter in names:
                if counter in RESERVED or counter.startswith("exporter_"):
                    errors["invalid"] = errors.get("invalid", 0) + 1
                    continue
                try:
                    value = read_int(os.path.join(directory, counter))
                except ReadError as exc:
                    errors[exc.kind] = errors.get(exc.kind, 0) + 1
                    continue
                family = counters.get(counter)
                if family is None:
                    family = self._family(counter)
                    counters[counter] = family
                family.add_metric([device, port], value)

        for device in devices:
            base = os.path.join(self._class_dir, device)
            add(os.path.join(base, "hw_counters"), device, "")
            try:
                ports = list_dir(os.path.join(base, "ports"))
            except ReadError as exc:
                errors[exc.kind] = errors.get(exc.kind, 0) + 1
                continue
            for port in ports:
                port_dir = os.path.join(base, "ports", port)
                try:
                    number, state = parse_state(read_text(os.path.join(port_dir, "state")))
                except ReadError as exc:
                    errors[exc.kind] = errors.get(exc.kind, 0) + 1
                else:
                    port_up.add_metric([device, port], 1 if number == PORT_ACTIVE else 0)
                    port_state.add_metric([device, port, state], 1)
                add(os.path.join(port_dir, "hw_counters"), device, port)

        yield GaugeMetricFamily(
            f"{NAMESPACE}_devices",
            "EFA devices (PCI vendor 0x1d0f) under /sys/class/infiniband at this scrape.",
            value=len(devices),
        )
        yield port_up
        yield port_state
        for counter in sorted(counters):
            yield counters[counter]

        with self._lock:
            for kind, count in errors.items():
                self._errors_total[kind] = self._errors_total.get(kind, 0) + count
            totals = dict(self._errors_total)
        read_errors = CounterMetricFamily(
            f"{NAMESPACE}_exporter_read_errors",
            "sysfs values the exporter could not read and left out, by kind "
            "(missing, unreadable, symlink_loop, empty, invalid).",
            labels=["kind"],
        )
        for kind in sorted(totals):
            read_errors.add_metric([kind], totals[kind])
        yield read_errors
        yield GaugeMetricFamily(
            f"{NAMESPACE}_exporter_scrape_duration_seconds",
            "Seconds this scrape took to read sysfs.",
            value=time.monotonic() - started,
        )

    @staticmethod
    def _family(counter: str) -> Any:
        name = metric_name(counter)
        if counter in GAUGES:
            return GaugeMetricFamily(name, GAUGES[counter], labels=["device", "port"])
        help_text = HELP.get(counter, f"EFA hw_counters value {counter}.")
        return CounterMetricFamily(
            name,
            f"{help_text} (sysfs hw_counters/{counter}; port is empty for device-level counters)",
            labels=["device", "port"],
        )


def make_registry(sysfs_root: str, process_metrics: bool = True) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(EfaCollector(sysfs_root))
    if process_metrics:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    return registry


def serve(registry: CollectorRegistry, address: str, port: int) -> ThreadingHTTPServer:
    """Serve ``registry`` on address:port from a background thread; returns the server.

    Works the same with prometheus_client 0.16 (whose start_http_server returns nothing) and 0.26.
    """

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
        daemon_threads = True

    httpd = Server((address, port), MetricsHandler.factory(registry))
    thread = threading.Thread(target=httpd.serve_forever, name="efa-exporter-http", daemon=True)
    thread.start()
    return httpd


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--listen-address",
        default="0.0.0.0",
        help="address to listen on (default 0.0.0.0: every address; an IPv6 address works too)",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (default 9101)")
    parser.add_argument(
        "--sysfs-root", default="/sys", help="where sysfs is mounted (default /sys)"
    )
    parser.add_argument(
        "--list-devices",
        action="store_true",
        help="print the EFA and other RDMA devices as JSON and exit (needs no prometheus_client)",
    )
    return parser.parse_args(list(argv) if argv is not None else None)


def main(argv: Iterable[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_devices:
        efa, other = scan_devices(args.sysfs_root)
        print(
            json.dumps(
                {
                    "sysfs_root": args.sysfs_root,
                    "devices": efa,
                    "device_count": len(efa),
                    "other_rdma_devices": other,
                }
            )
        )
        return 0
    if not HAVE_PROMETHEUS_CLIENT:
        print(
            f"efa_exporter: the Python module prometheus_client is missing for {sys.executable}; "
            "install python3-prometheus-client (or run the efa_exporter role)",
            file=sys.stderr,
        )
        return 2
    try:
        httpd = serve(make_registry(args.sysfs_root), args.listen_address, args.port)
    except OSError as exc:
        print(
            f"efa_exporter: cannot listen on {args.listen_address}:{args.port}: {exc}",
            file=sys.stderr,
        )
        return 1
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(
        f"efa_exporter: serving {args.sysfs_root}/class/infiniband on "
        f"{args.listen_address}:{httpd.server_address[1]}",
        file=sys.stderr,
        flush=True,
    )
    stop.wait()
    httpd.shutdown()
    httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
