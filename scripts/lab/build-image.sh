#!/usr/bin/env bash
# Build the lab node image: Debian 12 with systemd as PID 1 and what a
# ParallelCluster AMI brings (Slurm, munge, OpenSSH, Python, Open MPI), so
# nodes need no network at start. Built with debootstrap and `podman import`:
# no container registry is involved.
#
# Usage: build-image.sh IMAGE_REF
set -euo pipefail

# debootstrap fetches from the Debian registry like apt does: the proxy fence
# set for AWS clients is not meant for it.
unset HTTPS_PROXY HTTP_PROXY https_proxy http_proxy

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
image=${1:?usage: build-image.sh IMAGE_REF}

# Packages every node has, as on a ParallelCluster AMI.
packages=(
  systemd systemd-sysv dbus sudo ca-certificates iproute2 procps less
  python3 python3-apt python3-venv
  openssh-server openssh-client
  munge slurmctld slurmd slurm-client
  openmpi-bin python3-mpi4py python3-numpy
  # Pre-seeded so lab nodes need no network: the monitoring roles find them installed.
  prometheus prometheus-node-exporter python3-prometheus-client
)

# The Debian mirror this host already uses (no host name is written here).
mirror=$(awk '/^URIs:/{print $2; exit} /^deb /{print $2; exit}' \
  /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true)
if [[ -z "${mirror}" ]]; then
  echo "build-image: cannot read a Debian mirror from /etc/apt/sources*" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/var/tmp}/xpu-lab-rootfs.XXXXXX")
trap 'rm -rf "${work}"' EXIT
rootfs="${work}/rootfs"

echo "build-image: debootstrap bookworm from the host's mirror"
include=$(IFS=,; echo "${packages[*]}")
debootstrap --variant=minbase --include="${include}" bookworm "${rootfs}" "${mirror}" \
  >"${work}/debootstrap.log" 2>&1 || {
  tail -n 40 "${work}/debootstrap.log" >&2
  exit 1
}

echo "build-image: lab node settings"
# Secrets baked in by the packages are per cluster / per node: remove them.
rm -f "${rootfs}/etc/munge/munge.key" "${rootfs}"/etc/ssh/ssh_host_*
# Services a container cannot or need not run.
for unit in getty@tty1.service systemd-timesyncd.service apt-daily.timer \
  apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
  systemctl --root="${rootfs}" mask "${unit}" >/dev/null 2>&1 || true
done
# Slurm daemons start from xpu-lab-init by node role, not at boot everywhere.
systemctl --root="${rootfs}" disable slurmctld.service slurmd.service \
  prometheus.service prometheus-node-exporter.service >/dev/null 2>&1 || true
cp -a "${here}/rootfs/." "${rootfs}/"
chmod 0755 "${rootfs}/usr/local/sbin/xpu-lab-init"
systemctl --root="${rootfs}" enable xpu-lab-init.service >/dev/null
# The default user, as on ParallelCluster's Ubuntu AMIs; home lives on the
# shared /home volume and is made by xpu-lab-init.
chroot "${rootfs}" useradd --no-create-home --uid 1000 --user-group --shell /bin/bash ubuntu
echo 'ubuntu ALL=(ALL) NOPASSWD:ALL' >"${rootfs}/etc/sudoers.d/90-ubuntu"
chmod 0440 "${rootfs}/etc/sudoers.d/90-ubuntu"
chroot "${rootfs}" install -d -o root -g root -m 0755 /var/spool/slurmd
chroot "${rootfs}" install -d -o slurm -g slurm -m 0755 /var/lib/slurm/slurmctld /var/log/slurm
: >"${rootfs}/etc/machine-id"
# No package lists in the image, and nothing claiming they are fresh (Ansible's apt
# update_cache with cache_valid_time would trust it and skip the update).
rm -rf "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/lib/apt/lists/* \
  "${rootfs}"/var/lib/apt/periodic/*-stamp
# Without a stamp, cache_valid_time falls back to the lists folder's age: make it old.
touch -d @0 "${rootfs}/var/lib/apt/lists"

echo "build-image: podman import ${image}"
tar -C "${rootfs}" -c . | podman import \
  --change 'CMD ["/sbin/init"]' \
  --change 'ENV container=podman' \
  --change 'STOPSIGNAL SIGRTMIN+3' \
  --quiet - "${image}" >/dev/null
echo "build-image: ${image} ready"
