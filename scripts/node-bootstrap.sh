#!/usr/bin/env bash
# Node bootstrap: ParallelCluster runs this script on every new node (CustomActions
# OnNodeConfigured; the cluster stage uploads it and renders the arguments). It applies the
# collection's configure.yml to the local node (`ansible-playbook -c local`), so nodes that
# Slurm launches later are configured by the same roles as a re-run of configure.yml.
#
#   node-bootstrap.sh --cluster-name NAME --role head|compute|login [--queue QUEUE]
#                     [--components a,b,c] --assets s3://BUCKET/bootstrap | DIR
#
# The collection artifact (xpu-parallelcluster.tar.gz), the nodes' Python requirements
# (requirements-node.txt) and the node roles' variables (node-vars.yml: pins, the cluster's GPU
# architectures; the cluster stage writes it from xpu_pc_node_vars) come from --assets. The first
# two are installed once per artifact into shared storage (XPU_PC_SHARED_DIR, default /opt/parallelcluster/shared/xpu-parallelcluster, which
# ParallelCluster shares from the head node), under a lock; later nodes reuse them.
#
# Every step is logged with its duration (XPU_PC_BOOTSTRAP_LOG, default
# /var/log/xpu-parallelcluster-bootstrap.log). Downloads and package installs are retried
# (XPU_PC_RETRIES, default 4, with backoff). Any real failure exits non-zero, so ParallelCluster
# replaces the node instead of running jobs on a half-configured one. XPU_PC_INSTANCE_TYPE, when
# set, spares the instance metadata query (the local lab sets it).
set -Eeuo pipefail

shared=${XPU_PC_SHARED_DIR:-/opt/parallelcluster/shared/xpu-parallelcluster}
logfile=${XPU_PC_BOOTSTRAP_LOG:-/var/log/xpu-parallelcluster-bootstrap.log}
retries=${XPU_PC_RETRIES:-4}
python=${XPU_PC_PYTHON:-python3}
artifact_name=xpu-parallelcluster.tar.gz
requirements_name=requirements-node.txt
vars_name=node-vars.yml

cluster="" role="" queue="" components="" assets="" install_dir="" work=""
started=$(date +%s)

usage() {
  sed -n '7,8p' "$0" >&2
  exit 64
}

log() { printf '%s xpu-bootstrap[%ss]: %s\n' "$(date -u +%FT%TZ)" "$(($(date +%s) - started))" "$*"; }

die() {
  log "FAILED: $*"
  exit 1
}

current_step=setup
on_error() {
  local rc=$?
  log "FAILED: step ${current_step} exited ${rc}; see ${logfile}"
  exit 1
}
trap on_error ERR

# step NAME CMD...: run one step and log its duration; any failure inside ends the bootstrap
# through the ERR trap (errexit stays in force: the command is not run in a condition).
step() {
  local t0
  current_step=$1
  shift
  t0=$(date +%s)
  log "step ${current_step}: start"
  "$@"
  log "step ${current_step}: done in $(($(date +%s) - t0))s"
}

# retry CMD...: transient failures (network, mirrors) get XPU_PC_RETRIES attempts with backoff.
retry() {
  local attempt=1 delay=5
  until "$@"; do
    if ((attempt >= retries)); then
      log "giving up after ${attempt} attempts: $*"
      return 1
    fi
    log "attempt ${attempt} failed, retrying in ${delay}s: $*"
    sleep "${delay}"
    attempt=$((attempt + 1))
    delay=$((delay * 2))
  done
}

parse_args() {
  while (($#)); do
    case "$1" in
      --cluster-name) cluster=${2:?}; shift 2 ;;
      --role) role=${2:?}; shift 2 ;;
      --queue) queue=${2:?}; shift 2 ;;
      --components) components=${2:?}; shift 2 ;;
      --assets) assets=${2:?}; shift 2 ;;
      -h | --help) usage ;;
      *) echo "node-bootstrap: unknown argument '$1'" >&2; usage ;;
    esac
  done
  [[ -n "${cluster}" ]] || { echo "node-bootstrap: --cluster-name is required" >&2; usage; }
  case "${role}" in
    head | login) ;;
    compute) [[ -n "${queue}" ]] || { echo "node-bootstrap: --queue is required for compute nodes" >&2; usage; } ;;
    *) echo "node-bootstrap: --role must be head, compute or login (got '${role}')" >&2; usage ;;
  esac
  [[ -n "${assets}" ]] || { echo "node-bootstrap: --assets is required (s3://BUCKET/bootstrap or a directory)" >&2; usage; }
  [[ "${components}" == none ]] && components=""
  return 0
}

