#!/bin/bash
# check-peers.sh — smoke-test every running peer started by start-peers.sh with a
# real client (slixmpp for XMPP, raw sockets for IRC, curl for Matrix).
#
#   usage: check-peers.sh [STATE_DIR]   (default: $PEERS_DIR or /tmp/ferry-peers)
#
# The XMPP checks run in the test venv ($FERRY_VENVS/test, from
# tests/requirements.txt), created if missing. Prints one line per check and
# "N passed, M failed"; exits non-zero if any failed.
set -uo pipefail
LOG_TAG=check-peers
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DIR=${1:-${PEERS_DIR:-/tmp/ferry-peers}}
[ -f "$DIR/peers.env" ] || die "no $DIR/peers.env: start the peers first"
set -a; source "$DIR/peers.env"; set +a
KIT=$PEERS_HOME/kit
REQS=$PEERS_HOME/../../tests/requirements.txt
if [ -f "$REQS" ]; then ensure_venv test -r "$(cd "$(dirname "$REQS")" && pwd)/requirements.txt"
else ensure_venv test "slixmpp==$SLIXMPP_VERSION"; fi
PY=$FERRY_VENVS/test/bin/python

pass=0; fail=0
run() { # NAME COMMAND...
  local name=$1 t out r; shift; t=$(now)
  if out=$("$@" 2>&1); then pass=$((pass+1)); r=PASS; else fail=$((fail+1)); r=FAIL; fi
  printf '%-5s %-16s %6ss\n' "$r" "$name" "$(since "$t")"
  # every line the check printed, without asyncio's noise
  echo "$out" | grep -vE 'Task was destroyed|task: <|^ +(File|return|\^)|DeprecationWarning' | sed 's/^/        /' | tail -n 40
}
running() { [ -f "$DIR/pids/$1.pid" ]; }

running prosody && run xmpp-prosody timeout 60 "$PY" "$KIT/xmpp_check.py"
running ejabberd && run xmpp-ejabberd env XMPP_SERVER=ejabberd XMPP_UPLOAD_JID= \
  XMPP_C2S_PORT="$EJ_C2S_PORT" XMPP_COMPONENT_PORT="$EJ_COMPONENT_PORT" timeout 60 "$PY" "$KIT/xmpp_check.py"
running inspircd && run irc-inspircd timeout 60 python3 "$KIT/irc_check.py" "$IRC_PORT" 200
running ngircd && run irc-ngircd timeout 60 python3 "$KIT/irc_check.py" "$NGIRCD_PORT" 20
running synapse && run matrix-synapse timeout 60 "$KIT/matrix_check.sh"
running dovecot && running postfix && run mail timeout 60 python3 "$KIT/mail_check.py"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
