# peers.d/postgres.sh — PostgreSQL (Debian 12's package `postgresql`, 15), the
# shared database of several Ferry instances ([storage] url).
#
# A private cluster under $DIR/postgres (initdb, no system service), TCP on
# 127.0.0.1:$PG_PORT only (no Unix socket), trust authentication on loopback,
# superuser $PG_USER owning the database $PG_DATABASE. PostgreSQL refuses to
# run as root: as root, the cluster belongs to the `postgres` system user the
# package creates, and the server runs as that user (setpriv).
# TLS: `ssl = on` with a server certificate for 127.0.0.1/localhost signed
# by a throwaway CA made at start ($DIR/postgres/tls/ca.pem); clients choose
# TLS or not (sslmode), so plain connections keep working.
# peers.env: PG_PORT, FERRY_TEST_PG_URL (postgres://$PG_USER@127.0.0.1:$PG_PORT/$PG_DATABASE?sslmode=disable:
# the suite's connections stay in clear text as before), FERRY_TEST_PG_CA (the CA's PEM file).

postgres_packages() { echo postgresql; }
postgres_ports() { echo "$PG_PORT"; }
postgres_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
# as_pg CMD...: runs CMD as the cluster's owner
as_pg() {
  if [ "$(id -u)" = 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi
}
postgres_launch() {
  local B; B=$(postgres_bin)
  [ -n "$B" ] || die "PostgreSQL binaries not found under /usr/lib/postgresql"
  local P=$DIR/postgres
  mkdir -p "$P"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$P"
  as_pg "$B/initdb" -D "$P/data" -U "$PG_USER" --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
    >"$DIR/logs/postgres-initdb.log" 2>&1 || { tail -20 "$DIR/logs/postgres-initdb.log" >&2; die "initdb failed"; }
  postgres_tls "$P/tls"
  # fsync stays on: the benchmark compares real commits
  local run=()
  [ "$(id -u)" = 0 ] && run=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  launch postgres "${run[@]}" "$B/postgres" -D "$P/data" -h 127.0.0.1 -p "$PG_PORT" \
    -c unix_socket_directories= -c max_connections=200 -c shared_buffers=64MB -c log_min_messages=warning \
    -c ssl=on -c ssl_cert_file="$P/tls/server.pem" -c ssl_key_file="$P/tls/server.key"
}
# postgres_tls DIR: a CA and a server certificate it signs (127.0.0.1, localhost)
postgres_tls() {
  local T=$1
  mkdir -p "$T"
  {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
      -subj "/CN=Ferry test PostgreSQL CA" -keyout "$T/ca.key" -out "$T/ca.pem" &&
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=127.0.0.1" -keyout "$T/server.key" -out "$T/server.csr" &&
      openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial \
        -days 30 -out "$T/server.pem" \
        -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n')
  } >"$DIR/logs/postgres-tls.log" 2>&1 || { tail -20 "$DIR/logs/postgres-tls.log" >&2; die "cannot make the test TLS certificates"; }
  chmod 600 "$T/server.key"
  chmod 644 "$T/ca.pem"
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$T"
  return 0
}
postgres_wait() {
  local B; B=$(postgres_bin)
  wait_until 60 postgres "$B/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"
}
postgres_ready() {
  postgres_wait
  local B; B=$(postgres_bin)
  "$B/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -v ON_ERROR_STOP=1 \
    -c "CREATE DATABASE \"$PG_DATABASE\"" >/dev/null || die "cannot create the database $PG_DATABASE"
}
postgres_pre_stop() {
  local B; B=$(postgres_bin)
  [ -d "$DIR/postgres/data" ] && as_pg "$B/pg_ctl" -D "$DIR/postgres/data" -m fast -w -t 20 stop >/dev/null 2>&1 || true
}
postgres_env() {
  echo "export PG_PORT=$PG_PORT PG_USER=$PG_USER PG_DATABASE=$PG_DATABASE"
  echo "export FERRY_TEST_PG_URL=postgres://$PG_USER@127.0.0.1:$PG_PORT/$PG_DATABASE?sslmode=disable"
  echo "export FERRY_TEST_PG_CA=$DIR/postgres/tls/ca.pem"
}
postgres_summary() { echo "postgres  127.0.0.1:$PG_PORT (database $PG_DATABASE, user $PG_USER)"; }
