#!/usr/bin/env bash
# Stop the cluster that tests/slurm/start-slurm.sh started under DIR: only the daemons named by
# its pid files (slurmd, slurmctld, munged), each by its pid; waits for them to exit.
set -uo pipefail
DIR=${1:?usage: stop-slurm.sh DIR}
for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; do
  [[ -f $pidfile ]] || continue
  pid=$(cat "$pidfile")
  [[ -n $pid ]] || continue
  kill "$pid" 2>/dev/null || continue
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  rm -f "$pidfile"
done
exit 0
