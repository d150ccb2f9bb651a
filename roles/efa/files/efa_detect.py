#!/usr/bin/env python3
# Copyright: xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)
"""Report a node's EFA devices, libfabric EFA domains and EFA installer version as JSON.

Run by the ``efa`` role on the target with ``ansible.builtin.script`` (read only: it reads sysfs
and two files and runs ``fi_info``; it changes nothing). Standard library only, Python 3.8+,
because it runs with the node's own interpreter.

What counts as an EFA device: an entry of ``<sysfs>/class/infiniband/`` whose PCI vendor
(``device/vendor``) is 0x1d0f (Amazon). Other RDMA devices (for example Mellanox, 0x15b3) are
listed separately and never counted.

What counts as a libfabric EFA interface: a distinct ``domain`` among the ``provider: efa`` /
``type: FI_EP_RDM`` entries of ``fi_info -p efa -t FI_EP_RDM``. libfabric 2.x lists each RDM
domain twice (fabrics ``efa`` and ``efa-direct``); older releases once, with a fabric named
``EFA-<address>``. Counting domains gives one per interface in both cases.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

AMAZON_PCI_VENDOR = "0x1d0f"
FI_INFO_ARGS = ["-p", "efa", "-t", "FI_EP_RDM"]
FI_INFO_TIMEOUT = 60
INSTALLER_VERSION_RE = re.compile(r"^#\s*EFA installer version:\s*(\S+)", re.MULTILINE)
LIBFABRIC_VERSION_RE = re.compile(r"^libfabric:\s*(\S+)", re.MULTILINE)
# EC2 Nitro instances report the instance type as the DMI product name.
INSTANCE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def scan_infiniband(sysfs_root: str) -> list[dict]:
    """Every RDMA device under <sysfs_root>/class/infiniband, with its PCI vendor and port state."""
    base = os.path.join(sysfs_root, "class", "infiniband")
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    devices = []
    for name in names:
        vendor = (_read(os.path.join(base, name, "device", "vendor")) or "").lower()
        devices.append(
            {
                "name": name,
                "vendor": vendor or None,
                "device": _read(os.path.join(base, name, "device", "device")),
                "port_state": _read(os.path.join(base, name, "ports", "1", "state")),
                "efa": vendor == AMAZON_PCI_VENDOR,
            }
        )
    return devices


def parse_fi_info(text: str) -> list[dict]:
    """Entries of `fi_info` output: one dict per `provider:` block (key: value lines)."""
    entries: list[dict] = []
    for raw in text.splitlines():
        line = raw.strip()
        if ":" not in line:
            continue
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "provider":
            entries.append({"provider": value})
        elif entries and key in ("fabric", "domain", "version", "type", "protocol"):
            entries[-1][key] = value
    return entries


def efa_rdm_domains(entries: list[dict]) -> list[str]:
    """Distinct EFA RDM domains, one per EFA interface."""
    return sorted(
        {
            e["domain"]
            for e in entries
            if e.get("provider") == "efa" and e.get("type") == "FI_EP_RDM" and e.get("domain")
        }
    )


def parse_installer_version(text: str) -> str | None:
    """The version line of /opt/amazon/efa_installed_packages (`# EFA installer version: X`)."""
    match = INSTALLER_VERSION_RE.search(text or "")
    return match.group(1) if match else None


def parse_libfabric_version(text: str) -> str | None:
    """`libfabric: X` from `fi_info --version`."""
    match = LIBFABRIC_VERSION_RE.search(text or "")
    return match.group(1) if match else None


def find_fi_info(candidate: str) -> str | None:
    """The configured fi_info if it exists, else the first `fi_info` on PATH."""
    if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
        return candidate
    return shutil.which(os.path.basename(candidate) or "fi_info")


def _run(argv: list[str]) -> tuple[int, str, str]:
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=FI_INFO_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return 124, "", f"{' '.join(argv)} did not answer within {FI_INFO_TIMEOUT}s"
    except OSError as exc:
        return 127, "", str(exc)
    return proc.returncode, proc.stdout, proc.stderr


def detect(sysfs_root: str, fi_info: str, installed_packages: str) -> dict:
    infiniband = scan_infiniband(sysfs_root)
    efa = [d["name"] for d in infiniband if d["efa"]]
    result: dict = {
        "sysfs_root": sysfs_root,
        "devices": efa,
        "device_count": len(efa),
        "inactive_devices": [
            d["name"] for d in infiniband if d["efa"] and d["port_state"] not in (None, "4: ACTIVE")
        ],
        "other_rdma_devices": [d["name"] for d in infiniband if not d["efa"]],
        "fi_info": None,
        "fi_info_domains": [],
        "fi_info_domain_count": 0,
        "fi_info_error": None,
        "libfabric_version": None,
        "installed_packages_file": installed_packages,
        "installer_version": parse_installer_version(_read(installed_packages) or ""),
        "kmod_version": _read(os.path.join(sysfs_root, "module", "efa", "version")),
        "dmi_instance_type": None,
    }
    product = _read(os.path.join(sysfs_root, "class", "dmi", "id", "product_name")) or ""
    if INSTANCE_TYPE_RE.match(product):
        result["dmi_instance_type"] = product

    path = find_fi_info(fi_info)
    if path is None:
        result["fi_info_error"] = f"fi_info not found ({fi_info}, nor on PATH)"
        return result
    result["fi_info"] = path
    rc, out, err = _run([path, "--version"])
    if rc == 0:
        result["libfabric_version"] = parse_libfabric_version(out)
    rc, out, err = _run([path, *FI_INFO_ARGS])
    domains = efa_rdm_domains(parse_fi_info(out))
    result["fi_info_domains"] = domains
    result["fi_info_domain_count"] = len(domains)
    if rc != 0:
        # fi_info exits non-zero when no provider matches ("fi_getinfo: -61 (No data available)").
        message = (err or out).strip().splitlines()
        result["fi_info_error"] = f"rc={rc}: {message[-1] if message else 'no output'}"
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sysfs-root", default="/sys")
    parser.add_argument("--fi-info", default="/opt/amazon/efa/bin/fi_info")
    parser.add_argument("--installed-packages", default="/opt/amazon/efa_installed_packages")
    args = parser.parse_args(argv)
    json.dump(detect(args.sysfs_root, args.fi_info, args.installed_packages), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
