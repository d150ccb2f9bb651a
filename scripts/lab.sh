#!/usr/bin/env bash
# The local lab: a small ParallelCluster look-alike on this host.
#
#   scripts/lab.sh up            build the node image once (cached), start the AWS
#                                emulator, the network, volumes and the nodes; wait
#                                until Slurm answers. Idempotent.
#   scripts/lab.sh down [--purge] remove everything `up` made; --purge also drops
#                                the cached node image.
#   scripts/lab.sh status        what runs: emulator, instances, nodes, Slurm.
#
# The lab is described in scripts/lab/lab-cluster.yml. State (munge key, Slurm
# configuration, emulator log) lives in $XPU_LAB_STATE (default: .lab/).
# Must run as root (rootful podman, like the CI machines).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "${here}/.." && pwd)
labdir="${here}/lab"

: "${XPU_LAB_STATE:=${root}/.lab}"
: "${XPU_LAB_PYTHON:=${root}/.venv/bin/python}"
# The lab inventory talks to the emulator on the port it names; the lab serves it there.
inventory_port=$(sed -n 's|^endpoint_url: http://127\.0\.0\.1:\([0-9]*\).*|\1|p' \
  "${root}/inventories/lab/aws_ec2.yml")
: "${XPU_LAB_AWS_PORT:=${inventory_port}}"
if [[ "${XPU_LAB_AWS_PORT}" != "${inventory_port}" ]]; then
  echo "lab: XPU_LAB_AWS_PORT=${XPU_LAB_AWS_PORT}, but inventories/lab/aws_ec2.yml reaches the" \
    "emulator on port ${inventory_port}: unset XPU_LAB_AWS_PORT, or change endpoint_url there too" >&2
  exit 2
fi
: "${XPU_LAB_READY_TIMEOUT:=90}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-${labdir}/containers.conf}"

# Every AWS call of the lab goes to the local emulator; the proxy is a fence
# should anything try to reach further.
export AWS_ENDPOINT_URL="http://127.0.0.1:${XPU_LAB_AWS_PORT}"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
export AWS_EC2_METADATA_DISABLED=true
export HTTPS_PROXY=http://127.0.0.1:9 HTTP_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost

label="io.xpu.lab"

log() { printf 'lab: %s\n' "$*"; }
die() {
  printf 'lab: error: %s\n' "$*" >&2
  exit 1
}

labctl() { "${XPU_LAB_PYTHON}" "${labdir}/labctl.py" "$@"; }

