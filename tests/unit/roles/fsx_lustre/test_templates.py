"""The fsx_lustre repository templates rendered per OS family (fast: Jinja only, no playbook)."""

from __future__ import annotations

import jinja2
from ansible.plugins.filter.core import FilterModule

from .conftest import ROLE

MANAGED = "Ansible managed"


def render(template: str, **variables) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["ansible.builtin.comment"] = FilterModule().filters()["comment"]
    text = (ROLE / "templates" / template).read_text()
    return env.from_string(text).render(ansible_managed=MANAGED, **variables)


def test_apt_source_is_signed_by_the_checked_key() -> None:
    text = render(
        "apt.repo.j2",
        __fsx_lustre_key_path="/etc/apt/keyrings/fsx-lustre-client.asc",
        fsx_lustre_apt_repo_url="https://fsx-lustre-client-repo.s3.amazonaws.com/ubuntu",
        fsx_lustre_apt_suite="jammy",
    )
    assert text.startswith(f"#\n# {MANAGED}\n#\n")
    (deb,) = [line for line in text.splitlines() if line.startswith("deb ")]
    assert deb == (
        "deb [signed-by=/etc/apt/keyrings/fsx-lustre-client.asc] "
        "https://fsx-lustre-client-repo.s3.amazonaws.com/ubuntu jammy main"
    )


def test_yum_repo_checks_package_signatures_with_the_checked_key() -> None:
    text = render(
        "yum.repo.j2",
        __fsx_lustre_repo_name="aws-fsx",
        __fsx_lustre_key_path="/etc/pki/rpm-gpg/RPM-GPG-KEY-aws-fsx",
        fsx_lustre_rpm_repo_url="https://fsx-lustre-client-repo.s3.amazonaws.com/el/9/$basearch/",
    )
    settings = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#")
    )
    assert "[aws-fsx]" in text.splitlines()
    assert settings["gpgcheck"] == "1" and settings["enabled"] == "1"
    assert settings["gpgkey"] == "file:///etc/pki/rpm-gpg/RPM-GPG-KEY-aws-fsx"
    assert settings["baseurl"] == "https://fsx-lustre-client-repo.s3.amazonaws.com/el/9/$basearch/"
