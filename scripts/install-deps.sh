#!/usr/bin/env bash
# Install what the demo and the tests need on a Debian 12 host, idempotently:
#   - Debian packages (podman and friends for the lab, shellcheck for lint);
#   - a Python virtual environment (.venv) from requirements-dev.txt, every package held at
#     the version in constraints.txt;
#   - the Ansible collections this one depends on, unpacked from the pinned
#     `ansible` release on PyPI (no Galaxy needed), plus this collection linked
#     in as xpu.parallelcluster, under .cache/collections.
# A second run with nothing to do takes about a second.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "${root}"

: "${PYTHON:=python3.11}"
venv="${root}/.venv"
cache="${root}/.cache"
collections="${cache}/collections"

# The `ansible` release whose bundled collections we use, and the collections taken from it
# (ansible.posix only for the tests: its json stdout callback).
ansible_release=12.3.0
bundled=(amazon/aws containers/podman ansible/posix community/grafana)

apt_packages=(podman runc debootstrap uidmap slirp4netns fuse-overlayfs netavark aardvark-dns
  shellcheck python3-venv prometheus)

# apt and pip talk to their package registries as usual: the proxy fence the
# Makefile sets for AWS clients is not meant for them.
unset HTTPS_PROXY HTTP_PROXY https_proxy http_proxy

log() { printf 'deps: %s\n' "$*"; }

missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "${pkg}" 2>/dev/null | grep -q 'install ok installed' || missing+=("${pkg}")
done
if ((${#missing[@]})); then
  [[ ${EUID} -eq 0 ]] || {
    echo "deps: run as root to install: ${missing[*]}" >&2
    exit 1
  }
  log "apt: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v "${PYTHON}" >/dev/null || PYTHON=python3
stamp="${venv}/.requirements.sha256"
want=$(cat requirements.txt requirements-dev.txt constraints.txt | sha256sum | cut -d' ' -f1)
if [[ ! -x "${venv}/bin/python" ]] || [[ "$(cat "${stamp}" 2>/dev/null)" != "${want}" ]]; then
  log "python: virtual environment ${venv}"
  "${PYTHON}" -m venv "${venv}"
  "${venv}/bin/python" -m pip install -q --disable-pip-version-check -r requirements-dev.txt \
    -c constraints.txt
  echo "${want}" >"${stamp}"
fi

# Tools whose pins clash with the controller's get a virtual environment each.
tools=(checkov)
for tool in "${tools[@]}"; do
  tvenv="${cache}/venvs/${tool}"
  tstamp="${tvenv}/.requirements.sha256"
  twant=$(cat "requirements-${tool}.txt" "constraints-${tool}.txt" | sha256sum | cut -d' ' -f1)
  if [[ ! -x "${tvenv}/bin/${tool}" ]] || [[ "$(cat "${tstamp}" 2>/dev/null)" != "${twant}" ]]; then
    log "python: ${tool} in ${tvenv}"
    "${PYTHON}" -m venv "${tvenv}"
    "${tvenv}/bin/python" -m pip install -q --disable-pip-version-check -r "requirements-${tool}.txt" \
      -c "constraints-${tool}.txt"
    echo "${twant}" >"${tstamp}"
  fi
  ln -sfn "${tvenv}/bin/${tool}" "${venv}/bin/${tool}"
done

cstamp="${collections}/.ansible-${ansible_release}-$(IFS=+; echo "${bundled[*]//\//.}")"
if [[ ! -e "${cstamp}" ]]; then
  log "collections: unpacking ${bundled[*]} from ansible ${ansible_release}"
  install -d "${cache}/wheels"
  "${venv}/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
    "ansible==${ansible_release}" -d "${cache}/wheels"
  rm -rf "${collections}"
  install -d "${collections}/ansible_collections/xpu"
  "${venv}/bin/python" - "${cache}/wheels/ansible-${ansible_release}-py3-none-any.whl" \
    "${collections}" "${bundled[@]}" <<'PY'
import sys, zipfile
wheel, dest, *wanted = sys.argv[1:]
prefixes = tuple(f"ansible_collections/{name}/" for name in wanted)
with zipfile.ZipFile(wheel) as zf:
    members = [m for m in zf.namelist() if m.startswith(prefixes)]
    zf.extractall(dest, members)
found = {m.split("/")[1] + "/" + m.split("/")[2] for m in members}
missing = set(wanted) - found
if missing:
    sys.exit(f"collections missing from the wheel: {sorted(missing)}")
PY
  touch "${cstamp}"
fi
# This collection, as ansible and ansible-lint expect to find it.
ln -sfn ../../../.. "${collections}/ansible_collections/xpu/parallelcluster"
log "ready (.venv, .cache/collections)"
