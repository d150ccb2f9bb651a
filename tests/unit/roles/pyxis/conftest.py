"""Helpers for the pyxis role's tests: fake node trees, stubs and stand-in sources.

Every path the role touches is a role variable, so a fake node is a directory under tmp_path that
holds what a ParallelCluster node holds at the same relative paths (``opt/slurm``,
``usr/bin/enroot``, ``usr/local/lib/slurm/spank_pyxis.so``, ``etc/enroot``, ``scratch``, ``fsx``)
and ``node_vars``
points the role at it. Stand-ins: an enroot script that carries only its version line, a plugin
file, an ``srun`` that follows plugstack.conf the way Slurm does, a package tool, a systemctl, a
Pyxis git repository and enroot package files (with their real sha256).
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

from ..harness import ROOT, executable

FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "pyxis"

ENROOT_VERSION = "4.2.1"
PYXIS_VERSION = "0.24.0"
PLUGIN = "usr/local/lib/slurm/spank_pyxis.so"

# A stand-in srun: reads <prefix>/etc/plugstack.conf the way Slurm's spank loader does (comments,
# `include` globs relative to the including file, `required`/`optional` plugins), fails like Slurm
# when a required plugin cannot be loaded or Pyxis is listed twice, and prints the recorded help
# with Pyxis' options only when the plugin was loaded.
SRUN = """\
import glob
import os
import sys

PREFIX = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = {fixtures!r}


def load(path):
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] == "include":
            pattern = words[1]
            if not pattern.startswith("/"):
                pattern = os.path.join(os.path.dirname(path), pattern)
            for name in sorted(glob.glob(pattern)):
                found += load(name)
        elif words[0] in ("required", "optional"):
            found.append((words[0], words[1], path, number))
    return found


plugins = load(os.path.join(PREFIX, "etc", "plugstack.conf"))
loaded = []
for kind, plugin, path, number in plugins:
    if not os.path.isfile(plugin):
        if kind == "required":
            message = "srun: error: spank: %s:%d: Failed to load plugin %s. Aborting.\\n"
            sys.stderr.write(message % (path, number, plugin))
            sys.exit(1)
        continue
    if os.path.basename(plugin) in loaded:
        sys.stderr.write("srun: error: spank: %s:%d: %s loaded twice\\n" % (path, number, plugin))
        sys.exit(1)
    loaded.append(os.path.basename(plugin))
name = "srun_help_pyxis.txt" if "spank_pyxis.so" in loaded else "srun_help_plain.txt"
with open(os.path.join(FIXTURES, name)) as handle:
    sys.stdout.write(handle.read())
"""


def enroot_script(version: str = ENROOT_VERSION) -> str:
    """What the role reads from /usr/bin/enroot: the version line the package's build writes."""
    return f'#! /usr/bin/env bash\nset -euo pipefail\nexport ENROOT_VERSION="{version}"\n'


def make_node(
    base: Path,
    *,
    enroot: str | None = ENROOT_VERSION,
    plugin: bool = True,
    slurm: bool = True,
    fsx: bool = True,
    plugstack: str | None = None,
    pyxis_conf: str | None = None,
) -> Path:
    """A fake node under ``base``: an official ParallelCluster AMI by default (enroot and Pyxis
    installed but disabled, the AMI's example files in /opt/parallelcluster/examples)."""
    base.mkdir(parents=True)
    if slurm:
        (base / "opt/slurm/etc").mkdir(parents=True)
        (base / "opt/slurm/include/slurm").mkdir(parents=True)
        (base / "opt/slurm/include/slurm/spank.h").write_text("/* stand-in */\n")
        executable(
            base / "opt/slurm/bin/srun",
            f"#!{sys.executable}\n" + SRUN.format(fixtures=str(FIXTURES)),
        )
    if enroot is not None:
        executable(base / "usr/bin/enroot", enroot_script(enroot))
        for sub in ("hooks.d", "mounts.d", "environ.d"):
            (base / "etc/enroot" / sub).mkdir(parents=True, exist_ok=True)
        (base / "etc/enroot/enroot.conf").write_text("# as the package ships it\n")
    if plugin:
        (base / PLUGIN).parent.mkdir(parents=True)
        (base / PLUGIN).write_bytes(b"\x7fELF stand-in spank_pyxis.so\n")
        examples = base / "opt/parallelcluster/examples"
        (examples / "spank").mkdir(parents=True)
        (examples / "pyxis").mkdir(parents=True)
        (examples / "spank/plugstack.conf").write_text(
            (FIXTURES / "parallelcluster_examples_plugstack.conf").read_text()
        )
        (examples / "pyxis/pyxis.conf").write_text(
            (FIXTURES / "parallelcluster_examples_pyxis.conf").read_text()
        )
    if fsx:
        (base / "fsx").mkdir()
    (base / "scratch").mkdir()
    if plugstack is not None:
        text = (FIXTURES / plugstack).read_text()
        text = text.replace("@PLUGSTACK_DIR@", str(base / "opt/slurm/etc/plugstack.conf.d"))
        text = text.replace("/usr/local/lib/slurm/", str(base / "usr/local/lib/slurm") + "/")
        (base / "opt/slurm/etc/plugstack.conf").write_text(text)
    if pyxis_conf is not None:
        (base / "opt/slurm/etc/plugstack.conf.d").mkdir(parents=True)
        (base / "opt/slurm/etc/plugstack.conf.d/pyxis.conf").write_text(pyxis_conf)
    return base


