#!/usr/bin/env python3
# Copyright: xpu.parallelcluster contributors
# Apache License 2.0 (see LICENSE)
"""Report the running kernel, its Lustre client module and the node's mounts as JSON.

Run by the ``fsx_lustre`` role on the target with ``ansible.builtin.script`` (read only: it runs
``uname -r`` and ``modinfo -F vermagic lustre``, walks the kernel module tree and reads
``/proc/self/mountinfo``; it changes nothing). Standard library only, Python 3.8+, because it runs
with the node's own interpreter.

It never looks inside a mount point: a broken Lustre mount hangs every process that stats it,
whereas ``/proc/self/mountinfo`` is answered by the kernel from its mount table.

Module states:

- ``present``: ``modinfo`` finds a lustre module built for the running kernel, or a module file
  is in the running kernel's tree (``weak-updates`` links count where the OS family keeps kABI
  compatible modules there, as RHEL's kmod packages do);
- ``mismatch``: the module found was built for another kernel, or only other kernels' trees
  have one (the kernel moved on without its module, for example after an unattended upgrade);
- ``missing``: no lustre module anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

MODULE_FILE_RE = re.compile(r"^lustre\.ko(\.(xz|zst|gz))?$")
OCTAL_ESCAPE_RE = re.compile(r"\\([0-7]{3})")
COMMAND_TIMEOUT = 30
ANY_TYPE = "any"


def unescape(field: str) -> str:
    """Undo the octal escapes mountinfo uses for space, tab, newline and backslash."""
    return OCTAL_ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> tuple[list[dict], list[str]]:
    """Mounts of a mountinfo text, in order, and the lines that could not be parsed.

    A line is ``id parent major:minor root mount_point options [optional fields...] - fstype
    source super_options``; the optional fields vary in number, so the ``-`` separator is
    searched for after the sixth field.
    """
    mounts: list[dict] = []
    ignored: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split()
        try:
            separator = fields.index("-", 6)
        except ValueError:
            ignored.append(line)
            continue
        if len(fields) < separator + 2:
            ignored.append(line)
            continue
        mounts.append(
            {
                "mount_dir": unescape(fields[4]),
                "fs_type": fields[separator + 1],
                "source": unescape(fields[separator + 2]) if len(fields) > separator + 2 else "",
            }
        )
    return mounts, ignored


def normalise(path: str) -> str:
    return os.path.normpath(path) if path else path


def check_expected(mounts: list[dict], expected: list[dict], where: str) -> list[dict]:
    """One verdict per expected mount. The last mount on a directory is the one in effect."""
    visible: dict[str, dict] = {}
    for mount in mounts:
        visible[normalise(mount["mount_dir"])] = mount
    verdicts = []
    for item in expected:
        mount_dir = normalise(str(item.get("mount_dir", "")))
        wanted = str(item.get("fs_type", "lustre"))
        found = visible.get(mount_dir)
        verdict = {
            "mount_dir": mount_dir,
            "fs_type": wanted,
            "found_type": found["fs_type"] if found else None,
            "source": found["source"] if found else None,
            "ok": False,
            "problem": None,
        }
        if found is None:
            verdict["problem"] = f"{mount_dir} is not mounted (no entry in {where})"
        elif wanted != ANY_TYPE and found["fs_type"] != wanted:
            verdict["problem"] = (
                f"{mount_dir} is mounted as {found['fs_type']} from {found['source'] or '?'}, "
                f"expected {wanted}"
            )
        else:
            verdict["ok"] = True
        verdicts.append(verdict)
    return verdicts


def run(argv: list[str]) -> tuple[str | None, str | None]:
    """(stdout, None) when the command succeeds, else (None, why)."""
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{argv[0]}: {exc}"
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip().splitlines()
        return None, f"{' '.join(argv)} exited {proc.returncode}" + (f": {why[-1]}" if why else "")
    return proc.stdout, None


def module_files(modules_root: str, kernel: str) -> list[str]:
    """Every lustre.ko[.xz|.zst|.gz] under <modules_root>/<kernel>, symlinks included."""
    base = os.path.join(modules_root, kernel)
    found = []
    for directory, _dirs, files in os.walk(base):
        found.extend(os.path.join(directory, f) for f in files if MODULE_FILE_RE.match(f))
    return sorted(found)


def kernels_with_module(modules_root: str) -> list[str]:
    try:
        kernels = sorted(os.listdir(modules_root))
    except OSError:
        return []
    return [k for k in kernels if module_files(modules_root, k)]


def module_state(
    kernel: str | None,
    vermagic_kernel: str | None,
    running_files: list[str],
    other_kernels: list[str],
    weak_modules: bool,
) -> tuple[str, str]:
    """(present | missing | mismatch, why)."""
    if not kernel:
        return "missing", "the running kernel is unknown"
    weak = [f for f in running_files if "/weak-updates/" in f]
    if vermagic_kernel == kernel:
        return "present", f"modinfo: lustre module built for {kernel}"
    if vermagic_kernel:
        if weak_modules and weak:
            return "present", (
                f"lustre module built for {vermagic_kernel}, linked for {kernel} as a kABI "
                f"compatible weak module ({weak[0]})"
            )
        return "mismatch", (
            f"modinfo reports a lustre module built for {vermagic_kernel}, "
            f"but the running kernel is {kernel}"
        )
    if running_files:
        return "present", f"module file {running_files[0]}"
    if other_kernels:
        return "mismatch", (
            f"a lustre module is installed only for {', '.join(other_kernels)}, "
            f"but the running kernel is {kernel}"
        )
    return "missing", f"no lustre module for {kernel}"


def probe(args: argparse.Namespace) -> dict:
    kernel_out, kernel_error = run([args.uname, "-r"])
    kernel = kernel_out.strip() if kernel_out else None
    vermagic, modinfo_error = run([args.modinfo, "-F", "vermagic", "lustre"])
    vermagic = (vermagic or "").strip() or None
    vermagic_kernel = vermagic.split()[0] if vermagic else None
    running_files = module_files(args.modules_root, kernel) if kernel else []
    other_kernels = [k for k in kernels_with_module(args.modules_root) if k != kernel]
    state, why = module_state(
        kernel, vermagic_kernel, running_files, other_kernels, args.weak_modules
    )
    try:
        with open(args.mountinfo, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        mountinfo_error = None
    except OSError as exc:
        text, mountinfo_error = "", f"{args.mountinfo}: {exc.strerror}"
    mounts, ignored = parse_mountinfo(text)
    expected = json.loads(args.expected) if args.expected else []
    return {
        "kernel": kernel,
        "kernel_error": kernel_error,
        "modinfo_vermagic": vermagic,
        "modinfo_kernel": vermagic_kernel,
        "modinfo_error": modinfo_error,
        "module_files": running_files,
        "other_kernels_with_module": other_kernels,
        "module_state": state,
        "module_detail": why,
        "modules_root": args.modules_root,
        "mountinfo": args.mountinfo,
        "mountinfo_error": mountinfo_error,
        "mountinfo_ignored_lines": ignored,
        "lustre_mounts": [m for m in mounts if m["fs_type"] == "lustre"],
        "expected_mounts": check_expected(mounts, expected, args.mountinfo),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mountinfo", default="/proc/self/mountinfo")
    parser.add_argument("--modules-root", default="/lib/modules")
    parser.add_argument("--uname", default="uname")
    parser.add_argument("--modinfo", default="modinfo")
    parser.add_argument("--expected", default="[]", help="JSON list of {mount_dir, fs_type}")
    parser.add_argument(
        "--weak-modules",
        action="store_true",
        help="accept kABI-compatible modules linked under weak-updates/ (RHEL kmod packages)",
    )
    json.dump(probe(parser.parse_args(argv)), sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
