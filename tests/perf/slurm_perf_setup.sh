#!/bin/bash
# Runs inside the benchmark container (tests/perf/bench_slurm_exporter.py copies it to
# /opt/xpu-perf): starts munge and slurmctld on the slurm.conf written next to it (2,000 CLOUD
# nodes, no slurmd), submits the job mix and drains / downs a few nodes with reasons.
#
# Usage: slurm_perf_setup.sh JOBS ARRAY_TASKS
set -euo pipefail

jobs=${1:?jobs}
array_tasks=${2:?array tasks}
here=/opt/xpu-perf
users=20
streams=4

install -m 0644 "${here}/slurm.conf" /etc/slurm/slurm.conf
install -m 0755 "${here}/resume-program" /usr/local/sbin/xpu-perf-resume
install -d -o slurm -g slurm /var/log/slurm /var/lib/slurm/slurmctld
for i in $(seq -w 1 "${users}"); do
  id "u${i}" >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin "u${i}"
done

# munge: a fresh key for this container only.
(umask 077 && head -c 1024 /dev/urandom >/etc/munge/munge.key)
chown munge:munge /etc/munge/munge.key
install -d -o munge -g munge /run/munge
runuser -u munge -- /usr/sbin/munged

slurmctld -c
for _ in $(seq 100); do
  sinfo -h >/dev/null 2>&1 && break
  sleep 0.1
done
sinfo -h >/dev/null

# One pending array (a single squeue line for its pending tasks) and single jobs from several
# users, partitions and GPU requests, in parallel streams.
sbatch -Q --uid=u01 --chdir=/tmp -o /dev/null -p gpu-h100 -N 4 --gpus-per-node=8 -t 600 \
  --array="1-${array_tasks}%64" --wrap true
singles=$((jobs - array_tasks))
submit() {
  local stream=$1 i user partition nodes request
  for ((i = stream; i < singles; i += streams)); do
    user=u$(printf '%02d' $((i % users + 1)))
    nodes=$((i % 5 == 0 ? 2 : 1))
    case $((i % 3)) in
      0) partition=gpu-h100 request="--gpus-per-node=$((i % 8 + 1))" ;;
      1) partition=gpu-l4 request="--gres=gpu:l4:$((i % 4 + 1))" ;;
      *) partition=cpu request="--ntasks-per-node=$((i % 16 + 1))" ;;
    esac
    sbatch -Q --uid="${user}" --chdir=/tmp -o /dev/null -p "${partition}" -N "${nodes}" \
      "${request}" -t 600 --wrap true
  done
}
pids=()
for ((s = 0; s < streams; s++)); do
  submit "${s}" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "${pid}"; done

scontrol update nodename='cpu-[0001-0040]' state=drain \
  reason="perf: disk /scratch full | ticket OPS-42"
scontrol update nodename='gpu-l4-[0001-0010]' state=down \
  reason="EC2: InsufficientInstanceCapacity (perf)"
scontrol update nodename='gpu-h100-[0791-0800]' state=fail reason="xid 79: GPU fell off the bus"
# Partitions start DOWN (slurm.conf) so that submitting is not slowed by scheduling; now the
# scheduler allocates what it can: h100 nodes power up (their jobs CONFIGURING), the resume of
# the others fails at once and their jobs go back to pending.
for partition in gpu-h100 gpu-l4 cpu; do
  scontrol update partitionname="${partition}" state=up
done
# Let the first scheduling pass over the whole queue end before measuring.
sleep 15
echo "setup: $(squeue -h -r | wc -l) jobs, $(sinfo -h -N | wc -l) node lines"
