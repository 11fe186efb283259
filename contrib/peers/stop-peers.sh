#!/bin/bash
# stop-peers.sh — stop what start-peers.sh started, by the PIDs it recorded.
#
#   usage: stop-peers.sh [STATE_DIR]   (default: $PEERS_DIR or /tmp/ferry-peers)
#
# Each pid file holds "PID STARTTIME"; PID leads its own process group (setsid),
# so the whole group (daemon and children) gets SIGTERM, then SIGKILL after 20 s.
# A PID whose start time no longer matches (recycled) is left alone. Logs and
# data stay in STATE_DIR for post-mortems; CLEAN=1 removes it. Running it again
# is a no-op.
set -uo pipefail
LOG_TAG=stop-peers
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DIR=${1:-${PEERS_DIR:-/tmp/ferry-peers}}
if ! ls "$DIR"/pids/*.pid >/dev/null 2>&1; then
  echo "stop-peers: nothing to stop in $DIR"
  [ "${CLEAN:-0}" = 1 ] && [ -d "$DIR" ] && rm -rf "$DIR"
  exit 0
fi
T0=$(now)

# peers that want to be asked first (ejabberd) are asked, then every group is
# signalled at once and waited for in parallel
pids=()
for f in "$DIR"/pids/*.pid; do
  name=$(basename "$f" .pid)
  (
    if declare -F "${name}_pre_stop" >/dev/null; then "${name}_pre_stop"; fi
    if stop_group "$name" 20; then echo "stopped $name"; fi
  ) &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
echo "all peers stopped in $(since "$T0")s"
[ "${CLEAN:-0}" = 1 ] && rm -rf "$DIR"
exit 0
