#!/usr/bin/env bash
# Start a private one-node Slurm cluster (munged, slurmctld, slurmd) under DIR, as root.
#
#   tests/slurm/start-slurm.sh DIR     -> prints `export SLURM_CONF=DIR/slurm.conf`; exit 0 when
#                                         sinfo shows the node idle
#   tests/slurm/stop-slurm.sh DIR      stops exactly the daemons this script started (pid files)
#
# Everything lives in DIR: munge key and socket, slurm.conf (free ports picked at start, so two
# clusters or a system Slurm do not clash), state, spool, logs. Clients find it through
# SLURM_CONF (slurm.conf names the munge socket). Debian packages: slurm-wlm, munge
# (tests/system-packages.txt). Recipe: ../../../shared/FIELD-NOTES.md ("A real Slurm").
set -euo pipefail

DIR=${1:?usage: start-slurm.sh DIR}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
for exe in munged slurmctld slurmd sinfo; do
  command -v "$exe" >/dev/null 2>&1 || {
    echo "start-slurm: $exe not found (apt-get install slurm-wlm munge)" >&2; exit 3; }
done
[[ $EUID -eq 0 ]] || { echo "start-slurm: must run as root (slurmd runs jobs as their user)" >&2; exit 3; }

mkdir -p "$DIR/munge" "$DIR/state" "$DIR/spool" "$DIR/log"
chmod 700 "$DIR/munge"
dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$DIR/munge/munge.key"
munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
  --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" \
  --seed-file="$DIR/munge/munge.seed"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
CTLD_PORT=$(free_port)
SLURMD_PORT=$(free_port)
NODE=$(hostname -s)
CPUS=$(nproc)
cat >"$DIR/slurm.conf" <<CONF
ClusterName=opshelf-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
# keep finished jobs visible to scontrol for a while: failure reports quote them
MinJobAge=600
InactiveLimit=0
KillWait=5
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
# Debian's slurmd reads cgroup.conf only with cgroup plugins; none are used here.
export SLURM_CONF="$DIR/slurm.conf"
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"

for _ in $(seq 1 60); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.5
done
echo "start-slurm: the node did not become idle in 30 s; logs in $DIR/log:" >&2
tail -n 20 "$DIR"/log/*.log >&2 || true
sinfo >&2 || true
exit 1
