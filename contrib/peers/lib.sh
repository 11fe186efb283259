# lib.sh — shared settings and helpers of Ferry's peer scripts (sourced, not run).
#
# Every port, secret and path below can be overridden from the environment.
# The peers themselves are described in peers.d/NAME.sh, one file per server;
# see README.md for how to add one.

# ---------------------------------------------------------------- locations
PEERS_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FERRY_VENVS=${FERRY_VENVS:-/opt/ferry-venvs}
TMPBASE=${TMPDIR:-/tmp}

# ---------------------------------------------------------------- what to start
# Groups: xmpp = Prosody (+ ejabberd with WITH_EJABBERD=1), irc = InspIRCd + ngIRCd,
# matrix = Synapse, mail = Postfix + Dovecot + autoconfig HTTP + dnsmasq (SRV),
# sms = Kannel + an SMPP SMSC + the Twilio mock, postgres = PostgreSQL ([storage] url).
# Add a group here and a peers.d/NAME.sh to support a new server.
PEERS=${PEERS:-"xmpp irc matrix"}
WITH_EJABBERD=${WITH_EJABBERD:-0}
declare -A PEER_GROUPS=(
  [xmpp]="prosody"
  [irc]="inspircd ngircd"
  [matrix]="synapse"
  [mail]="postfix dovecot autoconfig maildns"
  [sms]="bearerbox smsbox fakesmsc smsc twiliomock"
  [postgres]="postgres"
)
[ "$WITH_EJABBERD" = 1 ] && PEER_GROUPS[xmpp]="prosody ejabberd"
# Launch order: slow starters first, so their start-up overlaps the fast ones'.
PEER_ORDER=(synapse ejabberd postgres postfix prosody inspircd ngircd dovecot autoconfig maildns bearerbox smsbox fakesmsc smsc twiliomock)

# ---------------------------------------------------------------- versions
SYNAPSE_VERSION=${SYNAPSE_VERSION:-1.163.2}
SLIXMPP_VERSION=${SLIXMPP_VERSION:-1.17.0}
SMPP34_VERSION=${SMPP34_VERSION:-1.5.0}      # the SMSC's SMPP engine (PyPI smpp34)

# ---------------------------------------------------------------- ports
XMPP_C2S_PORT=${XMPP_C2S_PORT:-15222}
XMPP_COMPONENT_PORT=${XMPP_COMPONENT_PORT:-15347}
XMPP_HTTP_PORT=${XMPP_HTTP_PORT:-15280}      # Prosody's HTTP (XEP-0363 upload.localhost)
EJ_C2S_PORT=${EJ_C2S_PORT:-25222}
EJ_COMPONENT_PORT=${EJ_COMPONENT_PORT:-25347}
EJ_DIST_PORT=${EJ_DIST_PORT:-25370}
IRC_PORT=${IRC_PORT:-16667}                  # InspIRCd (fakelag off)
IRC_TLS_PORT=${IRC_TLS_PORT:-16697}          # InspIRCd over TLS (self-signed certificate)
NGIRCD_PORT=${NGIRCD_PORT:-16668}            # ngIRCd (flood penalty off)
MATRIX_PORT=${MATRIX_PORT:-18008}            # Synapse client API
MATRIX_AS_PORT=${MATRIX_AS_PORT:-18009}      # the gateway's appservice listener (not started here)
SMTP_PORT=${SMTP_PORT:-11025}                # Postfix, no auth (correspondents inject mail)
SUBMISSION_PORT=${SUBMISSION_PORT:-11587}    # Postfix submission, AUTH + STARTTLS
SUBMISSIONS_PORT=${SUBMISSIONS_PORT:-11465}  # Postfix submission, AUTH, implicit TLS
IMAP_PORT=${IMAP_PORT:-11143}                # Dovecot IMAP (IDLE on 127.0.0.1, none on 127.0.0.2)
IMAPS_PORT=${IMAPS_PORT:-11993}              # Dovecot IMAP, implicit TLS
LMTP_PORT=${LMTP_PORT:-11024}                # Dovecot LMTP (Postfix delivers here)
AUTOCONFIG_PORT=${AUTOCONFIG_PORT:-11080}    # static HTTP with Mozilla autoconfig files
MAIL_DNS_PORT=${MAIL_DNS_PORT:-11053}        # dnsmasq: SRV records for srv.test (UDP)
KANNEL_ADMIN_PORT=${KANNEL_ADMIN_PORT:-23000}      # bearerbox admin/status
KANNEL_BOX_PORT=${KANNEL_BOX_PORT:-23001}          # bearerbox <-> smsbox
KANNEL_SMSC_PORT=${KANNEL_SMSC_PORT:-23010}        # fake SMSC "fake": fakesmsc receives MT here
KANNEL_SMSC2_PORT=${KANNEL_SMSC2_PORT:-23011}      # fake SMSC "fake-mo": MO injection
KANNEL_SENDSMS_PORT=${KANNEL_SENDSMS_PORT:-23013}  # smsbox sendsms HTTP
SMPP_PORT=${SMPP_PORT:-22775}                      # the SMSC (smpp34)
SMPP_CONTROL_PORT=${SMPP_CONTROL_PORT:-22776}      # its control HTTP (inject MO, receipts)
TWILIO_MOCK_PORT=${TWILIO_MOCK_PORT:-22880}        # the Twilio mock
SMS_WEBHOOK_PORT=${SMS_WEBHOOK_PORT:-22890}        # where Kannel sends MO: the gateway's HTTP (not started here)
PG_PORT=${PG_PORT:-15432}                          # PostgreSQL (the shared [storage] url)

