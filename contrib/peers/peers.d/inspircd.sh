# peers.d/inspircd.sh — InspIRCd 3 (Debian), the primary IRC server of the tests.
#
# $IRC_PORT on 127.0.0.1, no fakelag, $IRC_MAX_CONNECTIONS (1000) connections per IP, IRCv3 modules,
# operator $IRC_OPER_NAME/$IRC_OPER_PASSWORD; also TLS on $IRC_TLS_PORT with a
# certificate for inspircd.test/127.0.0.1 signed by a test CA made at start
# ($IRC_TLS_CA to trust, the server's $IRC_TLS_CERT and its SHA-256
# $IRC_TLS_FINGERPRINT in peers.env; client certificates are asked for and
# shown as certfp). Registration completes on its
# 1-second timer, so every new connection takes about a second until 001.
# It refuses to run as root: it runs as the `irc` user (setpriv, no fork).

inspircd_packages() { echo inspircd openssl; }
inspircd_ports() { echo "$IRC_PORT $IRC_TLS_PORT"; }

inspircd_launch() {
  local I=$DIR/inspircd m
  mkdir -p "$I"; chown irc:irc "$I"
  if [ ! -f "$I/tls-cert.pem" ]; then
    # a test CA ($IRC_TLS_CA, what clients trust) and the server's certificate
    printf 'subjectAltName=DNS:inspircd.test,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' >"$I/tls-ext.cnf"
    { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
        -subj "/CN=Ferry test CA" -keyout "$I/tls-ca-key.pem" -out "$I/tls-ca.pem" &&
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=inspircd.test \
        -keyout "$I/tls-key.pem" -out "$I/tls.csr" &&
      openssl x509 -req -in "$I/tls.csr" -CA "$I/tls-ca.pem" -CAkey "$I/tls-ca-key.pem" -CAcreateserial \
        -days 3650 -extfile "$I/tls-ext.cnf" -out "$I/tls-cert.pem"; } >/dev/null 2>&1 ||
      die "openssl could not make the TLS certificates"
    chown irc:irc "$I"/tls-*
  fi
  cat >"$I/inspircd.conf" <<XML
<server name="inspircd.test" description="test ircd" network="TestNet">
<admin name="test" nick="test" email="root@localhost">
<bind address="127.0.0.1" port="$IRC_PORT" type="clients">
<bind address="127.0.0.1" port="$IRC_TLS_PORT" type="clients" ssl="tls">
<module name="ssl_gnutls">
<module name="sslinfo">
<sslprofile name="tls" provider="gnutls" certfile="$I/tls-cert.pem" keyfile="$I/tls-key.pem" hash="sha256" requestclientcert="yes">
<power diepass="" restartpass="">
<connect allow="127.0.0.1" timeout="60" threshold="$IRC_MAX_CONNECTIONS" pingfreq="120"
         hardsendq="1048576" softsendq="65536" recvq="65536"
         localmax="$IRC_MAX_CONNECTIONS" globalmax="$IRC_MAX_CONNECTIONS" maxchans="100"
         commandrate="100000" fakelag="no" resolvehostnames="no" useident="no">
<files motd="/etc/inspircd/inspircd.motd">
<dns server="127.0.0.1" timeout="1">
<pid file="$I/inspircd.pid">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="$I/inspircd.log">
<class name="accAll" commands="*" privs="*" usermodes="*" chanmodes="*">
<type name="AccOper" classes="accAll">
<oper name="$IRC_OPER_NAME" password="$IRC_OPER_PASSWORD" host="*@127.0.0.1" type="AccOper">
XML
  for m in $INSPIRCD_MODULES; do echo "<module name=\"$m\">" >>"$I/inspircd.conf"; done
  launch inspircd setpriv --reuid=irc --regid=irc --init-groups \
    /usr/sbin/inspircd --config "$I/inspircd.conf" --nofork
}

inspircd_wait() { wait_port "$IRC_PORT" 30 inspircd && wait_port "$IRC_TLS_PORT" 30 inspircd; }
inspircd_ready() { inspircd_wait; }

inspircd_env() {
  echo "export IRC_HOST=127.0.0.1 IRC_PORT=$IRC_PORT IRC_SERVER_NAME=inspircd.test"
  echo "export IRC_TLS_PORT=$IRC_TLS_PORT IRC_TLS_CA=$DIR/inspircd/tls-ca.pem IRC_TLS_CERT=$DIR/inspircd/tls-cert.pem IRC_TLS_FINGERPRINT=$(openssl x509 -in "$DIR/inspircd/tls-cert.pem" -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr A-F a-f)"
  echo "export IRC_OPER_NAME=$IRC_OPER_NAME IRC_OPER_PASSWORD=$IRC_OPER_PASSWORD"
}
inspircd_summary() { echo "inspircd  irc 127.0.0.1:$IRC_PORT  tls 127.0.0.1:$IRC_TLS_PORT"; }
