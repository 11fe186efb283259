# peers.d/inspircd.sh — InspIRCd 3 (Debian), the primary IRC server of the tests.
#
# $IRC_PORT on 127.0.0.1, no fakelag, 1000 connections per IP, IRCv3 modules,
# operator $IRC_OPER_NAME/$IRC_OPER_PASSWORD. Registration completes on its
# 1-second timer, so every new connection takes about a second until 001.
# It refuses to run as root: it runs as the `irc` user (setpriv, no fork).

inspircd_packages() { echo inspircd; }
inspircd_ports() { echo "$IRC_PORT"; }

inspircd_launch() {
  local I=$DIR/inspircd m
  mkdir -p "$I"; chown irc:irc "$I"
  cat >"$I/inspircd.conf" <<XML
<server name="irc.localhost" description="test ircd" network="TestNet">
<admin name="test" nick="test" email="root@localhost">
<bind address="127.0.0.1" port="$IRC_PORT" type="clients">
<power diepass="" restartpass="">
<connect allow="127.0.0.1" timeout="60" threshold="1000" pingfreq="120"
         hardsendq="1048576" softsendq="65536" recvq="65536"
         localmax="1000" globalmax="1000" maxchans="100"
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

inspircd_wait() { wait_port "$IRC_PORT" 30 inspircd; }
inspircd_ready() { inspircd_wait; }

inspircd_env() {
  echo "export IRC_HOST=127.0.0.1 IRC_PORT=$IRC_PORT IRC_SERVER_NAME=irc.localhost"
  echo "export IRC_OPER_NAME=$IRC_OPER_NAME IRC_OPER_PASSWORD=$IRC_OPER_PASSWORD"
}
inspircd_summary() { echo "inspircd  irc 127.0.0.1:$IRC_PORT"; }
