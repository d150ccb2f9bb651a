"""The nvidia_container repository templates rendered per OS family (fast: Jinja only, no playbook).

The templates are rendered with the repository entries of vars/Debian.yml and vars/RedHat.yml and
Ansible's own ``comment`` filter, as the role's template task would.
"""

from __future__ import annotations

import jinja2
import pytest
import yaml
from ansible.plugins.filter.core import FilterModule

from .conftest import ROLE

MANAGED = "Ansible managed"


def render(template: str, repo: dict, **extra) -> str:
    filters = FilterModule().filters()
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["ansible.builtin.comment"] = filters["comment"]
    text = (ROLE / "templates" / template).read_text()
    return env.from_string(text).render(
        ansible_managed=MANAGED, __nvidia_container_repo=repo, **extra
    )


def family_repos(family: str) -> dict:
    return yaml.safe_load((ROLE / "vars" / f"{family}.yml").read_text())


@pytest.mark.parametrize(
    "which", ["__nvidia_container_docker_repo", "__nvidia_container_toolkit_repo"]
)
def test_apt_sources_are_signed_by_their_own_keyring(which: str) -> None:
    repo = {
        **family_repos("Debian")[which],
        "url": "https://example.invalid/repo",
        "key_url": "https://example.invalid/gpg",
        "suite": "noble" if "docker" in which else "/",
        "key_path": "/etc/apt/keyrings/k.asc",
    }
    text = render("apt.repo.j2", repo, __nvidia_container_deb_arch="arm64")
    lines = text.splitlines()
    assert lines[:3] == ["#", f"# {MANAGED}", "#"]
    (deb,) = [line for line in lines if line.startswith("deb ")]
    expected_tail = "noble stable" if "docker" in which else "/"
    assert deb == (
        "deb [arch=arm64 signed-by=/etc/apt/keyrings/k.asc] https://example.invalid/repo "
        + expected_tail
    )


def test_yum_repos_check_signatures_as_each_publisher_signs() -> None:
    repos = family_repos("RedHat")
    docker = render(
        "yum.repo.j2",
        {**repos["__nvidia_container_docker_repo"], "url": "U", "key_url": "K", "key_path": "/k"},
    )
    assert "[docker-ce-stable]\n" in docker
    assert "gpgcheck=1\nrepo_gpgcheck=0\ngpgkey=file:///k\n" in docker
    toolkit = render(
        "yum.repo.j2",
        {**repos["__nvidia_container_toolkit_repo"], "url": "U", "key_url": "K", "key_path": "/n"},
    )
    assert "[nvidia-container-toolkit]\n" in toolkit
    assert "gpgcheck=0\nrepo_gpgcheck=1\ngpgkey=file:///n\n" in toolkit
    assert toolkit.startswith(f"#\n# {MANAGED}\n#\n")


def test_pinned_fingerprints_are_the_published_ones() -> None:
    """Docker's two keys as its installation guides print them; NVIDIA's as the role documents."""
    assert (
        family_repos("Debian")["__nvidia_container_docker_key_fingerprint"]
        == "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
    )
    assert (
        family_repos("RedHat")["__nvidia_container_docker_key_fingerprint"]
        == "060A61C51B558A7F742B77AAC52FEB6B621E9F35"
    )
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert defaults["nvidia_container_toolkit_key_fingerprint"] == (
        "C95B321B61E88C1809C4F759DDCAE044F796ECB0"
    )
    assert defaults["nvidia_container_toolkit_key_url"] == (
        "https://nvidia.github.io/libnvidia-container/gpgkey"
    )
