# peers.d/ejabberd.sh — ejabberd 23.01 (Debian), optional second XMPP server
# (started with the xmpp group when WITH_EJABBERD=1).
#
# c2s on $EJ_C2S_PORT (no TLS), components on $EJ_COMPONENT_PORT with the same
# names and secrets as on Prosody; mod_privilege grants (XEP-0356 *v1*,
# urn:xmpp:privilege:1, no iq permission in this version) to the privileged
# ones only. Known limitation: a privileged roster *set* fails on 23.01
# (internal-server-error); roster get works.
# Gotchas handled here: `--config FILE` is overridden by /etc/ejabberd's
# ejabberdctl.cfg (so --config-dir); without ERL_DIST_PORT an epmd daemon on
# 0.0.0.0:4369 outlives ejabberd; with the default `global_routes: true` a
# component connection receives the traffic (and privileges) of every domain of
# the listener; run as root, ejabberdctl re-execs through su
# and escapes our process group (so setpriv to the ejabberd user); every
# ejabberdctl call needs the same HOME (the Erlang cookie lives there).

ejabberd_packages() { echo ejabberd; }
ejabberd_ports() { echo "$EJ_C2S_PORT $EJ_COMPONENT_PORT $EJ_DIST_PORT"; }

ejabberd_ctl() { # ARGS... : ejabberdctl against our node
  local E=$DIR/ejabberd
  env HOME="$E/spool" setpriv --reuid=ejabberd --regid=ejabberd --init-groups \
    ejabberdctl --config-dir "$E/etc" --spool "$E/spool" --logs "$E/logs" --node "ferrytest@localhost" "$@"
}

# ejabberd_yml C2S_PORT COMPONENT_PORT: the configuration of one node (both
# nodes of the cluster group use it). Several connections for one component
# domain (several ferry instances) are routed without `domain_balancing`:
# each node sends a stanza to a connection on the same node when there is
# one, else to one on another node. On 23.01 `domain_balancing` needs
# `component_number` (without it the component's handshake crashes with
# badkey), and with it the route of an instance that is down stays as an
# empty slot whose stanzas are dropped without an error — so when one
# instance stops, half of the users would lose their messages instead of
# moving to the other instance. See docs/scaling.md.
ejabberd_yml() {
  local c v
  cat <<YAML
hosts: [localhost]
loglevel: info
certfiles: []
listen:
  - {port: $1, ip: "127.0.0.1", module: ejabberd_c2s, starttls_required: false}
  - port: $2
    ip: "127.0.0.1"
    module: ejabberd_service
    # each connection routes only the domain it authenticated as (the default,
    # true, routes every domain below to every connection)
    global_routes: false
    hosts:
YAML
    for c in $PRIVILEGED_COMPONENTS $UNPRIVILEGED_COMPONENTS; do
      v=${c^^}_COMPONENT_SECRET
      echo "      \"$c.localhost\": {password: \"${!v}\"}"
    done
    cat <<YAML
auth_method: internal
auth_password_format: plain
s2s_access: none
acl:
  admin: {user: "admin@localhost"}
  ferry_privileged: {server: [$(for c in $PRIVILEGED_COMPONENTS; do printf '"%s.localhost", ' "$c"; done | sed 's/, $//')]}
access_rules:
  c2s: {allow: all}
  configure: {allow: admin}
  ferry_privileged: {allow: ferry_privileged}
modules:
  mod_adhoc: {}
  mod_admin_extra: {}
  mod_configure: {}
  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
  mod_vcard: {}
  mod_version: {}
  mod_privilege:
    roster: {both: ferry_privileged}
    message: {outgoing: ferry_privileged}
    presence: {roster: ferry_privileged}
YAML
}

# ejabberd_node_files DIR: ejabberdctl.cfg, inetrc (the second node's short
# host name resolves to 127.0.0.2, see ejabberd2.sh) and the Erlang cookie
# shared by the nodes of the cluster (each node has its own copy).
ejabberd_node_files() {
  local E=$1 ip=$2
  cat >"$E/etc/ejabberdctl.cfg" <<CFG
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"
INET_DIST_INTERFACE=$ip
ERL_DIST_PORT=$EJ_DIST_PORT
EJABBERD_PID_PATH=$E/ejabberd.pid
CFG
  { cat /etc/ejabberd/inetrc; echo "{host, {127,0,0,2}, [\"$EJ2_HOST\"]}."; } >"$E/etc/inetrc"
  printf '%s' "$EJ_COOKIE" >"$E/spool/.erlang.cookie"; chmod 400 "$E/spool/.erlang.cookie"
  chown -R ejabberd:ejabberd "$E"
}

ejabberd_launch() {
  local E=$DIR/ejabberd
  mkdir -p "$E/etc" "$E/spool" "$E/logs"
  ejabberd_yml "$EJ_C2S_PORT" "$EJ_COMPONENT_PORT" >"$E/etc/ejabberd.yml"
  ejabberd_node_files "$E" 127.0.0.1
  launch ejabberd env HOME="$E/spool" setpriv --reuid=ejabberd --regid=ejabberd --init-groups \
    ejabberdctl --config-dir "$E/etc" --spool "$E/spool" --logs "$E/logs" --node "ferrytest@localhost" foreground
}

ejabberd_wait() {
  wait_port "$EJ_C2S_PORT" 60 ejabberd
  wait_port "$EJ_COMPONENT_PORT" 10 ejabberd
}

ejabberd_ready() {
  ejabberd_wait
  # each ejabberdctl call boots a small Erlang node (~1 s): register in parallel
  local regs=() u r rc=0 i
  for u in $XMPP_USERS; do
    ejabberd_ctl register "${u%%:*}" localhost "${u#*:}" >/dev/null & regs+=($!)
  done
  for r in "${regs[@]}"; do wait "$r" || rc=1; done
  # load01..loadNN with XMPP_LOAD_USERS=N, ten at a time
  for ((i=1; i<=XMPP_LOAD_USERS; i++)); do
    ejabberd_ctl register "$(printf 'load%02d' "$i")" localhost "$XMPP_LOAD_PASSWORD" >/dev/null & regs+=($!)
    if (( i % 10 == 0 )); then for r in "${regs[@]}"; do wait "$r" || rc=1; done; regs=(); fi
  done
  for r in "${regs[@]}"; do wait "$r" || rc=1; done
  [ $rc = 0 ] || die "ejabberdctl register failed"
}

# asked to stop before its process group gets SIGTERM (cleaner, and faster)
ejabberd_pre_stop() { timeout 20 bash -c "$(declare -f ejabberd_ctl); DIR='$DIR'; ejabberd_ctl stop" >/dev/null 2>&1 || true; }

# (the component secrets too: the same as Prosody's, for runs without it)
ejabberd_env() {
  local c v
  echo "export EJ_C2S_PORT=$EJ_C2S_PORT EJ_COMPONENT_PORT=$EJ_COMPONENT_PORT"
  for c in $PRIVILEGED_COMPONENTS $UNPRIVILEGED_COMPONENTS; do
    v=${c^^}_COMPONENT_SECRET
    echo "export ${c^^}_COMPONENT_SECRET=${!v}"
  done
}
ejabberd_summary() { echo "ejabberd  c2s 127.0.0.1:$EJ_C2S_PORT  components 127.0.0.1:$EJ_COMPONENT_PORT (privilege v1)"; }
