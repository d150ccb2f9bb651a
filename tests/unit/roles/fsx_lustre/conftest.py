"""Helpers for the fsx_lustre role's tests: fake nodes (module trees, mountinfo) and stand-ins.

Each fake node is a directory under tmp_path with ``bin/`` (stand-ins for ``uname``, ``modinfo``,
``apt-get``, ``apt-mark``, ``dnf`` and ``lctl`` that record their arguments in ``calls/<name>.log``
and keep their state in ``state/``), ``lib/modules/`` and a mountinfo file. The role sees them
through its internal variables and a per-host PATH.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from ..harness import ROOT, executable, load_script, log_call

ROLE = ROOT / "roles" / "fsx_lustre"
SCRIPT = ROLE / "files" / "fsx_lustre_probe.py"
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "fsx_lustre"

# A test key pair's public half and its fingerprint (fixtures/README.md).
KEY = FIXTURES / "repo-key.asc"
KEY_FINGERPRINT = "2B4E13E449C99C1CDC6B91889CF81AC29C912B4B"
OTHER_KEY = ROOT / "tests" / "unit" / "fixtures" / "nvidia_container" / "repo-key-b.asc"


def load_probe() -> ModuleType:
    """roles/fsx_lustre/files/fsx_lustre_probe.py as a module."""
    return load_script(SCRIPT, "fsx_lustre_probe")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def install_module(modules: Path, kernel: str, subdir: str = "updates/fs/lustre") -> Path:
    """A lustre.ko in <modules>/<kernel>/<subdir>, as a module package leaves it."""
    target = modules / kernel / subdir / "lustre.ko"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"\x7fELF stand-in")
    return target


def make_node(
    node: Path,
    kernel: str,
    vermagic: str | None = None,
    module_kernels: tuple[str, ...] = (),
    mountinfo: str = "mountinfo_compute_ubuntu",
    lctl: dict[str, list[str]] | None = None,
) -> dict:
    """A fake node; returns the role's internal variables that point at it.

    ``vermagic``: what ``modinfo -F vermagic lustre`` prints (None: module not found);
    ``module_kernels``: kernels whose module tree already holds lustre.ko. The stand-in package
    managers install what the real packages would: apt-get's lustre-client-modules-<kernel> puts
    the module in that kernel's tree; dnf's lustre-client (Amazon Linux) puts it in the running
    kernel's tree, and kmod-lustre-client (RHEL) builds it for an older kernel of the same kABI
    and links it under the running kernel's weak-updates/.
    """
    bin_dir, state, modules = node / "bin", node / "state", node / "lib" / "modules"
    state.mkdir(parents=True, exist_ok=True)
    modules.mkdir(parents=True, exist_ok=True)
    for k in module_kernels:
        install_module(modules, k)
    if vermagic is not None:
        (state / "vermagic").write_text(vermagic + "\n")
    (node / "mountinfo").write_text(fixture(mountinfo))
    for name, values in (lctl or {}).items():
        (state / f"lctl-{name}").write_text("".join(v + "\n" for v in values))

    executable(
        bin_dir / "uname",
        # Anything but -r (fact gathering asks for more) is the real uname's answer.
        f'#!/bin/sh\n{log_call(node, "uname")}[ "$1" = "-r" ] && echo {kernel} && exit 0\n'
        'exec /usr/bin/uname "$@"\n',
    )
    executable(
        bin_dir / "modinfo",
        "#!/bin/sh\n"
        + log_call(node, "modinfo")
        + f"if [ -f {state}/vermagic ]; then cat {state}/vermagic; exit 0; fi\n"
        + 'echo "modinfo: ERROR: Module lustre not found." >&2\nexit 1\n',
    )
    executable(
        bin_dir / "apt-get",
        "#!/bin/sh\n"
        + log_call(node, "apt-get")
        + '[ "$1" = "install" ] || exit 0\n'
        + 'for p in "$@"; do case "$p" in\n'
        + "  lustre-client-modules-aws) ;;\n"
        + "  lustre-client-modules-*) k=${p#lustre-client-modules-};"
        + f" mkdir -p {modules}/$k/updates/fs/lustre; : > {modules}/$k/updates/fs/lustre/lustre.ko;"
        + f' echo "$k SMP mod_unload modversions" > {state}/vermagic ;;\n'
        + "esac; done\n",
    )
    executable(
        bin_dir / "apt-mark",
        "#!/bin/sh\n"
        + log_call(node, "apt-mark")
        + f'case "$1" in showhold) cat {state}/holds 2>/dev/null || true ;;\n'
        + f'  hold) shift; for p in "$@"; do echo "$p" >> {state}/holds; done ;; esac\n',
    )
    base = kernel.split("-")[0] + "-0.el9.x86_64"
    executable(
        bin_dir / "dnf",
        "#!/bin/sh\n"
        + log_call(node, "dnf")
        + '[ "$1" = "-q" ] && shift\n'
        + 'if [ "$1" = "versionlock" ]; then case "$2" in\n'
        + f"  list) cat {state}/versionlock 2>/dev/null || true ;;\n"
        + '  add) shift 2; for p in "$@"; do'
        + f' echo "$p-0:{kernel}.*" >> {state}/versionlock; done ;;\n'
        + "esac; exit 0; fi\n"
        + '[ "$1" = "install" ] || exit 0\n'
        + 'case " $* " in\n'
        + f"  *' kmod-lustre-client '*) mkdir -p {modules}/{base}/extra/lustre-client/fs"
        + f" {modules}/{kernel}/weak-updates/lustre-client/fs;"
        + f" : > {modules}/{base}/extra/lustre-client/fs/lustre.ko;"
        + f" ln -sf {modules}/{base}/extra/lustre-client/fs/lustre.ko"
        + f" {modules}/{kernel}/weak-updates/lustre-client/fs/lustre.ko;"
        + f' echo "{base} SMP mod_unload modversions" > {state}/vermagic ;;\n'
        + f"  *' lustre-client '*) mkdir -p {modules}/{kernel}/kernel/fs/lustre;"
        + f" : > {modules}/{kernel}/kernel/fs/lustre/lustre.ko.xz;"
        + f' echo "{kernel} SMP mod_unload modversions" > {state}/vermagic ;;\n'
        + "esac\n",
    )
    executable(
        bin_dir / "lctl",
        "#!/bin/sh\n"
        + log_call(node, "lctl")
        + 'key() { echo "$1" | tr "*" "_"; }\n'
        + 'case "$1" in\n'
        + f'  get_param) f={state}/lctl-$(key "$3"); [ -f "$f" ] || exit 2; cat "$f" ;;\n'
        + "  set_param) name=${2%%=*}; value=${2#*=};"
        + f' f={state}/lctl-$(key "$name"); n=$(wc -l < "$f");'
        + ' : > "$f"; i=0; while [ $i -lt $n ]; do echo "$value" >> "$f"; i=$((i+1)); done ;;\n'
        + "esac\n",
    )
    return {
        "__fsx_lustre_mountinfo": str(node / "mountinfo"),
        "__fsx_lustre_modules_root": str(modules),
        "__fsx_lustre_apt_sources_dir": str(node / "etc/apt/sources.list.d"),
        "__fsx_lustre_apt_keyring_dir": str(node / "etc/apt/keyrings"),
        "__fsx_lustre_yum_repos_dir": str(node / "etc/yum.repos.d"),
        "__fsx_lustre_rpm_gpg_dir": str(node / "etc/pki/rpm-gpg"),
        "fsx_lustre_cache_dir": str(node / "cache"),
        "stub_path": f"{bin_dir}:/usr/bin:/bin",
    }
