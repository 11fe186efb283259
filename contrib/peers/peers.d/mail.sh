# peers.d/mail.sh — the `mail` group: Dovecot 2.3 (IMAP with IDLE, LMTP),
# Postfix 3.7 (SMTP in, submission with AUTH out, bounces), a static HTTP
# server for Mozilla autoconfig files, and dnsmasq for RFC 6186 SRV records.
# Every mailbox is user@localhost (any domain logs in: Dovecot drops it).
#
#   IMAP        $IMAP_PORT        plain + STARTTLS, IDLE          on 127.0.0.1
#               $IMAP_PORT        the same *without IDLE*         on 127.0.0.2 (polling)
#   IMAPS       $IMAPS_PORT       implicit TLS                    on 127.0.0.1
#               $IMAPS_PORT       with a self-signed certificate  on 127.0.0.3
#   LMTP        $LMTP_PORT        Postfix delivers here
#   SMTP        $SMTP_PORT        no auth, relays for 127.0.0.0/8 (correspondents inject mail)
#   submission  $SUBMISSION_PORT  AUTH (Dovecot SASL), STARTTLS
#   submissions $SUBMISSIONS_PORT AUTH, implicit TLS
#   autoconfig  $AUTOCONFIG_PORT  http://127.0.0.1:PORT/<domain>/mail/config-v1.1.xml
#                                 (autoconfig.test: IMAPS + submission on localhost)
#   DNS         $MAIL_DNS_PORT    SRV records of srv.test (_imaps, _submission), UDP
#
# TLS: a test CA made at start ($MAIL_TLS_CA to trust; the servers'
# certificate is for localhost, 127.0.0.1 and 127.0.0.2). A client that does
# not trust that CA sees a certificate that does not verify.
# Mailboxes: $MAIL_USERS (name:password), mload01..NN with MAIL_LOAD_USERS=N
# (password $MAIL_LOAD_PASSWORD); tests add more at run time by appending
# `name:{PLAIN}password` lines to $MAIL_USERS_FILE (Dovecot re-reads it).
# Mail to any other domain bounces at once (Postfix's error transport), so a
# sender gets a real delivery status notification.

mail_dirs() { M=$DIR/mail; D=$M/dovecot; P=$M/postfix; T=$M/tls; }

