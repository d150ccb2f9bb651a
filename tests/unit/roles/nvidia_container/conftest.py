"""Helpers for the nvidia_container role's tests: fake nodes and recording stand-ins.

A fake node is a directory under tmp_path with ``bin/`` (stand-ins for ``nvidia-smi``, ``docker``,
``nvidia-ctk``, ``apt-get``, ``dnf`` and ``systemctl`` that record their arguments in
``calls/<name>.log`` and keep their state in ``state/``), ``dev/`` and Docker's ``daemon.json``.
The role sees them through its internal variables and a per-host PATH.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..harness import ROOT, executable, log_call

ROLE = ROOT / "roles" / "nvidia_container"
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "nvidia_container"

# Two test key pairs' public halves and their fingerprints (fixtures/README.md).
KEY_A = FIXTURES / "repo-key-a.asc"
KEY_A_FINGERPRINT = "2B4E13E449C99C1CDC6B91889CF81AC29C912B4B"
KEY_B = FIXTURES / "repo-key-b.asc"
KEY_B_FINGERPRINT = "483B92E4A0716640F5DB2422CE1467F4BBB57F9B"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def docker_stub(node: Path, version: str, path: Path | None = None) -> None:
    executable(
        path or node / "bin" / "docker",
        f"#!/bin/sh\n{log_call(node, 'docker')}echo 'Docker version {version}, build 1a2b3c4'\n",
    )


def ctk_stub(node: Path, version: str, path: Path | None = None) -> None:
    """nvidia-ctk: --version, and `runtime configure` editing daemon.json as the real one does."""
    executable(
        path or node / "bin" / "nvidia-ctk",
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"os.makedirs({str(node / 'calls')!r}, exist_ok=True)\n"
        f"with open({str(node / 'calls' / 'nvidia-ctk.log')!r}, 'a') as log:\n"
        "    log.write(' '.join(sys.argv[1:]) + '\\n')\n"
        "if sys.argv[1:] == ['--version']:\n"
        f"    print('NVIDIA Container Toolkit CLI version {version}')\n"
        "    print('commit: 0123456789abcdef0123456789abcdef01234567')\n"
        "    sys.exit(0)\n"
        "args = sys.argv[1:]\n"
        "assert args[:3] == ['runtime', 'configure', '--runtime=docker'], args\n"
        "path = [a.split('=', 1)[1] for a in args if a.startswith('--config=')][0]\n"
        "config = json.load(open(path)) if os.path.exists(path) else {}\n"
        "config.setdefault('runtimes', {})['nvidia'] = "
        "{'args': [], 'path': 'nvidia-container-runtime'}\n"
        "if '--set-as-default' in args:\n"
        "    config['default-runtime'] = 'nvidia'\n"
        "with open(path, 'w') as out:\n"
        "    json.dump(config, out, indent=4)\n",
    )


def make_node(
    node: Path,
    gpu_device: bool = False,
    nvidia_smi: bool = False,
    docker: str | None = None,
    ctk: str | None = None,
    daemon: dict | None = None,
    service: tuple[bool, bool] = (False, False),
) -> dict:
    """A fake node; returns the role's internal variables that point at it.

    ``docker`` / ``ctk``: the versions already installed (None: missing). The stand-in package
    managers install what the packages would: docker-ce (or Amazon Linux's docker) brings a
    ``docker`` that answers 28.5.2 (or 25.0.8), nvidia-container-toolkit brings ``nvidia-ctk``
    1.18.2. ``service``: Docker enabled, running.
    """
    bin_dir, state = node / "bin", node / "state"
    state.mkdir(parents=True, exist_ok=True)
    (node / "dev").mkdir(parents=True, exist_ok=True)
    if gpu_device:
        (node / "dev" / "nvidia0").write_text("")
    if nvidia_smi:
        executable(
            bin_dir / "nvidia-smi",
            "#!/bin/sh\n"
            + log_call(node, "nvidia-smi")
            + "echo 'GPU 0: NVIDIA H100 80GB HBM3"
            + " (UUID: GPU-5b1c6a2e-0000-0000-0000-000000000000)'\n",
        )
    if docker:
        docker_stub(node, docker)
    if ctk:
        ctk_stub(node, ctk)
    if daemon is not None:
        (node / "etc/docker").mkdir(parents=True, exist_ok=True)
        (node / "etc/docker/daemon.json").write_text(json.dumps(daemon, indent=4))
    if service[0]:
        (state / "enabled").write_text("")
    if service[1]:
        (state / "active").write_text("")

    installer = (
        'for p in "$@"; do case "$p" in\n'
        "  docker-ce=*|docker-ce-3:*) docker_v=28.5.2 ;;\n"
        "  docker-2*) docker_v=25.0.8 ;;\n"
        "  nvidia-container-toolkit=*|nvidia-container-toolkit-1*) ctk=1 ;;\n"
        "esac; done\n"
        f'[ -n "$docker_v" ] && cp {node}/state/docker-$docker_v {bin_dir}/docker\n'
        f'[ -n "$ctk" ] && cp {node}/state/nvidia-ctk {bin_dir}/nvidia-ctk\n'
        "exit 0\n"
    )
    # What the packages would install, ready to be copied into bin/.
    for v in ("28.5.2", "25.0.8"):
        docker_stub(node, v, state / f"docker-{v}")
    ctk_stub(node, "1.18.2", state / "nvidia-ctk")
    executable(
        bin_dir / "apt-get",
        f'#!/bin/sh\n{log_call(node, "apt-get")}[ "$1" = "install" ] || exit 0\n{installer}',
    )
    executable(
        bin_dir / "dnf",
        f'#!/bin/sh\n{log_call(node, "dnf")}[ "$1" = "install" ] || exit 0\n{installer}',
    )
    executable(
        bin_dir / "systemctl",
        "#!/bin/sh\n"
        + log_call(node, "systemctl")
        + 'case "$1" in\n'
        + "  show) echo Id=docker.service; echo LoadState=loaded;"
        + f" if [ -f {state}/active ]; then echo ActiveState=active; echo SubState=running;"
        + " else echo ActiveState=inactive; echo SubState=dead; fi ;;\n"
        + f"  is-enabled) if [ -f {state}/enabled ]; then echo enabled;"
        + " else echo disabled; exit 1; fi ;;\n"
        + f"  enable) : > {state}/enabled ;;\n"
        + f"  start|restart) : > {state}/active ;;\n"
        + "esac\n",
    )
    return {
        "__nvidia_container_dev_root": str(node / "dev"),
        "__nvidia_container_apt_sources_dir": str(node / "etc/apt/sources.list.d"),
        "__nvidia_container_apt_keyring_dir": str(node / "etc/apt/keyrings"),
        "__nvidia_container_yum_repos_dir": str(node / "etc/yum.repos.d"),
        "__nvidia_container_rpm_gpg_dir": str(node / "etc/pki/rpm-gpg"),
        "nvidia_container_docker_daemon_json": str(node / "etc/docker/daemon.json"),
        "nvidia_container_cache_dir": str(node / "cache"),
        "stub_path": f"{bin_dir}:/usr/bin:/bin",
    }
