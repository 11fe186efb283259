# peers.d/ngircd.sh — ngIRCd 26 (Debian), the second IRC server of the tests.
#
# $NGIRCD_MAX_CONNECTIONS connections at most (0 = no limit, the default);
# $NGIRCD_PORT on every address of $NGIRCD_LISTEN (127.0.0.1 and 127.0.0.2 by
# default, so a gateway can address it by a second IP-literal server name); no
# DNS/ident; WEBIRC with $NGIRCD_WEBIRC_PASSWORD (ngIRCd takes its second
# argument as the username and, without DNS, shows the IP); flood penalty capped
# at $NGIRCD_MAX_PENALTY (0 = none, -1 = ngIRCd's default); operator
# $IRC_OPER_NAME/$IRC_OPER_PASSWORD.

ngircd_packages() { echo ngircd; }
ngircd_ports() { echo "$NGIRCD_PORT"; }

ngircd_launch() {
  local N=$DIR/ngircd
  mkdir -p "$N"
  cat >"$N/ngircd.conf" <<CONF
[Global]
	Name = ngircd.test
	Info = test ircd
	AdminInfo1 = test
	AdminInfo2 = test
	AdminEMail = root@localhost
	Listen = $NGIRCD_LISTEN
	Ports = $NGIRCD_PORT
	MotdPhrase = "test server"
	ServerUID = nobody
	ServerGID = nogroup
[Limits]
	MaxConnections = $NGIRCD_MAX_CONNECTIONS
	MaxConnectionsIP = $NGIRCD_MAX_CONNECTIONS
	MaxJoins = 0
	MaxNickLength = 31
	PingTimeout = 120
	PongTimeout = 60
	MaxPenaltyTime = $NGIRCD_MAX_PENALTY
[Options]
	DNS = no
	Ident = no
	PAM = no
	WebIRCPassword = $NGIRCD_WEBIRC_PASSWORD
[Operator]
	Name = $IRC_OPER_NAME
	Password = $IRC_OPER_PASSWORD
CONF
  launch ngircd ngircd -n -f "$N/ngircd.conf"
}

ngircd_wait() { wait_port "$NGIRCD_PORT" 30 ngircd; }
ngircd_ready() { ngircd_wait; }

ngircd_env() {
  echo "export NGIRCD_PORT=$NGIRCD_PORT NGIRCD_LISTEN=$NGIRCD_LISTEN NGIRCD_MAX_PENALTY=$NGIRCD_MAX_PENALTY NGIRCD_SERVER_NAME=ngircd.test"
  echo "export NGIRCD_WEBIRC_PASSWORD=$NGIRCD_WEBIRC_PASSWORD"
  echo "export IRC_OPER_NAME=$IRC_OPER_NAME IRC_OPER_PASSWORD=$IRC_OPER_PASSWORD"
}
ngircd_summary() { echo "ngircd    irc {$NGIRCD_LISTEN}:$NGIRCD_PORT"; }
