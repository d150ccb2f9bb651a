"""roles/fsx_lustre/files/fsx_lustre_probe.py on recorded mountinfo and fake module trees (fast)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import SCRIPT, fixture, install_module, load_probe, make_node

probe = load_probe()
KERNEL = "6.8.0-1021-aws"


def test_mountinfo_mounts_types_and_sources() -> None:
    mounts, ignored = probe.parse_mountinfo(fixture("mountinfo_compute_ubuntu"))
    by_dir = {m["mount_dir"]: m for m in mounts}
    assert by_dir["/fsx"] == {
        "mount_dir": "/fsx",
        "fs_type": "lustre",
        "source": "10.0.0.71@tcp:/abcdefgh",
    }
    assert by_dir["/home"]["fs_type"] == "nfs4"
    # Octal escapes undone; two optional fields (shared:, master:) skipped.
    assert by_dir["/mnt/team data"]["fs_type"] == "lustre"
    # The free-text line and the truncated entry are ignored, the blank line silently.
    assert ignored == [
        "this line is not a mount entry",
        "731 28 0:58 / /mnt/truncated rw,relatime shared:400 -",
    ]


def test_the_last_mount_on_a_directory_is_the_one_in_effect() -> None:
    text = (
        "701 28 0:55 / /fsx rw shared:1 - lustre 10.0.0.71@tcp:/abc rw\n"
        "702 701 0:56 / /fsx rw shared:2 - tmpfs tmpfs rw\n"
    )
    mounts, _ = probe.parse_mountinfo(text)
    (verdict,) = probe.check_expected(mounts, [{"mount_dir": "/fsx/"}], "mi")
    assert verdict["ok"] is False
    assert verdict["problem"] == "/fsx is mounted as tmpfs from tmpfs, expected lustre"


@pytest.mark.parametrize(
    ("expected", "ok", "problem"),
    [
        ({"mount_dir": "/fsx", "fs_type": "lustre"}, True, None),
        ({"mount_dir": "/home", "fs_type": "lustre"}, False, "/home is mounted as nfs4"),
        ({"mount_dir": "/home", "fs_type": "any"}, True, None),
        ({"mount_dir": "/data", "fs_type": "any"}, False, "/data is not mounted (no entry in mi)"),
    ],
)
def test_expected_mount_verdicts(expected: dict, ok: bool, problem: str | None) -> None:
    mounts, _ = probe.parse_mountinfo(fixture("mountinfo_compute_ubuntu"))
    (verdict,) = probe.check_expected(mounts, [expected], "mi")
    assert verdict["ok"] is ok
    assert (verdict["problem"] or "").startswith(problem or "")


@pytest.mark.parametrize(
    ("vermagic", "running", "others", "weak", "state", "detail"),
    [
        (KERNEL, [], [], False, "present", "built for " + KERNEL),
        ("6.8.0-1015-aws", [], [], False, "mismatch", "built for 6.8.0-1015-aws, but the running"),
        ("5.14.0-427", ["/m/k/weak-updates/lustre.ko"], [], True, "present", "kABI compatible"),
        ("5.14.0-427", ["/m/k/weak-updates/lustre.ko"], [], False, "mismatch", "built for 5.14"),
        (None, ["/m/k/updates/lustre.ko"], [], False, "present", "module file"),
        (None, [], ["6.8.0-1015-aws"], False, "mismatch", "only for 6.8.0-1015-aws"),
        (None, [], [], False, "missing", "no lustre module"),
    ],
)
def test_module_states(vermagic, running, others, weak, state, detail) -> None:
    got, why = probe.module_state(KERNEL, vermagic, running, others, weak)
    assert got == state and detail in why


def test_unknown_kernel_is_missing() -> None:
    assert probe.module_state(None, None, [], [], False)[0] == "missing"


def test_script_reports_json_with_stub_commands(tmp_path: Path) -> None:
    """The script as the role runs it: stand-in uname/modinfo, module only for an older kernel."""
    node = tmp_path / "node"
    make_node(node, KERNEL, module_kernels=("6.8.0-1015-aws",))
    install_module(node / "lib/modules", "6.8.0-1015-aws", "kernel/fs/lustre")
    out = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--mountinfo",
            str(node / "mountinfo"),
            "--modules-root",
            str(node / "lib/modules"),
            "--uname",
            str(node / "bin/uname"),
            "--modinfo",
            str(node / "bin/modinfo"),
            "--expected",
            json.dumps([{"mount_dir": "/fsx", "fs_type": "lustre"}]),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(out.stdout)
    assert report["kernel"] == KERNEL
    assert report["module_state"] == "mismatch"
    assert report["other_kernels_with_module"] == ["6.8.0-1015-aws"]
    assert report["modinfo_error"].endswith("Module lustre not found.")
    assert [m["mount_dir"] for m in report["lustre_mounts"]] == ["/fsx", "/mnt/team data"]
    assert report["expected_mounts"][0]["ok"] is True
    assert len(report["mountinfo_ignored_lines"]) == 2


def test_script_survives_a_missing_mountinfo_and_commands(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--mountinfo",
            str(tmp_path / "nope"),
            "--modules-root",
            str(tmp_path / "none"),
            "--uname",
            str(tmp_path / "no-uname"),
            "--modinfo",
            str(tmp_path / "no-modinfo"),
            "--expected",
            '[{"mount_dir": "/fsx"}]',
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(out.stdout)
    assert report["kernel"] is None and report["module_state"] == "missing"
    assert "No such file" in report["mountinfo_error"]
    assert report["expected_mounts"][0]["problem"].startswith("/fsx is not mounted")
