#!/bin/bash
# contrib/demo.sh — Ferry on your machine in one command.
#
# Starts Prosody, InspIRCd, ngIRCd and Synapse on 127.0.0.1 with the project's peer
# scripts (the servers a real user would already have elsewhere),
# writes a ferry.toml, builds and runs ferry, and prints how to log in with
# any XMPP client. Ctrl-C (or any other end of the script) stops everything.
# Needs root (apt, the servers) and a Rust toolchain. State lives in
# $DEMO_DIR (default /tmp/ferry-demo). The first run builds ferry: about 10
# minutes on a 2-core machine.
#
# The demo and the tests use the same ports (contrib/peers/lib.sh): stop one
# before starting the other, or move one of them with the *_PORT variables.
#
#   contrib/demo.sh
#   XMPP_C2S_PORT=5222 contrib/demo.sh      # other ports: see contrib/peers/lib.sh
#
# Which bridges the demo runs: DEMO_BRIDGES (default "irc matrix test"; one
# section per name, on the component NAME.localhost that the peer scripts
# declare in Prosody). DEMO_BRIDGES="irc" skips Synapse and its venv.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_TAG=demo
source "$REPO/contrib/peers/lib.sh"

DEMO_BRIDGES=${DEMO_BRIDGES:-"irc matrix test"}
DEMO_DIR=${DEMO_DIR:-/tmp/ferry-demo}
DEMO_HTTP_PORT=${DEMO_HTTP_PORT:-15780}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
PEERS_STATE=$DEMO_DIR/peers

command -v cargo >/dev/null || die "no Rust toolchain (cargo) in PATH: install Rust 1.95 or newer first"
mkdir -p "$DEMO_DIR"

FERRY_PID=
# Everything started is stopped however the script ends: an error, Ctrl-C,
# SIGTERM, the terminal closing. Ctrl-C on `demo.sh | tee log` also ends
# tee, so the cleanup ignores SIGPIPE (a write to the closed pipe would end
# the script before the servers are stopped) and a second Ctrl-C, and
# writes to stderr.
cleanup() {
  trap - EXIT
  trap '' PIPE INT TERM HUP
  exec >&2
  echo
  if [ -n "$FERRY_PID" ] && kill -0 "$FERRY_PID" 2>/dev/null; then
    log "stopping ferry"
    kill -TERM "$FERRY_PID" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$FERRY_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$FERRY_PID" 2>/dev/null
  fi
  log "stopping the servers"
  "$REPO/contrib/peers/stop-peers.sh" "$PEERS_STATE" >/dev/null
  log "stopped; logs and data are in $DEMO_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

# ---------------------------------------------------------------- servers + build
DEMO_PEERS="xmpp"
case " $DEMO_BRIDGES " in *" irc "*) DEMO_PEERS+=" irc" ;; esac
case " $DEMO_BRIDGES " in *" matrix "*) DEMO_PEERS+=" matrix" ;; esac
log "starting the servers ($DEMO_PEERS) on 127.0.0.1 (state in $PEERS_STATE)"
PEERS="$DEMO_PEERS" "$REPO/contrib/peers/start-peers.sh" "$PEERS_STATE" || die "the servers did not start"
set -a; source "$PEERS_STATE/peers.env"; set +a

log "building ferry (cargo build; the first build takes a few minutes)"
(cd "$REPO" && cargo build --locked --features test-bridge) || die "the build failed"
TARGET_DIR=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
FERRY=$TARGET_DIR/debug/ferry

