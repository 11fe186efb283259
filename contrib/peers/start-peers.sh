#!/bin/bash
# start-peers.sh — install (if missing) and start the real servers Ferry's tests
# talk to, all on 127.0.0.1, all state under one directory.
#
#   usage: start-peers.sh [STATE_DIR]        (default: $PEERS_DIR or /tmp/ferry-peers)
#   env:   PEERS="xmpp irc matrix"           groups to start (default: all three)
#          WITH_EJABBERD=1                   also start ejabberd (second XMPP server)
#          FERRY_VENVS=/opt/ferry-venvs      where Python venvs are kept (reused)
#          XMPP_LOAD_USERS=N                 also register load01..loadNN on the XMPP servers
#          *_PORT, *_COMPONENT_SECRET …      see lib.sh for every setting
#
# Writes STATE_DIR/peers.env (ports, secrets, accounts: `source` it) and
# STATE_DIR/pids/NAME.pid (process-group leaders; stop-peers.sh stops exactly
# those). Logs go to STATE_DIR/logs/. No systemd, no system-wide config. If
# anything fails, whatever was already started is stopped again.
set -euo pipefail
LOG_TAG=start-peers
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DIR=${1:-${PEERS_DIR:-/tmp/ferry-peers}}
T0=$(now)

mapfile -t SEL < <(selected_peers)
[ ${#SEL[@]} -gt 0 ] || die "no peers selected (PEERS='$PEERS')"

# ---------------------------------------------------------------- install
PKGS=(curl procps ca-certificates python3)
for p in "${SEL[@]}"; do PKGS+=($("${p}_packages")); done
ensure_packages "${PKGS[@]}"
for p in "${SEL[@]}"; do
  if declare -F "${p}_venv" >/dev/null; then ensure_venv $("${p}_venv"); fi
done

# ---------------------------------------------------------------- state dir
if ls "$DIR"/pids/*.pid >/dev/null 2>&1; then
  die "$DIR/pids has pid files: run stop-peers.sh $DIR first"
fi
case "$DIR" in /|"") die "refusing to use '$DIR' as the state directory" ;; esac
rm -rf "$DIR"; mkdir -p "$DIR/pids" "$DIR/logs" "$DIR/cmds"; chmod 755 "$DIR"
DIR=$(cd "$DIR" && pwd)

for p in "${SEL[@]}"; do
  for port in $("${p}_ports"); do
    port_free "$port" || die "port $port (for $p) is already in use"
  done
done

# ---------------------------------------------------------------- start
STARTED=0
cleanup() {
  if [ "$STARTED" != 1 ]; then
    echo "start-peers: failed; stopping what was started (logs kept in $DIR/logs)" >&2
    "$PEERS_HOME/stop-peers.sh" "$DIR" >&2 || true
  fi
}
trap cleanup EXIT

declare -A T_START READY
for p in "${SEL[@]}"; do T_START[$p]=$(now); "${p}_launch"; done
# fast starters are waited for first, so each one's "ready" time is its own
for ((i=${#SEL[@]}-1; i>=0; i--)); do p=${SEL[$i]}; "${p}_ready"; READY[$p]=$(since "${T_START[$p]}"); done

# ---------------------------------------------------------------- peers.env
{
  echo "# written by contrib/peers/start-peers.sh — source it from tests"
  echo "export PEERS_DIR=$DIR PEERS=\"$PEERS\" FERRY_VENVS=$FERRY_VENVS"
  echo "export PEERS_RUNNING=\"${SEL[*]}\""
  for p in "${SEL[@]}"; do "${p}_env"; done
} >"$DIR/peers.env"
STARTED=1

echo "peers started under $DIR in $(since "$T0")s (source $DIR/peers.env):"
for p in "${SEL[@]}"; do printf '  %s  ready %ss\n' "$("${p}_summary")" "${READY[$p]}"; done
