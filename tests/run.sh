#!/bin/bash
# tests/run.sh — Ferry's full test command (what .ci/run calls).
#
# On a Debian 12 machine with a Rust toolchain it installs what is missing
# (apt: build-essential, curl, python3-venv, the servers; the test venv), starts
# the real servers (contrib/peers), builds ferry once with the test bridge, runs
# cargo fmt --check, clippy, the Rust tests (nextest, or cargo test without it)
# and the end-to-end tests (pytest), always stops the servers, prints a summary
# with timings and exits non-zero if anything failed.
#
#   tests/run.sh                    everything
#   tests/run.sh core irc           build + pytest of tests/core and tests/irc only
#   tests/run.sh rust               fmt + clippy + Rust tests only (servers
#                                   too: Rust integration tests use them)
#   tests/run.sh rust smoke         both
#   tests/run.sh core -k register   pytest -k expression (other -x/-v/... go to pytest too)
#   tests/run.sh core-pg            tests/core again with every ferry on PostgreSQL
#                                   ([storage] url; part of the full run)
#   tests/run.sh -- ARGS            everything after -- goes to pytest
#
# Options: --no-lint (skip fmt and clippy), --keep-peers (leave the servers
# running; stop them with contrib/peers/stop-peers.sh $PEERS_DIR), -h.
# Environment: CARGO_TARGET_DIR (honoured), CARGO_BUILD_JOBS (default 2),
# FERRY_VENVS (default /opt/ferry-venvs), WITH_EJABBERD (default 1), PEERS_DIR (default
# /tmp/ferry-test-peers), REUSE_PEERS=1 (use servers already running in
# PEERS_DIR and leave them running), FERRY_HTTP_PORT (first port for ferry's
# HTTP listeners, default 15780), every port of contrib/peers/lib.sh.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
LOG_TAG=run
# ejabberd too (the second XMPP server, XEP-0356 v1): the component tests use it
export WITH_EJABBERD=${WITH_EJABBERD:-1}
source "$REPO/contrib/peers/lib.sh"

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