# ---------------------------------------------------------------- ferry.toml
CONFIG=$DEMO_DIR/ferry.toml
{
  cat <<EOF
# written by contrib/demo.sh
[xmpp]
host = "127.0.0.1"
port = $XMPP_COMPONENT_PORT

[storage]
data_dir = "$DEMO_DIR/data"

[access]
users = ["*@localhost"]
admins = ["admin@localhost"]

[http]
listen = "127.0.0.1:$DEMO_HTTP_PORT"

[log]
level = "info"
EOF
  for b in $DEMO_BRIDGES; do
    secret_var=${b^^}_COMPONENT_SECRET
    printf '\n[%s]\ndomain = "%s.localhost"\nsecret = "%s"\n' "$b" "$b" "${!secret_var}"
    case $b in
      # the local InspIRCd listens on $IRC_PORT, without TLS, on loopback
      # (refused unless allowed: 127.0.0.2 is the local ngIRCd)
      irc) printf 'ports = [%s]\ntls_ports = []\nallowed_hosts = ["127.0.0.1", "127.0.0.2"]\n' "$IRC_PORT" ;;
      # the local Synapse speaks plain HTTP on loopback
      matrix) printf 'allow_insecure_http = true\nallowed_hosts = ["127.0.0.1"]\n' ;;
    esac
  done
} >"$CONFIG"
"$FERRY" check --config "$CONFIG" || die "ferry check refused $CONFIG"

# ---------------------------------------------------------------- run
log "starting ferry (log: $DEMO_DIR/ferry.log)"
"$FERRY" --config "$CONFIG" >>"$DEMO_DIR/ferry.log" 2>&1 &
FERRY_PID=$!
for _ in $(seq 1 100); do
  kill -0 "$FERRY_PID" 2>/dev/null || { tail -20 "$DEMO_DIR/ferry.log"; die "ferry exited"; }
  curl -fs "http://127.0.0.1:$DEMO_HTTP_PORT/health" >/dev/null && break
  sleep 0.2
done

cat <<EOF

  Ferry is running. Log in with any XMPP client (Gajim, Dino, Profanity, …):

    account    alice@localhost      password  alicepw     (also bob, carol, admin: <name>pw)
    server     127.0.0.1            port      $XMPP_C2S_PORT
    security   no TLS: allow plaintext / unencrypted connections in the client

  Then, in the client:
EOF
for b in $DEMO_BRIDGES; do
  case $b in
    test) cat <<EOF
    * open service discovery on test.localhost (the test network, a demo network
      inside ferry) and run "Register" (or send "register" to test.localhost):
      user name alice, password alicepw
    * chat with echo@test.localhost (it repeats what you write; "help" lists its tricks),
      or with bob@test.localhost (log in as bob@localhost in a second client)
    * join the room #lounge@test.localhost
EOF
    ;;
    irc) cat <<EOF
    * IRC (no registration needed): join the room #test%127.0.0.1@irc.localhost
      (the local InspIRCd); IRC users are nick%127.0.0.1@irc.localhost, and
      127.0.0.1@irc.localhost takes raw IRC commands and has a "configure" command.
      From a terminal: nc 127.0.0.1 $IRC_PORT, then NICK ann / USER ann 0 * :Ann / JOIN #test
      A second IRC server, ngIRCd, listens on 127.0.0.2 port $NGIRCD_PORT: run "configure"
      on 127.0.0.2@irc.localhost, set Ports to $NGIRCD_PORT and TLS ports to nothing.
EOF
    ;;
    matrix) cat <<EOF
    * Matrix: run "Register" on matrix.localhost (or send "register" to it) with
      homeserver http://127.0.0.1:$MATRIX_PORT, user alice, password alicepw
      (bob and carol exist too). Matrix users are bob\\3alocalhost@matrix.localhost;
      rooms are !id\\3alocalhost@matrix.localhost or #alias\\3alocalhost@matrix.localhost.
EOF
    ;;
  esac
done
cat <<EOF

  Health: http://127.0.0.1:$DEMO_HTTP_PORT/health   metrics: http://127.0.0.1:$DEMO_HTTP_PORT/metrics
  Logs:   $DEMO_DIR/ferry.log
  Ctrl-C stops ferry and the servers.
EOF
wait "$FERRY_PID"
rc=$?
FERRY_PID=
log "ferry exited with $rc"; tail -20 "$DEMO_DIR/ferry.log"
exit "$rc"
