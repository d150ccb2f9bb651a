"""roles/efa/files/efa_detect.py: what counts as an EFA device, domain and installer version."""

from __future__ import annotations

import json

import pytest

from .conftest import fixture, fixture_domains, load_detect, make_fi_info, make_sysfs

detect = load_detect()


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("fi_info_p4d_libfabric1.txt", 4),
        ("fi_info_p5_libfabric1.txt", 32),
        ("fi_info_p5en_libfabric2.txt", 16),
        ("fi_info_p6-b200_libfabric2.txt", 8),
        ("fi_info_single_all_types.txt", 1),
        ("fi_info_no_provider.txt", 0),
    ],
)
def test_one_domain_per_interface(name: str, count: int) -> None:
    entries = detect.parse_fi_info(fixture(name))
    domains = detect.efa_rdm_domains(entries)
    assert len(domains) == count
    assert all(d.endswith("-rdm") for d in domains)


def test_libfabric2_lists_each_domain_under_both_fabrics() -> None:
    entries = detect.parse_fi_info(fixture("fi_info_p5en_libfabric2.txt"))
    assert len(entries) == 32
    assert {e["fabric"] for e in entries} == {"efa", "efa-direct"}
    assert len(detect.efa_rdm_domains(entries)) == 16


def test_dgram_and_other_providers_do_not_count() -> None:
    text = fixture("fi_info_single_all_types.txt") + (
        "provider: tcp\n    fabric: 10.0.0.0/24\n    domain: eth0\n    type: FI_EP_RDM\n"
        "provider: efa;ofi_rxd\n    fabric: efa\n    domain: rdmap0s6-dgrm\n    type: FI_EP_RDM\n"
    )
    assert detect.efa_rdm_domains(detect.parse_fi_info(text)) == ["rdmap0s6-rdm"]


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("efa_installed_packages_1.22.0", "1.22.0"),
        ("efa_installed_packages_1.41.0", "1.41.0"),
    ],
)
def test_installer_version_from_installed_packages(name: str, version: str) -> None:
    assert detect.parse_installer_version(fixture(name)) == version


@pytest.mark.parametrize("text", ["", "garbage\n", "# Debug packages installed: no\n"])
def test_installer_version_absent(text: str) -> None:
    assert detect.parse_installer_version(text) is None


@pytest.mark.parametrize(
    ("name", "version"),
    [("fi_info_version_1.22.txt", "1.22.0amzn1.0"), ("fi_info_version_2.1.txt", "2.1.0amzn3.0")],
)
def test_libfabric_version(name: str, version: str) -> None:
    assert detect.parse_libfabric_version(fixture(name)) == version


@pytest.mark.parametrize(
    ("efa", "instance_type"),
    [
        (0, "c6i.xlarge"),
        (1, "c5n.18xlarge"),
        (8, "p6-b200.48xlarge"),
        (16, "p5en.48xlarge"),
        (32, "p5.48xlarge"),
    ],
)
def test_sysfs_counts_amazon_devices_only(tmp_path, efa: int, instance_type: str) -> None:
    root = make_sysfs(tmp_path / "sys", efa=efa, mellanox=2, product_name=instance_type)
    found = detect.detect(str(root), str(tmp_path / "absent" / "fi_info-absent"), "/nonexistent")
    assert found["device_count"] == efa
    assert len(found["devices"]) == efa
    assert found["other_rdma_devices"] == ["mlx5_0", "mlx5_1"]
    assert found["dmi_instance_type"] == instance_type
    assert found["inactive_devices"] == []


def test_mellanox_only_host_has_no_efa(tmp_path) -> None:
    root = make_sysfs(tmp_path / "sys", efa=0, mellanox=4)
    found = detect.detect(str(root), "/nonexistent/fi_info-absent", "/nonexistent")
    assert found["device_count"] == 0
    assert len(found["other_rdma_devices"]) == 4


def test_no_infiniband_class_at_all(tmp_path) -> None:
    (tmp_path / "sys").mkdir()
    found = detect.detect(str(tmp_path / "sys"), "/nonexistent/fi_info-absent", "/nonexistent")
    assert found["device_count"] == 0 and found["other_rdma_devices"] == []
    assert found["fi_info"] is None
    assert "fi_info not found" in found["fi_info_error"]
    assert found["installer_version"] is None


def test_down_ports_and_kernel_module_version(tmp_path) -> None:
    root = make_sysfs(tmp_path / "sys", efa=4, inactive=1, kmod_version="2.15.0g")
    found = detect.detect(str(root), "/nonexistent/fi_info-absent", "/nonexistent")
    assert found["inactive_devices"] == ["rdmap16s0"]
    assert found["kmod_version"] == "2.15.0g"


def test_a_non_ec2_product_name_is_not_an_instance_type(tmp_path) -> None:
    root = make_sysfs(tmp_path / "sys", product_name="Standard PC (Q35 + ICH9, 2009)")
    assert detect.detect(str(root), "/x/fi_info-absent", "/x")["dmi_instance_type"] is None


def test_command_line_reports_json(tmp_path, capsys) -> None:
    names = fixture_domains("fi_info_p6-b200_libfabric2.txt")
    root = make_sysfs(tmp_path / "sys", efa=names, mellanox=1, product_name="p6-b200.48xlarge")
    fi_info = make_fi_info(tmp_path / "bin" / "fi_info", "fi_info_p6-b200_libfabric2.txt")
    installed = tmp_path / "efa_installed_packages"
    installed.write_text(fixture("efa_installed_packages_1.41.0"))
    argv = ["--sysfs-root", str(root), "--fi-info", str(fi_info)]
    assert detect.main([*argv, "--installed-packages", str(installed)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["device_count"] == 8 and out["devices"] == sorted(names)
    assert out["fi_info_domain_count"] == 8
    assert out["fi_info_domains"] == sorted(f"{n}-rdm" for n in names)
    assert out["fi_info_error"] is None
    assert out["libfabric_version"] == "2.1.0amzn3.0"
    assert out["installer_version"] == "1.41.0"


def test_fi_info_without_provider_is_an_error_not_a_crash(tmp_path) -> None:
    root = make_sysfs(tmp_path / "sys", efa=8)
    fi_info = make_fi_info(tmp_path / "bin" / "fi_info", None)
    found = detect.detect(str(root), str(fi_info), "/nonexistent")
    assert found["device_count"] == 8
    assert found["fi_info_domain_count"] == 0
    assert found["fi_info_error"] == "rc=1: fi_getinfo: -61 (No data available)"


def test_fi_info_found_on_path_when_the_configured_one_is_missing(tmp_path, monkeypatch) -> None:
    fi_info = make_fi_info(tmp_path / "bin" / "fi_info", "fi_info_p5_libfabric1.txt")
    monkeypatch.setenv("PATH", str(fi_info.parent))
    found = detect.detect(str(tmp_path), "/opt/amazon/efa/bin/fi_info", "/nonexistent")
    assert found["fi_info"] == str(fi_info)
    assert found["fi_info_domain_count"] == 32