SUITES=() PYTEST_ARGS=() RUST=0 LINT=1 KEEP=0 EXPLICIT=0 PG_CORE=0
while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --no-lint) LINT=0 ;;
    --keep-peers) KEEP=1 ;;
    -k|-m) PYTEST_ARGS+=("$1" "${2:?$1 needs an argument}"); shift ;;
    --) shift; PYTEST_ARGS+=("$@"); break ;;
    -*) PYTEST_ARGS+=("$1") ;;
    rust) RUST=1; EXPLICIT=1 ;;
    core-pg) PG_CORE=1; EXPLICIT=1 ;;
    all) EXPLICIT=0; SUITES=(); RUST=1 ;;
    *)
      d=${1#tests/}; d=${d%/}
      [ -e "tests/$d" ] || die "no test suite tests/$d (suites: rust $(cd tests && ls -d */ | grep -v -e harness -e __pycache__ | tr -d / | tr '\n' ' '))"
      SUITES+=("$d"); EXPLICIT=1 ;;
  esac
  shift
done
if [ $EXPLICIT = 0 ]; then RUST=1; PG_CORE=1; fi
WANT_PYTEST=1
[ $EXPLICIT = 1 ] && [ ${#SUITES[@]} -eq 0 ] && WANT_PYTEST=0

# which servers the selected suites need
if [ -z "${PEERS_FOR_TESTS:-}" ]; then
  if [ ${#SUITES[@]} -eq 0 ] && { [ $RUST = 1 ] || [ $PG_CORE = 0 ]; }; then PEERS_FOR_TESTS="xmpp irc matrix mail sms postgres ejcluster"
  else
    PEERS_FOR_TESTS=""
    for s in "${SUITES[@]}"; do
      case ${s%%/*} in
        core) PEERS_FOR_TESTS+=" xmpp" ;;
        smoke|irc) PEERS_FOR_TESTS+=" xmpp irc" ;;
        matrix) PEERS_FOR_TESTS+=" xmpp matrix" ;;
        email) PEERS_FOR_TESTS+=" xmpp mail" ;;
        sms) PEERS_FOR_TESTS+=" xmpp sms" ;;
        cluster) PEERS_FOR_TESTS+=" ejcluster irc postgres" ;;
        *) PEERS_FOR_TESTS+=" xmpp irc matrix mail sms ejcluster" ;;
      esac
    done
  fi
  # the PostgreSQL pass of tests/core (and the store's Rust tests) need PostgreSQL
  if [ $PG_CORE = 1 ] || [ $RUST = 1 ]; then PEERS_FOR_TESTS+=" xmpp postgres"; fi
fi
PEERS_FOR_TESTS=$(printf '%s\n' $PEERS_FOR_TESTS | awk '!seen[$0]++' | paste -sd' ')
# tests/cluster: 20 users (load01..load20) on the ejabberd cluster (lib.sh,
# sourced above, has already set XMPP_LOAD_USERS to 0 when it was unset)
case " $PEERS_FOR_TESTS " in *" ejcluster "*) [ "${XMPP_LOAD_USERS:-0}" -ge 20 ] || export XMPP_LOAD_USERS=20 ;; esac

export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export PEERS_DIR=${PEERS_DIR:-/tmp/ferry-test-peers}
export FERRY_HTTP_PORT=${FERRY_HTTP_PORT:-15780}
RUN_DIR=$(mktemp -d "${TMPBASE}/ferry-run.XXXXXX")
export FERRY_TEST_PIDFILE=$RUN_DIR/ferry.pids
T0=$(now)

# ---------------------------------------------------------------- steps and summary
STEP_NAMES=() STEP_RESULTS=() STEP_TIMES=()
TESTS_PASSED=0 TESTS_FAILED=0
record() { STEP_NAMES+=("$1"); STEP_RESULTS+=("$2"); STEP_TIMES+=("$3"); }
# step NAME COMMAND... : runs it (output shown and kept in $RUN_DIR/NAME.log)
step() {
  local name=$1 t rc; shift; t=$(now)
  printf '\n==> %s: %s\n' "$name" "$*"
  "$@" 2>&1 | tee "$RUN_DIR/$name.log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" = 0 ]; then record "$name" PASS "$(since "$t")"; else record "$name" "FAIL($rc)" "$(since "$t")"; fi
  return "$rc"
}
skip() { record "$1" "SKIP: $2" 0; }

PEERS_STARTED=0 PEERS_PID=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$PEERS_PID" ]; then kill "$PEERS_PID" 2>/dev/null; wait "$PEERS_PID" 2>/dev/null; fi
  # ferry processes a killed pytest left behind
  if [ -f "$FERRY_TEST_PIDFILE" ]; then
    while read -r pid; do
      if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q ferry; then kill -KILL "$pid" 2>/dev/null; fi
    done <"$FERRY_TEST_PIDFILE"
  fi
  if [ "$PEERS_STARTED" = 1 ] && [ "$KEEP" = 0 ]; then
    "$REPO/contrib/peers/stop-peers.sh" "$PEERS_DIR" >"$RUN_DIR/stop-peers.log" 2>&1 ||
      cat "$RUN_DIR/stop-peers.log"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

# ---------------------------------------------------------------- install
t=$(now)
if ! command -v cargo >/dev/null || ! rustc --version >/dev/null 2>&1; then
  echo "run.sh: no Rust toolchain (cargo/rustc not found in PATH). Install Rust 1.95 or newer" \
       "(rustup, or the CI image's toolchain) and run again." >&2
  exit 2
fi
log "$(rustc --version), $(cargo --version)"
install_prereqs() {
  # profanity and tmux: tests/forms drives the Profanity client in tmux
  ensure_packages build-essential curl ca-certificates procps python3 profanity tmux
  ensure_venv test -r "$REPO/tests/requirements.txt"
}
step install install_prereqs || { echo "run.sh: installing the prerequisites failed" >&2; exit 1; }
NEXTEST=0
if cargo nextest --version >/dev/null 2>&1; then NEXTEST=1; else log "cargo-nextest not found: using cargo test"; fi

# ---------------------------------------------------------------- servers (in the background, while building)
PEERS_LOG=$RUN_DIR/peers.log
if [ $WANT_PYTEST = 1 ] || [ $RUST = 1 ] || [ $PG_CORE = 1 ]; then
  if [ "${REUSE_PEERS:-0}" = 1 ] && [ -f "$PEERS_DIR/peers.env" ]; then
    log "using the servers already running in $PEERS_DIR (REUSE_PEERS=1)"
    echo reuse >"$PEERS_LOG"
  else
    if ls "$PEERS_DIR"/pids/*.pid >/dev/null 2>&1; then
      log "servers of an earlier run are still recorded in $PEERS_DIR: stopping them"
      "$REPO/contrib/peers/stop-peers.sh" "$PEERS_DIR"
    fi
    T_PEERS=$(now)
    PEERS="$PEERS_FOR_TESTS" "$REPO/contrib/peers/start-peers.sh" "$PEERS_DIR" >"$PEERS_LOG" 2>&1 &
    PEERS_PID=$! PEERS_STARTED=1
    log "starting servers ($PEERS_FOR_TESTS) in $PEERS_DIR in the background (log: $PEERS_LOG)"
  fi
fi

# waits for the servers started in the background (once); 1 if they failed
peers_ok=1
wait_peers() {
  if [ -n "$PEERS_PID" ]; then
    if wait "$PEERS_PID"; then
      # (its own start-up time: it ran in parallel with the build)
      record peers PASS "$(sed -nE 's/^peers started under .* in ([0-9.]+)s.*/\1/p' "$PEERS_LOG" | tail -1)"
    else
      peers_ok=0; record peers FAIL "$(since "$T_PEERS")"
      echo "run.sh: starting the servers failed:" >&2; tail -30 "$PEERS_LOG" >&2
    fi
    PEERS_PID=
    cat "$PEERS_LOG"
  fi
  [ $peers_ok = 1 ]
}
# runs a command with the servers' settings (peers.env) in its environment
with_peers() {
  ( set -a; [ -f "$PEERS_DIR/peers.env" ] && source "$PEERS_DIR/peers.env"; set +a; exec "$@" )
}

# ---------------------------------------------------------------- Rust
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])') || TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
export FERRY_BIN=$TARGET_DIR/debug/ferry
BUILD_OK=0
if [ $LINT = 1 ] && [ $RUST = 1 ]; then step fmt cargo fmt --all --check; fi
if step build cargo build --locked --features test-bridge; then BUILD_OK=1; fi
if [ $RUST = 1 ]; then
  if [ $LINT = 1 ]; then
    step clippy cargo clippy --workspace --all-targets --features test-bridge --locked -- -D warnings
  fi
  # Rust integration tests talk to the real servers (they fail, saying so,
  # when the servers are missing).
  wait_peers
  if [ $NEXTEST = 1 ]; then
    step rust-tests with_peers cargo nextest run --workspace --features test-bridge --locked --no-fail-fast
    summary=$(grep -E '^ +Summary .* tests? run:' "$RUN_DIR/rust-tests.log" | tail -1)
    p=$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$summary"); f=$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$summary")
    TESTS_PASSED=$((TESTS_PASSED + ${p:-0})); TESTS_FAILED=$((TESTS_FAILED + ${f:-0}))
  else
    step rust-tests with_peers cargo test --workspace --features test-bridge --locked --no-fail-fast
    read -r p f < <(awk '/^test result:/ {for (i=1;i<=NF;i++) {if ($(i+1) ~ /^passed/) p+=$i; if ($(i+1) ~ /^failed/) f+=$i}} END {print p+0, f+0}' "$RUN_DIR/rust-tests.log")
    TESTS_PASSED=$((TESTS_PASSED + p)); TESTS_FAILED=$((TESTS_FAILED + f))
  fi
fi

# ---------------------------------------------------------------- end-to-end
if [ $WANT_PYTEST = 1 ]; then
  wait_peers
  if [ $BUILD_OK = 0 ]; then
    record pytest "FAIL (no ferry binary: the build failed)" 0
  elif [ $peers_ok = 0 ]; then
    record pytest "FAIL (the servers did not start)" 0
  else
    paths=()
    if [ ${#SUITES[@]} -eq 0 ]; then paths=(.); else for s in "${SUITES[@]}"; do paths+=("$s"); done; fi
    pytest_run() {
      ( set -a; source "$PEERS_DIR/peers.env"; set +a
        cd "$REPO/tests" && exec "$FERRY_VENVS/test/bin/python" -m pytest -p no:cacheprovider \
          --junitxml="$RUN_DIR/pytest.xml" "${paths[@]}" "${PYTEST_ARGS[@]}" )
    }
    step pytest pytest_run
    rc=$?
    if [ $rc = 5 ]; then
      echo "run.sh: pytest selected no test (exit 5)" >&2
    fi
    if [ -f "$RUN_DIR/pytest.xml" ]; then
      read -r p f < <(python3 - "$RUN_DIR/pytest.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
suites = [r] if r.tag == "testsuite" else r.findall("testsuite")
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
sk = sum(int(s.get("skipped", 0)) for s in suites)
print(t - f - sk, f)
PY
)
      TESTS_PASSED=$((TESTS_PASSED + p)); TESTS_FAILED=$((TESTS_FAILED + f))
    fi
  fi
else
  skip pytest "no end-to-end suite selected"
fi

# ---------------------------------------------------------------- tests/core on PostgreSQL
# The same core suite with every ferry on a fresh PostgreSQL database of its
# own ([storage] url, tests/harness/ferry.py): every store path (accounts,
# sealed values, preferences, archive/MAM, message ids, roster, outbox,
# deliveries, restarts) through the gateway against the real server.
if [ $PG_CORE = 1 ]; then
  wait_peers
  if [ $BUILD_OK = 0 ]; then
    record core-pg "FAIL (no ferry binary: the build failed)" 0
  elif [ $peers_ok = 0 ]; then
    record core-pg "FAIL (the servers did not start)" 0
  else
    pytest_pg() {
      ( set -a; source "$PEERS_DIR/peers.env"; set +a
        export FERRY_TEST_STORAGE_URL=${FERRY_TEST_PG_URL:?the postgres peer is not running}
        cd "$REPO/tests" && exec "$FERRY_VENVS/test/bin/python" -m pytest -p no:cacheprovider \
          --junitxml="$RUN_DIR/pytest-pg.xml" core "${PYTEST_ARGS[@]}" )
    }
    step core-pg pytest_pg
    if [ -f "$RUN_DIR/pytest-pg.xml" ]; then
      read -r p f < <(python3 - "$RUN_DIR/pytest-pg.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
suites = [r] if r.tag == "testsuite" else r.findall("testsuite")
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
sk = sum(int(s.get("skipped", 0)) for s in suites)
print(t - f - sk, f)
PY
)
      TESTS_PASSED=$((TESTS_PASSED + p)); TESTS_FAILED=$((TESTS_FAILED + f))
    fi
  fi
fi

# ---------------------------------------------------------------- summary
STATUS=0
printf '\n==== summary (%ss in total; logs in %s) ====\n' "$(since "$T0")" "$RUN_DIR"
for i in "${!STEP_NAMES[@]}"; do
  printf '%-8s %-12s %8ss\n' "${STEP_RESULTS[$i]%% *}" "${STEP_NAMES[$i]}" "${STEP_TIMES[$i]}"
  case ${STEP_RESULTS[$i]} in PASS|SKIP*) ;; *) STATUS=1; [ "${STEP_RESULTS[$i]}" != "${STEP_RESULTS[$i]%% *}" ] && echo "         ${STEP_RESULTS[$i]#* }" ;; esac
done
[ "$STATUS" = 0 ] && [ $((TESTS_PASSED + TESTS_FAILED)) -eq 0 ] && { echo "no test ran"; STATUS=1; }
echo "tests: $TESTS_PASSED passed, $TESTS_FAILED failed"
exit $STATUS