load_info() {
  local line
  while IFS='=' read -r key value; do
    case "${key}" in
      cluster_name) cluster="${value}" ;;
      network_name) network="${value}" ;;
      subnet) subnet="${value}" ;;
      gateway) gateway="${value}" ;;
      region) export AWS_DEFAULT_REGION="${value}" AWS_REGION="${value}" ;;
    esac
  done < <(labctl info)
  nodes=()
  while read -r line; do nodes+=("${line}"); done < <(labctl nodes)
  [[ -n "${cluster:-}" && ${#nodes[@]} -gt 0 ]] || die "cannot read scripts/lab/lab-cluster.yml"
  volumes=("${cluster}-home" "${cluster}-fsx")
}

# The image tag is a digest of everything that goes into the image, so a change
# to the build rebuilds it and an unchanged build reuses the cache.
image_ref() {
  local digest
  digest=$(cd "${labdir}" && find build-image.sh rootfs -type f -print0 | sort -z |
    xargs -0 sha256sum | sha256sum | cut -c1-12)
  printf 'localhost/xpu-lab-node:%s' "${digest}"
}

preflight() {
  [[ ${EUID} -eq 0 ]] || die "run as root (the lab uses rootful podman)"
  local cmd
  for cmd in podman debootstrap; do
    command -v "${cmd}" >/dev/null || die "'${cmd}' is missing; run 'make deps' first"
  done
  [[ -x "${XPU_LAB_PYTHON}" ]] || die "${XPU_LAB_PYTHON} is missing; run 'make deps' first"
}

ensure_image() {
  image=$(image_ref)
  if podman image exists "${image}"; then
    log "node image ${image} (cached)"
    return
  fi
  log "building node image ${image} (about a minute, once)"
  "${labdir}/build-image.sh" "${image}"
}

ensure_state() {
  install -d -m 0700 "${XPU_LAB_STATE}"
  install -d -m 0755 "${XPU_LAB_STATE}/etc-slurm"
  if [[ ! -s "${XPU_LAB_STATE}/munge.key" ]]; then
    (umask 077 && head -c 1024 /dev/urandom >"${XPU_LAB_STATE}/munge.key")
    log "new munge key for ${cluster}"
  fi
  slurm_conf=$(labctl slurm-conf "${XPU_LAB_STATE}/etc-slurm")
}

ensure_emulator() {
  local pidfile="${XPU_LAB_STATE}/emulator.pid" i amis
  amis=$(labctl amis "${XPU_LAB_STATE}/emulator-amis.json")
  if [[ "${amis}" == changed ]] && emulator_answers; then
    # moto reads its AMIs once, at start.
    log "emulator AMIs changed: restarting the emulator"
    stop_emulator
  fi
  if emulator_answers; then
    # Record who serves the port, so that down stops it even if this state did not start it.
    emulator_pids | head -n 1 >"${pidfile}"
    log "AWS emulator on ${AWS_ENDPOINT_URL} (running)"
  else
    log "starting AWS emulator on ${AWS_ENDPOINT_URL}"
    # A new emulator starts empty: what the stages kept about the old one's resources is stale.
    rm -rf "${root}/.cache/state/${cluster}"
    local server="${XPU_LAB_PYTHON%/python}/moto_server"
    [[ -x "${server}" ]] || die "${server} is missing; run 'make deps' first"
    MOTO_AMIS_PATH="${XPU_LAB_STATE}/emulator-amis.json" \
      setsid "${server}" -H 127.0.0.1 -p "${XPU_LAB_AWS_PORT}" \
      >"${XPU_LAB_STATE}/emulator.log" 2>&1 </dev/null &
    echo $! >"${pidfile}"
    for ((i = 0; i < 50; i++)); do
      emulator_answers && break
      sleep 0.2
    done
    emulator_answers || die "the emulator did not answer; see ${XPU_LAB_STATE}/emulator.log"
  fi
  log "$(labctl register)"
}

# The emulator processes serving the lab's port, whoever started them: a pid file alone can be
# stale (an emulator left by another checkout or an interrupted run answers on the same port).
emulator_pids() {
  local dir args
  for dir in /proc/[0-9]*; do
    args=$(tr '\0' ' ' 2>/dev/null <"${dir}/cmdline") || continue
    if [[ "${args}" == *moto_server*" -p ${XPU_LAB_AWS_PORT} "* ]]; then
      echo "${dir#/proc/}"
    fi
  done
}

stop_emulator() {
  local pids pid alive
  pids=$({ cat "${XPU_LAB_STATE}/emulator.pid" 2>/dev/null || true; emulator_pids; } | sort -u)
  for pid in ${pids}; do
    kill "${pid}" 2>/dev/null || true
  done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    alive=0
    for pid in ${pids}; do
      kill -0 "${pid}" 2>/dev/null && alive=1
    done
    ((alive)) || break
    sleep 0.2
  done
  for pid in ${pids}; do
    kill -9 "${pid}" 2>/dev/null || true
  done
  rm -f "${XPU_LAB_STATE}/emulator.pid"
}

emulator_answers() {
  "${XPU_LAB_PYTHON}" - "${AWS_ENDPOINT_URL}" <<'PY' 2>/dev/null
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open(sys.argv[1] + "/moto-api/data.json", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
}

ensure_network() {
  if podman network exists "${network}"; then
    return
  fi
  podman network create --label "${label}=${cluster}" --subnet "${subnet}" \
    --gateway "${gateway}" "${network}" >/dev/null
  log "network ${network} ${subnet}"
}

ensure_volumes() {
  local vol
  for vol in "${volumes[@]}"; do
    podman volume exists "${vol}" || podman volume create --label "${label}=${cluster}" "${vol}" >/dev/null
  done
}

ensure_nodes() {
  local entry container hostname address role hosts=() state current
  for entry in "${nodes[@]}"; do
    read -r container hostname address role <<<"${entry}"
    hosts+=(--add-host "${hostname}:${address}")
  done
  for entry in "${nodes[@]}"; do
    read -r container hostname address role <<<"${entry}"
    if podman container exists "${container}"; then
      current=$(podman container inspect --format '{{.ImageName}}' "${container}")
      if [[ "${current}" != "${image}" ]]; then
        log "${container}: image changed, replacing the node"
        podman rm -f "${container}" >/dev/null
      fi
    fi
    if podman container exists "${container}"; then
      state=$(podman container inspect --format '{{.State.Status}}' "${container}")
      if [[ "${state}" != running ]]; then
        podman start "${container}" >/dev/null
        log "${container}: started"
      fi
      continue
    fi
    podman run -d --name "${container}" --hostname "${hostname}" \
      --label "${label}=${cluster}" --label "${label}.role=${role}" \
      --network "${network}" --ip "${address}" "${hosts[@]}" \
      --systemd=always --env "XPU_LAB_ROLE=${role}" \
      --volume "${XPU_LAB_STATE}/munge.key:/etc/xpu-lab/munge.key:ro" \
      --volume "${XPU_LAB_STATE}/etc-slurm:/etc/slurm" \
      --volume "${cluster}-home:/home" \
      --volume "${cluster}-fsx:/fsx" \
      "${image}" >/dev/null
    log "${container}: created (${role}, ${hostname}, ${address})"
  done
}

head_container() {
  local entry container hostname address role
  for entry in "${nodes[@]}"; do
    read -r container hostname address role <<<"${entry}"
    [[ "${role}" == head ]] && printf '%s' "${container}" && return
  done
}

# Ready = systemd finished booting on every node and every compute node is a
# Slurm node the controller can schedule on.
wait_ready() {
  local deadline=$((SECONDS + XPU_LAB_READY_TIMEOUT)) entry container hostname address role
  local head state bad
  head=$(head_container)
  for entry in "${nodes[@]}"; do
    read -r container hostname address role <<<"${entry}"
    while :; do
      state=$(podman exec "${container}" systemctl is-system-running 2>/dev/null || true)
      [[ "${state}" == running || "${state}" == degraded ]] && break
      ((SECONDS < deadline)) || die "${container}: systemd is '${state}' after ${XPU_LAB_READY_TIMEOUT}s"
      sleep 0.5
    done
    if [[ "${state}" == degraded ]]; then
      die "${container}: failed units: $(podman exec "${container}" systemctl --failed --plain --no-legend | awk '{print $1}' | xargs)"
    fi
  done
  if [[ "${slurm_conf}" == changed ]] && podman exec "${head}" scontrol ping >/dev/null 2>&1; then
    podman exec "${head}" scontrol reconfigure
  fi
  while :; do
    # Nodes Slurm cannot schedule on: anything not idle/allocated/mixed/completing.
    bad=$(podman exec "${head}" sinfo -h -N -o '%N %t' 2>/dev/null |
      awk '$2 !~ /^(idle|alloc|mix|comp)$/ {print $1 "=" $2}' | sort -u | xargs || true)
    if [[ -z "${bad}" ]] && podman exec "${head}" sinfo -h -N -o '%N' >/dev/null 2>&1; then
      break
    fi
    if ((SECONDS >= deadline)); then
      die "Slurm nodes not ready after ${XPU_LAB_READY_TIMEOUT}s: ${bad:-slurmctld does not answer}"
    fi
    # A node that registered before its slurmd could be reached may sit DOWN
    # with "Not responding": resume it once its slurmd answers.
    for entry in ${bad}; do
      case "${entry#*=}" in
        down* | drain*) podman exec "${head}" scontrol update nodename="${entry%%=*}" state=resume >/dev/null 2>&1 || true ;;
      esac
    done
    sleep 0.5
  done
}

cmd_up() {
  local started=${SECONDS}
  preflight
  load_info
  ensure_image
  ensure_state
  ensure_emulator
  ensure_network
  ensure_volumes
  ensure_nodes
  wait_ready
  log "up in $((SECONDS - started))s: cluster ${cluster}, ${#nodes[@]} nodes, emulator ${AWS_ENDPOINT_URL}"
  podman exec "$(head_container)" sinfo
}

cmd_down() {
  local purge=${1:-} entry container hostname address role
  preflight
  load_info
  for entry in "${nodes[@]}"; do
    read -r container hostname address role <<<"${entry}"
    podman rm -f -t 5 "${container}" >/dev/null 2>&1 || true
  done
  # Anything else labelled as ours (nodes from an older lab-cluster.yml).
  podman ps -aq --filter "label=${label}=${cluster}" | xargs -r podman rm -f -t 5 >/dev/null
  podman network exists "${network}" && podman network rm -f "${network}" >/dev/null
  podman volume ls -q --filter "label=${label}=${cluster}" | xargs -r podman volume rm -f >/dev/null
  stop_emulator
  rm -rf "${XPU_LAB_STATE}"
  # What the site stages kept for the lab's cluster (infra outputs, rendered config): it
  # described resources of the emulator, which are gone now.
  rm -rf "${root}/.cache/state/${cluster}"
  if [[ "${purge}" == --purge ]]; then
    podman images -q --filter reference='localhost/xpu-lab-node' | xargs -r podman rmi -f >/dev/null
    log "node images removed"
  fi
  log "down: nodes, network, volumes, emulator, ${XPU_LAB_STATE} and .cache/state/${cluster} removed"
}

cmd_status() {
  local entry container hostname address role state systemd rc=0
  preflight
  load_info
  if emulator_answers; then
    echo "emulator: running on ${AWS_ENDPOINT_URL} (pid $(cat "${XPU_LAB_STATE}/emulator.pid" 2>/dev/null || echo '?'))"
    labctl instances | sed 's/^/  /'
  else
    echo "emulator: not running"
    rc=3
  fi
  if podman network exists "${network}"; then echo "network: ${network} ${subnet}"; else echo "network: absent"; rc=3; fi
  image=$(image_ref)
  if podman image exists "${image}"; then echo "image: ${image}"; else echo "image: not built"; fi
  echo "nodes:"
  for entry in "${nodes[@]}"; do
    read -r container hostname address role <<<"${entry}"
    state=$(podman container inspect --format '{{.State.Status}}' "${container}" 2>/dev/null || echo absent)
    systemd=-
    [[ "${state}" == running ]] && systemd=$(podman exec "${container}" systemctl is-system-running 2>/dev/null || true)
    printf '  %-24s %-8s %-14s %-12s systemd=%s\n' "${container}" "${role}" "${address}" "${state}" "${systemd}"
    [[ "${state}" == running ]] || rc=3
  done
  if [[ ${rc} -eq 0 ]]; then
    echo "slurm:"
    podman exec "$(head_container)" sinfo | sed 's/^/  /' || rc=3
  fi
  return "${rc}"
}

main() {
  case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down "${2:-}" ;;
    status) cmd_status ;;
    *)
      echo "usage: $0 up | down [--purge] | status" >&2
      exit 64
      ;;
  esac
}

main "$@"
