# peers.d/prosody.sh — Prosody 0.12 (Debian) with mod_privilege from prosody-modules.
#
# c2s on $XMPP_C2S_PORT (plaintext SASL PLAIN, no TLS), components on
# $XMPP_COMPONENT_PORT: irc/matrix/test.localhost privileged (XEP-0356),
# irc2/matrix2/test2.localhost not; conference.localhost (Prosody's own MUC);
# upload.localhost (XEP-0363 http_file_share, plain HTTP on $XMPP_HTTP_PORT).

prosody_packages() { echo prosody prosody-modules lua-unbound; }
prosody_ports() {
  echo "$XMPP_C2S_PORT $XMPP_COMPONENT_PORT"
  [ "$XMPP_UPLOAD" = 1 ] && echo "$XMPP_HTTP_PORT"
  return 0
}

prosody_cfg() { echo "$DIR/prosody/prosody.cfg.lua"; }

prosody_launch() {
  local X=$DIR/prosody c
  mkdir -p "$X/data" "$X/certs"
  {
    cat <<LUA
-- loopback-only Prosody for Ferry's tests (written by contrib/peers/start-peers.sh)
pidfile = "$X/prosody.pid"
data_path = "$X/data"
certificates = "$X/certs"
daemonize = false
run_as_root = true
log = { debug = "$X/prosody.debug.log"; info = "*console" }
interfaces = { "127.0.0.1" }
-- TCP_NODELAY, so the server adds no Nagle stalls to latency measurements
network_settings = { nagle = $PROSODY_NAGLE }
c2s_ports = { $XMPP_C2S_PORT }
c2s_direct_tls_ports = { }
s2s_ports = { }
component_ports = { $XMPP_COMPONENT_PORT }
component_interfaces = { "127.0.0.1" }
LUA
    if [ "$XMPP_UPLOAD" = 1 ]; then
      cat <<LUA
http_ports = { $XMPP_HTTP_PORT }
http_interfaces = { "127.0.0.1" }
https_ports = { }
-- URLs handed out by upload.localhost point at loopback, plain HTTP
http_external_url = "http://127.0.0.1:$XMPP_HTTP_PORT/"
http_default_host = "upload.localhost"
LUA
    else
      echo 'http_ports = { }'; echo 'https_ports = { }'
    fi
    cat <<LUA
c2s_require_encryption = false
s2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_plain"
storage = "internal"
admins = { "admin@localhost" }
allow_registration = false
modules_enabled = {
  "roster"; "saslauth"; "disco"; "ping"; "register"; "admin_adhoc";
  "presence"; "message"; "iq"; "carbons"; "blocklist"; "vcard4"; "pep";
  "uptime"; "version";
  "privilege";   -- XEP-0356, from Debian's prosody-modules
}
modules_disabled = { "s2s"; "tls" }

VirtualHost "localhost"
  -- XEP-0356 grants (see contrib/prosody.cfg.lua for what each one is for)
  privileged_entities = {
LUA
    for c in $PRIVILEGED_COMPONENTS; do
      cat <<LUA
    ["$c.localhost"] = {
      roster = "both"; message = "outgoing"; presence = "roster";
      iq = {
        ["http://jabber.org/protocol/pubsub"] = "both";
        ["http://jabber.org/protocol/pubsub#owner"] = "set";
        ["urn:xmpp:http:upload:0"] = "get";
      };
    };
LUA
    done
    echo '  }'
    echo
    echo '-- Ferry components with XEP-0356 privileges'
    for c in $PRIVILEGED_COMPONENTS; do
      local v=${c^^}_COMPONENT_SECRET
      printf 'Component "%s.localhost"\n  component_secret = "%s"\n  modules_enabled = { "privilege" }\n' "$c" "${!v}"
    done
    echo '-- Ferry components without privileges (to test the fallbacks)'
    for c in $UNPRIVILEGED_COMPONENTS; do
      local v=${c^^}_COMPONENT_SECRET
      printf 'Component "%s.localhost"\n  component_secret = "%s"\n' "$c" "${!v}"
    done
    for c in $XMPP_EXTRA_COMPONENTS; do
      printf 'Component "%s.localhost"\n  component_secret = "%s"\n' "${c%%:*}" "${c#*:}"
    done
    echo
    printf '%s\n' 'Component "conference.localhost" "muc"' \
      '  -- a new room is usable at once (Prosody locks it until configured by default)' \
      '  muc_room_locking = false' '  restrict_room_creation = false'
    if [ "$XMPP_UPLOAD" = 1 ]; then
      cat <<LUA

Component "upload.localhost" "http_file_share"
  http_file_share_size_limit = 10*1024*1024
  http_file_share_access = { "localhost" }
LUA
    fi
  } >"$X/prosody.cfg.lua"

  local u
  for u in $XMPP_USERS; do
    prosodyctl --config "$X/prosody.cfg.lua" register "${u%%:*}" localhost "${u#*:}" >/dev/null 2>&1 ||
      die "prosodyctl register ${u%%:*} failed"
  done
  if [ "$XMPP_LOAD_USERS" -gt 0 ]; then
    # The load users' account files written directly in the internal_plain
    # format `prosodyctl register` writes (what it does for alice above), with
    # the server not yet running: 1,000 accounts in a blink instead of ~100 s.
    local acc=$X/data/localhost/accounts u pw=${XMPP_LOAD_PASSWORD//\\/\\\\}
    pw=${pw//\"/\\\"}
    mkdir -p "$acc"
    for i in $(seq 1 "$XMPP_LOAD_USERS"); do
      printf -v u 'load%02d' "$i"
      printf 'return {\n\t["password"] = "%s";\n};\n' "$pw" >"$acc/$u.dat"
    done
  fi
  launch prosody prosody -F --config "$X/prosody.cfg.lua"
}

prosody_wait() {
  wait_port "$XMPP_C2S_PORT" 30 prosody
  wait_port "$XMPP_COMPONENT_PORT" 30 prosody
  [ "$XMPP_UPLOAD" = 1 ] && wait_port "$XMPP_HTTP_PORT" 30 prosody
  return 0
}
prosody_ready() { prosody_wait; }

prosody_env() {
  local c v
  echo "export XMPP_SERVER=prosody XMPP_DOMAIN=localhost XMPP_HOST=127.0.0.1"
  echo "export XMPP_C2S_PORT=$XMPP_C2S_PORT XMPP_COMPONENT_PORT=$XMPP_COMPONENT_PORT XMPP_MUC=conference.localhost"
  echo "export XMPP_USERS=\"$XMPP_USERS\""
  echo "export XMPP_LOAD_USERS=$XMPP_LOAD_USERS XMPP_LOAD_PASSWORD=$XMPP_LOAD_PASSWORD   # load01..loadNN@localhost"
  echo "export XMPP_EXTRA_COMPONENTS=\"$XMPP_EXTRA_COMPONENTS\""
  echo "export XMPP_PRIVILEGED_COMPONENTS=\"$(for c in $PRIVILEGED_COMPONENTS; do printf '%s.localhost ' "$c"; done | sed 's/ $//')\""
  echo "export XMPP_UNPRIVILEGED_COMPONENTS=\"$(for c in $UNPRIVILEGED_COMPONENTS; do printf '%s.localhost ' "$c"; done | sed 's/ $//')\""
  for c in $PRIVILEGED_COMPONENTS $UNPRIVILEGED_COMPONENTS; do
    v=${c^^}_COMPONENT_SECRET
    echo "export ${c^^}_COMPONENT_JID=$c.localhost ${c^^}_COMPONENT_SECRET=${!v}"
  done
  if [ "$XMPP_UPLOAD" = 1 ]; then
    echo "export XMPP_UPLOAD=1 XMPP_UPLOAD_JID=upload.localhost XMPP_HTTP_PORT=$XMPP_HTTP_PORT"
  else
    echo "export XMPP_UPLOAD=0 XMPP_UPLOAD_JID="
  fi
}

prosody_summary() {
  echo "prosody   c2s 127.0.0.1:$XMPP_C2S_PORT  components 127.0.0.1:$XMPP_COMPONENT_PORT ($PRIVILEGED_COMPONENTS privileged; $UNPRIVILEGED_COMPONENTS not)$([ "$XMPP_UPLOAD" = 1 ] && echo "  upload http://127.0.0.1:$XMPP_HTTP_PORT")"
}