fetch_assets() {
  local dest=$1 name
  mkdir -p "${dest}"
  for name in "${artifact_name}" "${requirements_name}" "${vars_name}"; do
    case "${assets}" in
      s3://*) retry aws s3 cp --only-show-errors "${assets%/}/${name}" "${dest}/${name}" ;;
      *) cp "${assets%/}/${name}" "${dest}/${name}" ;;
    esac
  done
}

# Install the artifact into shared storage once: ${shared}/<digest>/ holds a venv with the nodes'
# requirements and the collection; `.ready` says it is complete. Versions sit side by side (a node
# running configure.yml keeps its own), and `current` points at the newest.
install_shared() {
  local work=$1 digest
  digest=$(sha256sum "${work}/${artifact_name}" | cut -c1-16)
  install_dir="${shared}/${digest}"
  mkdir -p "${shared}"
  exec 9>"${shared}/.lock"
  flock -w 1800 9 || die "timed out waiting for the lock on ${shared}"
  if [[ -e "${install_dir}/.ready" ]]; then
    log "collection ${digest} already installed in ${install_dir}"
  else
    rm -rf "${install_dir}"
    "${python}" -m venv "${install_dir}/venv"
    retry "${install_dir}/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      -r "${work}/${requirements_name}"
    "${install_dir}/venv/bin/ansible-galaxy" collection install --no-deps --force \
      -p "${install_dir}/collections" "${work}/${artifact_name}" >/dev/null
    : >"${install_dir}/.ready"
    log "collection ${digest} installed in ${install_dir}"
  fi
  ln -sfn "${digest}" "${shared}/current"
  flock -u 9
}

# The node's instance type (roles check hardware against the catalog): XPU_PC_INSTANCE_TYPE when
# set, else the instance metadata service (IMDSv2) of the EC2 instance the script runs on.
instance_type() {
  local token
  if [[ -n "${XPU_PC_INSTANCE_TYPE:-}" ]]; then
    printf '%s' "${XPU_PC_INSTANCE_TYPE}"
    return
  fi
  token=$(curl -sf -m 2 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' \
    http://169.254.169.254/latest/api/token) || return 0
  curl -sf -m 2 -H "X-aws-ec2-metadata-token: ${token}" \
    http://169.254.169.254/latest/meta-data/instance-type || true
}

write_inventory() {
  local inv=$1 group node_type itype
  case "${role}" in
    head) group=head node_type=HeadNode ;;
    login) group=login node_type=LoginNode ;;
    compute) group=compute node_type=Compute ;;
  esac
  {
    echo "[${group}]"
    echo "localhost ansible_connection=local ansible_python_interpreter=${install_dir}/venv/bin/python"
    if [[ -n "${queue}" ]]; then
      echo "[queue_${queue//-/_}]"
      echo "localhost"
    fi
    echo "[all:vars]"
    echo "pc_cluster_name=${cluster}"
    echo "pc_node_type=${node_type}"
    [[ -n "${queue}" ]] && echo "pc_queue=${queue}"
    itype=$(instance_type)
    [[ -n "${itype}" ]] && echo "instance_type=${itype}"
    echo "xpu_pc_node_bootstrap=true"
    echo "xpu_pc_components=${components}"
  } >"${inv}"
}

run_configure() {
  local inv=$1 vars=$2
  ANSIBLE_COLLECTIONS_PATH="${install_dir}/collections" ANSIBLE_RETRY_FILES_ENABLED=false \
    ANSIBLE_HOST_KEY_CHECKING=false ANSIBLE_NOCOLOR=1 \
    "${install_dir}/venv/bin/ansible-playbook" -i "${inv}" -e "@${vars}" \
    "${install_dir}/collections/ansible_collections/xpu/parallelcluster/playbooks/configure.yml"
}

main() {
  parse_args "$@"
  mkdir -p "$(dirname "${logfile}")"
  exec > >(tee -a "${logfile}") 2>&1
  log "cluster ${cluster}, role ${role}${queue:+, queue ${queue}}, components ${components:-none}, assets ${assets}"
  work=$(mktemp -d /tmp/xpu-bootstrap.XXXXXX)
  trap 'rm -rf "${work}"' EXIT
  step fetch-assets fetch_assets "${work}"
  step install-shared install_shared "${work}"
  step inventory write_inventory "${work}/inventory.ini"
  step configure run_configure "${work}/inventory.ini" "${work}/${vars_name}"
  log "bootstrap done in $(($(date +%s) - started))s"
}

main "$@"
