#!/bin/bash
# restart-peer.sh — stop one peer started by start-peers.sh and start it again
# with the command line start-peers.sh recorded; its data (accounts, rosters,
# rooms) is kept. Used by tests that check Ferry survives a server restart.
#
#   usage: restart-peer.sh [STATE_DIR] NAME [DOWNTIME_S | stop | start]
#     NAME        prosody, ejabberd, inspircd, ngircd, synapse
#     DOWNTIME_S  how long the peer stays down (default 1), so clients see
#                 "connection refused" for a while
#     stop        only stop it (a later `start` brings it back)
#     start       only start it again (after `stop`)
# Returns when the peer is ready again (its ports accept, Synapse's /health).
set -euo pipefail
LOG_TAG=restart-peer
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if [ $# -ge 2 ] && [ -d "$1" ]; then DIR=$1; shift; else DIR=${PEERS_DIR:-/tmp/ferry-peers}; fi
NAME=${1:?usage: restart-peer.sh [STATE_DIR] NAME [DOWNTIME_S|stop|start]}
MODE=${2:-1}
[ -f "$DIR/cmds/$NAME.cmd" ] || die "$NAME was not started from $DIR"
declare -F "${NAME}_wait" >/dev/null || die "unknown peer $NAME"
# the ports and settings the peers were started with
[ -f "$DIR/peers.env" ] && source "$DIR/peers.env"
T0=$(now)

if [ "$MODE" != start ]; then
  if declare -F "${NAME}_pre_stop" >/dev/null; then "${NAME}_pre_stop"; fi
  stop_group "$NAME" 20 || true
  log "$NAME stopped"
  [ "$MODE" = stop ] && exit 0
  sleep "$MODE"
fi
if [ -f "$DIR/pids/$NAME.pid" ]; then
  read -r pid start <"$DIR/pids/$NAME.pid" || true
  if [ -n "$(members "$pid")" ]; then die "$NAME is running (pid $pid); stop it first"; fi
fi
relaunch "$NAME"
"${NAME}_wait"
log "$NAME running again (pid $(cut -d' ' -f1 "$DIR/pids/$NAME.pid")), $(since "$T0")s after the request"
