# peers.d/synapse.sh — Synapse (pip, in $FERRY_VENVS/synapse), SQLite, no TLS.
#
# Client API on $MATRIX_PORT, server_name localhost, users from $MATRIX_USERS,
# rate limits relaxed (the defaults break tests), registration open, an
# appservice registration for the gateway ($MATRIX_AS_PORT, tokens in peers.env).
# Synapse backs off retries to an appservice that was down (2 s … 64 s+):
# start the gateway before generating appservice-relevant events.

synapse_packages() { :; }
synapse_venv() { echo "synapse matrix-synapse==$SYNAPSE_VERSION"; }
synapse_ports() { echo "$MATRIX_PORT"; }

synapse_launch() {
  local S=$DIR/synapse V=$FERRY_VENVS/synapse
  mkdir -p "$S"
  cat >"$S/homeserver.yaml" <<YAML
server_name: "localhost"
public_baseurl: "http://127.0.0.1:$MATRIX_PORT/"
pid_file: $S/homeserver.pid
listeners:
  - port: $MATRIX_PORT
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: $S/homeserver.db
log_config: "$S/log.config"
media_store_path: $S/media_store
signing_key_path: "$S/localhost.signing.key"
registration_shared_secret: "$MATRIX_REGISTRATION_SECRET"
macaroon_secret_key: "test-macaroon-secret"
form_secret: "test-form-secret"
report_stats: false
enable_registration: true
enable_registration_without_verification: true
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
url_preview_enabled: false
app_service_config_files:
  - $S/appservice-ferry.yaml
# Password hashing at bcrypt's lowest cost: every test and benchmark
# registers and logs in many accounts, and at the default cost (12) each
# login took ~0.3 s of Synapse's one CPU-bound thread; with 100 accounts
# syncing that queued logins past clients' 60 s timeouts (matridge's
# logins failed with internal-server-error). Test accounts only.
bcrypt_rounds: 4
# tests must not be rate limited (defaults: 0.2 msg/s burst 10, 0.003 logins/s burst 5, ...)
rc_message: &nolimit {per_second: 10000, burst_count: 10000}
rc_registration: *nolimit
rc_login: {address: *nolimit, account: *nolimit, failed_attempts: *nolimit}
rc_joins: {local: *nolimit, remote: *nolimit}
rc_joins_per_room: *nolimit
rc_invites: {per_room: *nolimit, per_user: *nolimit, per_issuer: *nolimit}
rc_room_creation: *nolimit
rc_presence: {per_user: *nolimit}
rc_profile: *nolimit
rc_admin_redaction: *nolimit
YAML
  cat >"$S/log.config" <<YAML
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: $DIR/logs/synapse.debug.log
    encoding: utf8
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
YAML
  cat >"$S/appservice-ferry.yaml" <<YAML
id: ferry
url: "http://127.0.0.1:$MATRIX_AS_PORT"
as_token: "$MATRIX_AS_TOKEN"
hs_token: "$MATRIX_HS_TOKEN"
sender_localpart: ferry
rate_limited: false
namespaces:
  users:
    - {exclusive: true, regex: "@xmpp_.*:localhost"}
  aliases:
    - {exclusive: true, regex: "#xmpp_.*:localhost"}
  rooms: []
YAML
  # (--generate-keys would import all of Synapse: 5 s; this takes 0.2 s)
  "$V/bin/python" -c "import signedjson.key as k; k.write_signing_keys(open('$S/localhost.signing.key','w'), [k.generate_signing_key('a_test')])"
  launch synapse "$V/bin/python" -m synapse.app.homeserver -c "$S/homeserver.yaml"
}

synapse_wait() {
  wait_port "$MATRIX_PORT" 120 synapse
  wait_until 60 "synapse /health" curl -fs "http://127.0.0.1:$MATRIX_PORT/health"
}

synapse_ready() {
  synapse_wait
  local u
  for u in $MATRIX_USERS; do
    curl -fsS -XPOST "http://127.0.0.1:$MATRIX_PORT/_matrix/client/v3/register" \
      -d "{\"username\":\"${u%%:*}\",\"password\":\"${u#*:}\",\"auth\":{\"type\":\"m.login.dummy\"}}" >/dev/null ||
      die "registering Matrix user ${u%%:*} failed"
  done
}

synapse_env() {
  echo "export MATRIX_URL=http://127.0.0.1:$MATRIX_PORT MATRIX_SERVER_NAME=localhost MATRIX_PORT=$MATRIX_PORT"
  echo "export MATRIX_USERS=\"$MATRIX_USERS\" MATRIX_REGISTRATION_SECRET=$MATRIX_REGISTRATION_SECRET"
  echo "export MATRIX_AS_PORT=$MATRIX_AS_PORT MATRIX_AS_TOKEN=$MATRIX_AS_TOKEN MATRIX_HS_TOKEN=$MATRIX_HS_TOKEN"
  echo "export MATRIX_AS_REGISTRATION=$DIR/synapse/appservice-ferry.yaml"
}
synapse_summary() { echo "synapse   http://127.0.0.1:$MATRIX_PORT  (appservice -> 127.0.0.1:$MATRIX_AS_PORT)"; }
