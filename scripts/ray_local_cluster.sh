#!/bin/sh
# A throwaway Ray cluster on this machine, sealed in private namespaces, around one command.
#
#   scripts/ray_local_cluster.sh NODES CPUS_PER_NODE COMMAND...
#
# Runs in a new network namespace (only loopback: Ray otherwise advertises the machine's
# own address), a new PID namespace (every process the cluster started dies with it: no
# `ray stop` reaching other users' clusters) and a new mount namespace (Ray's sockets and
# object store live in a private tmpfs that vanishes at the end). Node 0 is the head; node
# i > 0 carries the custom resource `node<i>` and node-manager port 6390+i, so a test can
# place a job on it and find its raylet. COMMAND sees RAY_ADDRESS; its exit status is ours.
# Needs root, or unprivileged user namespaces (then run it under `unshare -r`).
set -eu
if [ "${AUTORESEARCH_RAY_SEALED:-}" != 1 ]; then
  AUTORESEARCH_RAY_SEALED=1 exec unshare --net --pid --fork --mount-proc "$0" "$@"
fi
nodes=$1; cpus=$2; shift 2
ray=$(dirname "$(command -v python)")/ray
[ -x "$ray" ] || ray=ray
ip link set lo up
mount -t tmpfs -o size=2g tmpfs /dev/shm  # private: the object store and Ray's sockets
tmp=/dev/shm/r
mkdir -p "$tmp/tmp"
# The nodes' job folders go there too: nothing the cluster writes outlives it.
export RAY_USAGE_STATS_ENABLED=0 RAY_ADDRESS=127.0.0.1:6379 TMPDIR=$tmp/tmp
common="--node-ip-address=127.0.0.1 --num-cpus=$cpus --object-store-memory=100000000 \
  --temp-dir=$tmp --disable-usage-stats"
# shellcheck disable=SC2086
"$ray" start --head --port=6379 --include-dashboard=false $common >"$tmp/start.log" 2>&1 \
  || { cat "$tmp/start.log" >&2; exit 3; }
i=1
while [ "$i" -lt "$nodes" ]; do
  # shellcheck disable=SC2086
  "$ray" start --address=$RAY_ADDRESS --node-manager-port=$((6390 + i)) \
    --resources="{\"node$i\": 1}" $common >>"$tmp/start.log" 2>&1 \
    || { cat "$tmp/start.log" >&2; exit 3; }
  i=$((i + 1))
done
status=0
"$@" || status=$?
"$ray" stop --force >/dev/null 2>&1 || true
exit "$status"