# ---------------------------------------------------------------- XMPP accounts and components
XMPP_DOMAIN=localhost
XMPP_USERS=${XMPP_USERS:-"admin:adminpw alice:alicepw bob:bobpw carol:carolpw"}
XMPP_LOAD_USERS=${XMPP_LOAD_USERS:-0}        # also load01..loadNN (password $XMPP_LOAD_PASSWORD)
XMPP_LOAD_PASSWORD=${XMPP_LOAD_PASSWORD:-loadpw}
# XEP-0114 components Ferry connects as. The first three are privileged (XEP-0356),
# the "2" ones are not (to test the fallbacks). Secrets: <NAME>_COMPONENT_SECRET.
PRIVILEGED_COMPONENTS="irc matrix test email sms"
UNPRIVILEGED_COMPONENTS="irc2 matrix2 test2"
IRC_COMPONENT_SECRET=${IRC_COMPONENT_SECRET:-ircsecret}
MATRIX_COMPONENT_SECRET=${MATRIX_COMPONENT_SECRET:-matrixsecret}
TEST_COMPONENT_SECRET=${TEST_COMPONENT_SECRET:-testsecret}
EMAIL_COMPONENT_SECRET=${EMAIL_COMPONENT_SECRET:-emailsecret}
SMS_COMPONENT_SECRET=${SMS_COMPONENT_SECRET:-smssecret}
IRC2_COMPONENT_SECRET=${IRC2_COMPONENT_SECRET:-irc2secret}
MATRIX2_COMPONENT_SECRET=${MATRIX2_COMPONENT_SECRET:-matrix2secret}
TEST2_COMPONENT_SECRET=${TEST2_COMPONENT_SECRET:-test2secret}
# More plain components, "name:secret …" (name.localhost): the benchmarks' competitors
# (XMPP_EXTRA_COMPONENTS="biboumi:biboumisecret" for tests/irc/bench_scale.py).
XMPP_EXTRA_COMPONENTS=${XMPP_EXTRA_COMPONENTS:-}
PROSODY_NAGLE=${PROSODY_NAGLE:-false}
# XEP-0363 file sharing on Prosody (upload.localhost, plain HTTP on loopback); 0 = off
XMPP_UPLOAD=${XMPP_UPLOAD:-1}

# ---------------------------------------------------------------- IRC
IRC_OPER_NAME=${IRC_OPER_NAME:-oper}
IRC_OPER_PASSWORD=${IRC_OPER_PASSWORD:-operpw}
INSPIRCD_MODULES=${INSPIRCD_MODULES:-"cap ircv3 ircv3_servertime ircv3_echomessage ircv3_msgid ircv3_batch ircv3_labeledresponse ircv3_capnotify ircv3_chghost ircv3_invitenotify ircv3_ctctags ircv3_accounttag namesx uhnames monitor setname botmode"}
# Connections InspIRCd accepts from one address and in all (the 1,000-user benchmark needs more)
IRC_MAX_CONNECTIONS=${IRC_MAX_CONNECTIONS:-1000}
# ngIRCd's MaxConnections and MaxConnectionsIP (0 = no limit)
NGIRCD_MAX_CONNECTIONS=${NGIRCD_MAX_CONNECTIONS:-0}
NGIRCD_LISTEN=${NGIRCD_LISTEN:-127.0.0.1,127.0.0.2}
NGIRCD_MAX_PENALTY=${NGIRCD_MAX_PENALTY:-0}
# ngIRCd accepts WEBIRC with this password (the IRC bridge's webirc_password test)
NGIRCD_WEBIRC_PASSWORD=${NGIRCD_WEBIRC_PASSWORD:-webircpw}