def node_vars(base: Path, *, mounted: bool = False) -> dict:
    """Role variables pointing at the fake node. ``mounted``: treat the node's NVMe as mounted
    (the detection probes ``/``, which is a mount point, while the storage stays under ``base``)."""
    return {
        "pyxis_slurm_prefix": str(base / "opt/slurm"),
        "pyxis_plugin_dir": str(base / "usr/local/lib/slurm"),
        "pyxis_enroot_bin": str(base / "usr/bin/enroot"),
        "pyxis_enroot_sysconf_dir": str(base / "etc/enroot"),
        "pyxis_cache_dir": str(base / "var/cache/xpu-pyxis"),
        "pyxis_local_storage_mount": "/" if mounted else str(base / "scratch"),
        "pyxis_enroot_local_dir": str(base / "scratch/enroot"),
        "pyxis_enroot_fallback_dir": str(base / "var/tmp/enroot"),
        "pyxis_enroot_fsx_mount": str(base / "fsx"),
        "pyxis_enroot_prerequisites": [],
        "pyxis_build_prerequisites": [],
        "__pyxis_state_dir": str(base / "var/lib/xpu-pyxis"),
    }


def make_systemctl(base: Path, answer: str) -> str:
    """A systemctl that answers ``is-enabled`` with ``answer`` (exit 0 only for "enabled")."""
    code = 0 if answer == "enabled" else 1
    return str(
        executable(
            base / "stub/systemctl",
            f'#!/bin/sh\n[ "$1" = is-enabled ] || exit 2\necho {answer}\nexit {code}\n',
        )
    )


def make_package_tool(base: Path) -> list[str]:
    """A package tool standing in for `apt-get install -y`: logs its arguments to install.log and
    installs what the enroot packages would (the enroot script and /etc/enroot)."""
    tool = executable(
        base / "stub/apt-get",
        "#!/bin/sh\nset -eu\n"
        f'echo "$*" >> {base}/install.log\n'
        f"mkdir -p {base}/usr/bin {base}/etc/enroot/hooks.d {base}/etc/enroot/mounts.d\n"
        f"cat > {base}/usr/bin/enroot <<'EOF'\n{enroot_script()}EOF\n"
        f"chmod 0755 {base}/usr/bin/enroot\n",
    )
    return [str(tool), "install", "-y"]


def enroot_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def make_enroot_packages(dist: Path) -> dict[str, str]:
    """Stand-in enroot .deb files named as the release names them; returns name -> sha256."""
    dist.mkdir(parents=True, exist_ok=True)
    sums = {}
    for name in (
        f"enroot_{ENROOT_VERSION}-1_{enroot_arch()}.deb",
        f"enroot+caps_{ENROOT_VERSION}-1_{enroot_arch()}.deb",
    ):
        data = f"stand-in {name}\n".encode()
        (dist / name).write_bytes(data)
        sums[name] = hashlib.sha256(data).hexdigest()
    return sums


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=True
    )
    return proc.stdout.strip()


def make_pyxis_repo(repo: Path) -> tuple[str, str]:
    """A stand-in Pyxis repository: tag v<PYXIS_VERSION> on a commit whose Makefile builds
    spank_pyxis.so only when CPPFLAGS names a directory holding slurm/spank.h, then one more
    commit on top. Returns (tagged commit, later commit)."""
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    (repo / "Makefile").write_text(
        "SLURM_INCLUDE := $(patsubst -I%,%,$(filter -I%,$(CPPFLAGS)))\n"
        "spank_pyxis.so:\n"
        "\ttest -f $(SLURM_INCLUDE)/slurm/spank.h\n"
        f"\tprintf 'stand-in pyxis {PYXIS_VERSION} built with %s\\n' '$(CPPFLAGS)' > $@\n"
    )
    _git(repo, "add", "Makefile")
    _git(repo, "commit", "-q", "-m", f"Release v{PYXIS_VERSION}")
    _git(repo, "tag", f"v{PYXIS_VERSION}")
    tagged = _git(repo, "rev-parse", "HEAD")
    (repo / "NEWS").write_text("work after the release\n")
    _git(repo, "add", "NEWS")
    _git(repo, "commit", "-q", "-m", "after the release")
    return tagged, _git(repo, "rev-parse", "HEAD")
