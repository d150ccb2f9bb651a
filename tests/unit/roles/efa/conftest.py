"""Helpers for the efa role's tests: fake sysfs trees, recorded outputs, stubs, fake installer.

The role's detection runs ``roles/efa/files/efa_detect.py`` on the node; these helpers build what
that script reads, as sysfs and the EFA installer lay it out, under a test's tmp_path.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from types import ModuleType

from ..harness import ROOT, executable, load_script

ROLE = ROOT / "roles" / "efa"
SCRIPT = ROLE / "files" / "efa_detect.py"
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "efa"

AMAZON = "0x1d0f"
MELLANOX = "0x15b3"


def load_detect() -> ModuleType:
    """roles/efa/files/efa_detect.py as a module (it is a file the role ships, not a package)."""
    return load_script(SCRIPT, "efa_detect")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def fixture_domains(name: str) -> list[str]:
    """Device names behind a recorded fi_info output's RDM domains (rdmapXsY-rdm -> rdmapXsY)."""
    names = []
    for line in fixture(name).splitlines():
        key, _, value = line.strip().partition(": ")
        if key == "domain" and value.endswith("-rdm") and value[:-4] not in names:
            names.append(value[:-4])
    return names


def make_sysfs(
    root: Path,
    efa: int | list[str] = 0,
    mellanox: int = 0,
    product_name: str | None = None,
    inactive: int = 0,
    kmod_version: str | None = None,
) -> Path:
    """A sysfs tree: class/infiniband/<dev> links to devices/pci0000:00/<bdf>/infiniband/<dev>.

    ``efa`` is a count (names rdmap<n>s0) or the device names; ``mellanox`` adds mlx5_<n> devices
    (PCI vendor 0x15b3) that must never count; the first ``inactive`` EFA ports read DOWN.
    """
    names = efa if isinstance(efa, list) else [f"rdmap{i + 16}s0" for i in range(efa)]
    devices = [(n, AMAZON, "0xefa1") for n in names]
    devices += [(f"mlx5_{i}", MELLANOX, "0x101b") for i in range(mellanox)]
    klass = root / "class" / "infiniband"
    klass.mkdir(parents=True, exist_ok=True)
    for index, (name, vendor, device) in enumerate(devices):
        pci = root / "devices" / "pci0000:00" / f"0000:{index // 32:02x}:{index % 32:02x}.0"
        node = pci / "infiniband" / name
        (node / "ports" / "1").mkdir(parents=True)
        (pci / "vendor").write_text(vendor + "\n")
        (pci / "device").write_text(device + "\n")
        (node / "device").symlink_to(pci)
        efa_index = index if vendor == AMAZON else len(names)
        state = "1: DOWN" if efa_index < inactive else "4: ACTIVE"
        (node / "ports" / "1" / "state").write_text(state + "\n")
        (klass / name).symlink_to(node)
    if product_name is not None:
        dmi = root / "class" / "dmi" / "id"
        dmi.mkdir(parents=True)
        (dmi / "product_name").write_text(product_name + "\n")
    if kmod_version is not None:
        module = root / "module" / "efa"
        module.mkdir(parents=True)
        (module / "version").write_text(kmod_version + "\n")
    return root


def make_fi_info(path: Path, listing: str | None, version: str = "fi_info_version_2.1.txt") -> Path:
    """A stub fi_info printing a recorded output; ``listing=None``: no EFA provider (exit 1)."""
    if listing is None:
        body = f"/bin/cat {FIXTURES / 'fi_info_no_provider.txt'} >&2\nexit 1\n"
    else:
        body = f"/bin/cat {FIXTURES / listing}\n"
    return executable(
        path,
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then /bin/cat {FIXTURES / version}; exit 0; fi\n'
        f"{body}",
    )


def make_installer_tarball(path: Path, version: str, node: Path, listing: str) -> str:
    """A stand-in for aws-efa-installer-<version>.tar.gz; returns its sha256.

    Its efa_installer.sh logs its arguments to <node>/installer.log, writes
    <node>/opt/amazon/efa_installed_packages for ``version`` and puts a stub fi_info (printing
    ``listing``) at <node>/opt/amazon/efa/bin/fi_info - what the real installer leaves behind.
    """
    stub = make_fi_info(path.parent / f"{path.name}.fi_info", listing)
    installer = (
        "#!/bin/sh\n"
        "set -eu\n"
        f'echo "$*" >> {node}/installer.log\n'
        f"mkdir -p {node}/opt/amazon/efa/bin\n"
        f"cp {stub} {node}/opt/amazon/efa/bin/fi_info\n"
        f"printf '# EFA installer version: {version}\\n# Debug packages installed: no\\n'"
        f" > {node}/opt/amazon/efa_installed_packages\n"
    )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = installer.encode()
        info = tarfile.TarInfo("aws-efa-installer/efa_installer.sh")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()