# ---------------------------------------------------------------- Matrix
MATRIX_USERS=${MATRIX_USERS:-"alice:alicepw bob:bobpw carol:carolpw"}
MATRIX_REGISTRATION_SECRET=test-registration-secret
MATRIX_AS_TOKEN=as-token-for-tests
MATRIX_HS_TOKEN=hs-token-for-tests

# ---------------------------------------------------------------- mail
MAIL_USERS=${MAIL_USERS:-"alice:alicepw bob:bobpw carol:carolpw dave:davepw"}
MAIL_LOAD_USERS=${MAIL_LOAD_USERS:-0}        # also mload01..NN (password $MAIL_LOAD_PASSWORD)
MAIL_LOAD_PASSWORD=${MAIL_LOAD_PASSWORD:-loadpw}
# ---------------------------------------------------------------- SMS
KANNEL_ADMIN_PASSWORD=${KANNEL_ADMIN_PASSWORD:-adminpw}
KANNEL_USER=${KANNEL_USER:-ferry}
KANNEL_PASSWORD=${KANNEL_PASSWORD:-ferrypw}
SMS_WEBHOOK_SECRET=${SMS_WEBHOOK_SECRET:-kannel-webhook-secret-for-tests}
SMPP_SYSTEM_ID=${SMPP_SYSTEM_ID:-ferry}
SMPP_PASSWORD=${SMPP_PASSWORD:-ferrypw}
# SID:TOKEN:NUMBER… per account (the operator's, and one a user brings)
TWILIO_MOCK_ACCOUNTS=${TWILIO_MOCK_ACCOUNTS:-"ACoperator00000000000000000000000:operatortoken:+15550001001:+15550001002:+15550001003 ACuser0000000000000000000000000000:usertoken:+15550002001"}

# ---------------------------------------------------------------- PostgreSQL
PG_USER=${PG_USER:-ferry}
PG_DATABASE=${PG_DATABASE:-ferry}

# ---------------------------------------------------------------- helpers
log() { printf '[%s %(%H:%M:%S)T] %s\n' "${LOG_TAG:-peers}" -1 "$*"; }
die() { echo "${LOG_TAG:-peers}: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}'; }
past() { awk -v a="$1" -v b="$(now)" -v l="$2" 'BEGIN{exit !(b-a>l)}'; }

# the peers of the selected groups, in launch order
selected_peers() {
  local want=" " g p
  for g in $PEERS; do
    [ -n "${PEER_GROUPS[$g]+x}" ] || die "unknown peer group '$g' (known: ${!PEER_GROUPS[*]})"
    want+="${PEER_GROUPS[$g]} "
  done
  for p in "${PEER_ORDER[@]}"; do [[ "$want" == *" $p "* ]] && echo "$p"; done
  return 0
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # PORT TIMEOUT NAME
  local t; t=$(now)
  while port_free "$1"; do
    sleep 0.05
    past "$t" "$2" && die "$3 did not open port $1 within $2 s; see $DIR/logs"
  done
  return 0
}
wait_until() { # TIMEOUT DESCRIPTION COMMAND...
  local lim=$1 what=$2 t; shift 2; t=$(now)
  until "$@" >/dev/null 2>&1; do
    sleep 0.05
    past "$t" "$lim" && die "timed out after $lim s waiting for $what; see $DIR/logs"
  done
  return 0
}

# live (non-zombie) members of process group $1
members() { ps -e -o pid=,pgid=,stat= | awk -v g="$1" '$2==g && $3 !~ /^Z/ {print $1}'; }
starttime() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }

# launch NAME CMD... : runs CMD in its own session/process group with output to
# $DIR/logs/NAME.log, records "PID STARTTIME" in $DIR/pids/NAME.pid and the command
# line in $DIR/cmds/NAME.cmd (restart-peer.sh relaunches it from there).
launch() {
  local name=$1; shift
  local out=$DIR/logs/$name.log
  printf '%q ' "$@" >"$DIR/cmds/$name.cmd"
  setsid "$@" >>"$out" 2>&1 </dev/null &
  local pid=$!
  echo "$pid $(starttime "$pid")" >"$DIR/pids/$name.pid"
}
relaunch() { # NAME: start again from the recorded command line
  local name=$1 cmd
  cmd=$(cat "$DIR/cmds/$name.cmd") || die "$name was never started from $DIR"
  eval "setsid $cmd >>\"\$DIR/logs/\$name.log\" 2>&1 </dev/null &"
  local pid=$!
  echo "$pid $(starttime "$pid")" >"$DIR/pids/$name.pid"
}

# stop_group NAME [TIMEOUT]: SIGTERM to the recorded process group, SIGKILL after
# TIMEOUT s (default 20); never touches a recycled PID. Returns 0 if something ran.
stop_group() {
  local name=$1 lim=${2:-20} f=$DIR/pids/$1.pid pid start t left
  [ -f "$f" ] || return 1
  read -r pid start <"$f" || true
  rm -f "$f"
  [ -n "${pid:-}" ] || return 1
  if [ -r "/proc/$pid/stat" ] && [ "$(starttime "$pid")" != "${start:-}" ]; then
    log "$name: pid $pid was recycled, not touching it"; return 1
  fi
  if [ -z "$(members "$pid")" ] && ! kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) was already gone"; return 1
  fi
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  t=$(now)
  while [ -n "$(members "$pid")" ] && ! past "$t" "$lim"; do sleep 0.05; done
  left=$(members "$pid")
  if [ -n "$left" ]; then
    log "$name (group $pid) ignored SIGTERM, sending SIGKILL to: $left"
    kill -KILL -- "-$pid" 2>/dev/null; kill -KILL $left 2>/dev/null
  fi
  return 0
}

# ensure_packages PKG... : apt-get install what is missing. Debian containers ship
# /usr/sbin/policy-rc.d (exit 101) so installing a daemon does not start a system-wide
# instance on the default ports; if it is absent it is added for the duration of the
# install. Waits for someone else's apt lock instead of failing.
ensure_packages() {
  local missing=() p t rc=0 added=0 aptlog=$TMPBASE/ferry-apt.log
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing packages ${missing[*]} (run as root, or install them first)"
  log "apt-get install ${missing[*]}"; t=$(now)
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; added=1
  fi
  local apt=(apt-get -o DPkg::Lock::Timeout=900 -y -q --no-install-recommends)
  if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "${missing[@]}" >"$aptlog" 2>&1; then
    apt-get -o DPkg::Lock::Timeout=900 -q update >>"$aptlog" 2>&1
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "${missing[@]}" >>"$aptlog" 2>&1 || rc=1
  fi
  [ $added = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ $rc = 0 ] || { tail -20 "$aptlog" >&2; die "apt-get install ${missing[*]} failed (log: $aptlog)"; }
  log "apt done in $(since "$t")s"
}

# ensure_venv NAME PIP-ARGS... : a venv in $FERRY_VENVS/NAME with PIP-ARGS installed;
# reused as long as the arguments (and the content of any -r file) are unchanged.
ensure_venv() {
  local name=$1; shift
  local v=$FERRY_VENVS/$name spec t a
  spec=$(printf '%s\n' "$@"; for a in "$@"; do [ -f "$a" ] && cat "$a"; done; true)
  if [ -x "$v/bin/python" ] && [ "$(cat "$v/.ferry-spec" 2>/dev/null)" = "$spec" ]; then return 0; fi
  python3 -c 'import ensurepip' 2>/dev/null || ensure_packages python3-venv
  log "creating venv $v ($*)"; t=$(now)
  mkdir -p "$FERRY_VENVS"
  [ -x "$v/bin/python" ] || python3 -m venv "$v" || die "python3 -m venv $v failed"
  "$v/bin/pip" install -q "$@" >"$v.pip.log" 2>&1 || { tail -20 "$v.pip.log" >&2; die "pip install into $v failed (log: $v.pip.log)"; }
  printf '%s' "$spec" >"$v/.ferry-spec"
  log "venv $v ready in $(since "$t")s"
}

# load every peer definition
for _f in "$PEERS_HOME"/peers.d/*.sh; do source "$_f"; done
unset _f