# the test CA and the servers' certificate, made once per state dir
mail_certs() {
  mail_dirs
  mkdir -p "$T"
  [ -f "$T/cert.pem" ] && return 0
  printf 'subjectAltName=DNS:localhost,DNS:mail.localhost,IP:127.0.0.1,IP:127.0.0.2\nbasicConstraints=critical,CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$T/ext.cnf"
  { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -subj "/CN=Ferry mail test CA" -keyout "$T/ca-key.pem" -out "$T/ca.pem" &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
      -keyout "$T/key.pem" -out "$T/cert.csr" &&
    openssl x509 -req -in "$T/cert.csr" -CA "$T/ca.pem" -CAkey "$T/ca-key.pem" -CAcreateserial \
      -days 3650 -extfile "$T/ext.cnf" -out "$T/cert.pem" &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.3" \
      -keyout "$T/selfsigned-key.pem" -out "$T/selfsigned.pem"; } >/dev/null 2>&1 ||
    die "openssl could not make the mail TLS certificates"
  chmod 644 "$T"/*.pem
}

# ---------------------------------------------------------------- Dovecot
dovecot_packages() { echo dovecot-imapd dovecot-lmtpd openssl; }
dovecot_ports() { echo "$IMAP_PORT $IMAPS_PORT $LMTP_PORT"; }

dovecot_launch() {
  mail_certs
  mkdir -p "$D" "$M/home"
  chown mail:mail "$M/home"
  : >"$D/users"
  local u i
  for u in $MAIL_USERS; do printf '%s:{PLAIN}%s\n' "${u%%:*}" "${u#*:}" >>"$D/users"; done
  for ((i = 1; i <= MAIL_LOAD_USERS; i++)); do
    printf 'mload%02d:{PLAIN}%s\n' "$i" "$MAIL_LOAD_PASSWORD" >>"$D/users"
  done
  chmod 644 "$D/users"
  cat >"$D/dovecot.conf" <<CONF
# loopback-only Dovecot for Ferry's tests (written by contrib/peers/start-peers.sh)
base_dir = $D/run
state_dir = $D/state
instance_name = ferry-test-dovecot-$IMAP_PORT
log_path = $DIR/logs/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = yes
ssl_cert = <$T/cert.pem
ssl_key = <$T/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 8
first_valid_gid = 8
mail_uid = mail
mail_gid = mail
mail_location = maildir:~/Maildir
mail_max_userip_connections = 500
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%n $D/users
}
userdb {
  driver = static
  args = home=$M/home/%n
}
namespace inbox {
  inbox = yes
  separator = /
  mailbox Sent {
    special_use = \\Sent
    auto = subscribe
  }
  mailbox Drafts {
    special_use = \\Drafts
    auto = subscribe
  }
  mailbox Trash {
    special_use = \\Trash
    auto = subscribe
  }
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1 127.0.0.2
    port = $IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1 127.0.0.3
    port = $IMAPS_PORT
    ssl = yes
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTP_PORT
  }
}
service auth {
  unix_listener auth-postfix {
    mode = 0666
  }
}
protocol lmtp {
  postmaster_address = postmaster@localhost
}
# 127.0.0.2: the same server without IDLE, for the polling case
local 127.0.0.2 {
  protocol imap {
    imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE LITERAL+ NAMESPACE UIDPLUS SPECIAL-USE
  }
}
# 127.0.0.3: IMAPS with a self-signed certificate (it does not verify)
local 127.0.0.3 {
  ssl_cert = <$T/selfsigned.pem
  ssl_key = <$T/selfsigned-key.pem
}
CONF
  launch dovecot dovecot -c "$D/dovecot.conf" -F
}

dovecot_wait() {
  mail_dirs
  wait_port "$IMAP_PORT" 30 dovecot
  wait_port "$IMAPS_PORT" 30 dovecot
  wait_port "$LMTP_PORT" 30 dovecot
  wait_until 10 "dovecot's auth socket" test -S "$D/run/auth-postfix"
}
dovecot_ready() { dovecot_wait; }
dovecot_env() {
  mail_dirs
  echo "export MAIL_DOMAIN=localhost MAIL_USERS=\"$MAIL_USERS\" MAIL_USERS_FILE=$D/users MAIL_HOME=$M/home"
  echo "export MAIL_LOAD_USERS=$MAIL_LOAD_USERS MAIL_LOAD_PASSWORD=$MAIL_LOAD_PASSWORD   # mload01..NN@localhost"
  echo "export IMAP_HOST=127.0.0.1 IMAP_NOIDLE_HOST=127.0.0.2 IMAP_SELFSIGNED_HOST=127.0.0.3 IMAP_PORT=$IMAP_PORT IMAPS_PORT=$IMAPS_PORT LMTP_PORT=$LMTP_PORT"
  echo "export MAIL_TLS_CA=$T/ca.pem"
}
dovecot_summary() { echo "dovecot   imap 127.0.0.1:$IMAP_PORT (127.0.0.2: no IDLE)  imaps :$IMAPS_PORT (127.0.0.3: self-signed)  lmtp :$LMTP_PORT"; }

# ---------------------------------------------------------------- Postfix
postfix_packages() { echo postfix openssl; }
postfix_ports() { echo "$SMTP_PORT $SUBMISSION_PORT $SUBMISSIONS_PORT"; }

postfix_launch() {
  mail_certs
  mkdir -p "$P/etc" "$P/queue" "$P/data"
  chown postfix "$P/data"
  cat >"$P/etc/main.cf" <<CONF
# loopback-only Postfix: mail for @localhost goes to Dovecot's LMTP; other
# domains bounce at once (a real DSN for the sender); nothing leaves.
compatibility_level = 3.6
queue_directory = $P/queue
data_directory = $P/data
maillog_file = /dev/stdout
myhostname = localhost
mydomain = localhost
myorigin = localhost
mydestination =
local_recipient_maps =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = localhost
virtual_transport = lmtp:inet:127.0.0.1:$LMTP_PORT
smtpd_reject_unlisted_recipient = no
smtpd_relay_restrictions = permit_mynetworks, reject
default_transport = error:outside mail is disabled in tests
relay_transport = error:outside mail is disabled in tests
alias_maps =
alias_database =
biff = no
smtputf8_enable = yes
message_size_limit = 52428800
smtpd_tls_security_level = may
smtpd_tls_cert_file = $T/cert.pem
smtpd_tls_key_file = $T/key.pem
smtpd_sasl_type = dovecot
smtpd_sasl_path = $D/run/auth-postfix
smtpd_sasl_auth_enable = no
queue_run_delay = 5s
minimal_backoff_time = 5s
maximal_backoff_time = 10s
# no per-client limits: the tests send bursts
smtpd_client_connection_rate_limit = 0
default_destination_concurrency_limit = 50
CONF
  cat >"$P/etc/master.cf" <<CONF
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$SMTP_PORT inet n  -       n       -       -       smtpd
127.0.0.1:$SUBMISSION_PORT inet n  -       n       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
127.0.0.1:$SUBMISSIONS_PORT inet n  -       n       -       -       smtpd
  -o syslog_name=postfix/submissions
  -o smtpd_tls_wrappermode=yes
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_client_restrictions=permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
postlog   unix-dgram n  -       n       -       1       postlogd
CONF
  launch postfix postfix -c "$P/etc" start-fg
}

postfix_wait() {
  wait_port "$SMTP_PORT" 30 postfix
  wait_port "$SUBMISSION_PORT" 30 postfix
  wait_port "$SUBMISSIONS_PORT" 30 postfix
}
postfix_ready() { postfix_wait; }
# Postfix's master starts its own session (setsid), out of the recorded
# process group: stop it the Postfix way and wait until it is gone.
postfix_pre_stop() {
  mail_dirs
  local mp
  mp=$(tr -d ' ' <"$P/queue/pid/master.pid" 2>/dev/null)
  postfix -c "$P/etc" stop >/dev/null 2>&1 || true
  if [ -n "$mp" ]; then
    wait_until 20 "postfix master $mp to exit" bash -c "! kill -0 $mp 2>/dev/null || grep -q '^State:.*Z' /proc/$mp/status"
  fi
}
postfix_env() {
  echo "export SMTP_HOST=127.0.0.1 SMTP_PORT=$SMTP_PORT SUBMISSION_PORT=$SUBMISSION_PORT SUBMISSIONS_PORT=$SUBMISSIONS_PORT"
}
postfix_summary() { echo "postfix   smtp 127.0.0.1:$SMTP_PORT  submission :$SUBMISSION_PORT  submissions :$SUBMISSIONS_PORT"; }

# ---------------------------------------------------------------- autoconfig (HTTP)
autoconfig_packages() { echo python3; }
autoconfig_ports() { echo "$AUTOCONFIG_PORT"; }
autoconfig_launch() {
  mail_dirs
  local A=$M/autoconfig
  mkdir -p "$A/autoconfig.test/mail"
  cat >"$A/autoconfig.test/mail/config-v1.1.xml" <<CONF
<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="autoconfig.test">
    <domain>autoconfig.test</domain>
    <displayName>Ferry test mail</displayName>
    <incomingServer type="imap">
      <hostname>localhost</hostname>
      <port>$IMAPS_PORT</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>localhost</hostname>
      <port>$SUBMISSION_PORT</port>
      <socketType>STARTTLS</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </outgoingServer>
  </emailProvider>
</clientConfig>
CONF
  launch autoconfig python3 -m http.server "$AUTOCONFIG_PORT" --bind 127.0.0.1 --directory "$A"
}
autoconfig_wait() { wait_port "$AUTOCONFIG_PORT" 30 autoconfig; }
autoconfig_ready() { autoconfig_wait; }
autoconfig_env() {
  echo "export AUTOCONFIG_PORT=$AUTOCONFIG_PORT AUTOCONFIG_DOMAIN=autoconfig.test"
  echo "export AUTOCONFIG_URL='http://127.0.0.1:$AUTOCONFIG_PORT/{domain}/mail/config-v1.1.xml'"
}
autoconfig_summary() { echo "autoconfig http://127.0.0.1:$AUTOCONFIG_PORT/autoconfig.test/mail/config-v1.1.xml"; }

# ---------------------------------------------------------------- DNS (SRV records)
maildns_packages() { echo dnsmasq-base iproute2; }
maildns_ports() { echo "$MAIL_DNS_PORT"; }
maildns_launch() {
  launch maildns dnsmasq --keep-in-foreground --log-facility=- --port="$MAIL_DNS_PORT" \
    --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts --no-poll --user=nobody \
    --pid-file= \
    --srv-host="_imaps._tcp.srv.test,localhost,$IMAPS_PORT,0,1" \
    --srv-host="_submission._tcp.srv.test,localhost,$SUBMISSION_PORT,0,1"
}
maildns_wait() { wait_until 30 "dnsmasq on udp port $MAIL_DNS_PORT" bash -c "ss -Hlun | grep -q ':$MAIL_DNS_PORT '"; }
maildns_ready() { maildns_wait; }
maildns_env() { echo "export MAIL_DNS_PORT=$MAIL_DNS_PORT MAIL_SRV_DOMAIN=srv.test"; }
maildns_summary() { echo "maildns   dns udp 127.0.0.1:$MAIL_DNS_PORT (SRV records of srv.test)"; }
