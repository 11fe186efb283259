# peers.d/kannel.sh — Kannel 1.4 (Debian kannel + kannel-extras): bearerbox,
# smsbox and a fake SMSC (fakesmsc) standing in for the phone network.
#
# Three peers so that each can be stopped and restarted on its own:
#   bearerbox  admin $KANNEL_ADMIN_PORT, boxes $KANNEL_BOX_PORT; fake SMSC
#              "fake" on $KANNEL_SMSC_PORT (MT goes there) and "fake-mo" on
#              $KANNEL_SMSC2_PORT (tests inject texts from phones there: write
#              "FROM TO text MESSAGE\n" or "FROM TO ucs2 %XX…\n")
#   smsbox     sendsms on $KANNEL_SENDSMS_PORT (user $KANNEL_USER/$KANNEL_PASSWORD);
#              texts from phones are passed to the gateway's webhook
#              http://127.0.0.1:$SMS_WEBHOOK_PORT/bridge/sms/kannel/mo?secret=$SMS_WEBHOOK_SECRET
#   fakesmsc   the phone side of "fake": prints each MT as
#              "Got message N: <from to text …>" in $DIR/logs/fakesmsc.log
# The fake SMSC reports every MT delivered (dlr state 8, then 1).

bearerbox_packages() { echo kannel kannel-extras; }
smsbox_packages() { echo kannel; }
fakesmsc_packages() { echo kannel-extras; }
bearerbox_ports() { echo "$KANNEL_ADMIN_PORT $KANNEL_BOX_PORT $KANNEL_SMSC_PORT $KANNEL_SMSC2_PORT"; }
smsbox_ports() { echo "$KANNEL_SENDSMS_PORT"; }
fakesmsc_ports() { :; }

kannel_conf() {
  local K=$DIR/kannel
  mkdir -p "$K"
  cat >"$K/kannel.conf" <<CONF
group = core
admin-port = $KANNEL_ADMIN_PORT
admin-interface = 127.0.0.1
admin-password = $KANNEL_ADMIN_PASSWORD
status-password = $KANNEL_ADMIN_PASSWORD
admin-allow-ip = "127.0.0.1"
smsbox-port = $KANNEL_BOX_PORT
smsbox-interface = 127.0.0.1
box-allow-ip = "127.0.0.1"
log-file = "$DIR/logs/bearerbox.debug.log"
log-level = 1
access-log = "$DIR/logs/kannel-access.log"
dlr-storage = internal
sms-resend-retry = -1

group = smsc
smsc = fake
smsc-id = fake
port = $KANNEL_SMSC_PORT
our-host = 127.0.0.1
connect-allow-ip = "127.0.0.1"

group = smsc
smsc = fake
smsc-id = fake-mo
port = $KANNEL_SMSC2_PORT
our-host = 127.0.0.1
connect-allow-ip = "127.0.0.1"
allowed-smsc-id = "fake-mo-only"

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = $KANNEL_BOX_PORT
sendsms-port = $KANNEL_SENDSMS_PORT
sendsms-interface = 127.0.0.1
log-file = "$DIR/logs/smsbox.debug.log"
log-level = 1
access-log = "$DIR/logs/smsbox-access.log"
mo-recode = true
http-request-retry = 30
http-queue-delay = 1

group = sendsms-user
username = $KANNEL_USER
password = $KANNEL_PASSWORD
user-allow-ip = "127.0.0.1"
forced-smsc = fake
max-messages = 20
concatenation = true

group = sms-service
keyword = default
catch-all = true
get-url = "http://127.0.0.1:$SMS_WEBHOOK_PORT/bridge/sms/kannel/mo?secret=$SMS_WEBHOOK_SECRET&from=%p&to=%P&text=%a&charset=%C&coding=%c"
max-messages = 0
omit-empty = true
concatenation = true
CONF
}

bearerbox_launch() {
  kannel_conf
  launch bearerbox /usr/sbin/bearerbox -v 1 "$DIR/kannel/kannel.conf"
}
bearerbox_wait() {
  wait_port "$KANNEL_BOX_PORT" 30 bearerbox
  wait_port "$KANNEL_SMSC_PORT" 30 bearerbox
  wait_port "$KANNEL_SMSC2_PORT" 30 bearerbox
}
bearerbox_ready() { bearerbox_wait; }

# smsbox and fakesmsc need bearerbox's ports: they are launched after it
# (PEER_ORDER) and wait for them first.
smsbox_launch() {
  bearerbox_wait
  launch smsbox /usr/sbin/smsbox -v 1 "$DIR/kannel/kannel.conf"
}
smsbox_wait() {
  wait_port "$KANNEL_SENDSMS_PORT" 30 smsbox
  wait_until 30 "smsbox connected to bearerbox" bash -c \
    "curl -fs 'http://127.0.0.1:$KANNEL_ADMIN_PORT/status.txt?password=$KANNEL_ADMIN_PASSWORD' | grep -q 'smsbox:'"
}
smsbox_ready() { smsbox_wait; }

fakesmsc_launch() {
  bearerbox_wait
  launch fakesmsc /usr/lib/kannel/test/fakesmsc -H 127.0.0.1 -r "$KANNEL_SMSC_PORT" -m 0 "0 0 text unused"
}
fakesmsc_wait() {
  wait_until 30 "fakesmsc online in kannel's status" bash -c \
    "curl -fs 'http://127.0.0.1:$KANNEL_ADMIN_PORT/status.txt?password=$KANNEL_ADMIN_PASSWORD' | tr -d '\\n' | grep -q 'fake\\[fake\\] *FAKE:$KANNEL_SMSC_PORT (online'"
}
fakesmsc_ready() { fakesmsc_wait; }

bearerbox_env() {
  echo "export KANNEL_ADMIN_PORT=$KANNEL_ADMIN_PORT KANNEL_ADMIN_PASSWORD=$KANNEL_ADMIN_PASSWORD KANNEL_BOX_PORT=$KANNEL_BOX_PORT"
  echo "export KANNEL_SMSC_PORT=$KANNEL_SMSC_PORT KANNEL_SMSC2_PORT=$KANNEL_SMSC2_PORT"
}
smsbox_env() {
  echo "export KANNEL_SENDSMS_PORT=$KANNEL_SENDSMS_PORT KANNEL_SENDSMS_URL=http://127.0.0.1:$KANNEL_SENDSMS_PORT/cgi-bin/sendsms"
  echo "export KANNEL_USER=$KANNEL_USER KANNEL_PASSWORD=$KANNEL_PASSWORD"
  echo "export SMS_WEBHOOK_PORT=$SMS_WEBHOOK_PORT SMS_WEBHOOK_SECRET=$SMS_WEBHOOK_SECRET"
}
fakesmsc_env() { echo "export KANNEL_FAKESMSC_LOG=$DIR/logs/fakesmsc.log"; }
bearerbox_summary() { echo "bearerbox admin 127.0.0.1:$KANNEL_ADMIN_PORT  fake SMSC $KANNEL_SMSC_PORT, MO injection $KANNEL_SMSC2_PORT"; }
smsbox_summary() { echo "smsbox    sendsms http://127.0.0.1:$KANNEL_SENDSMS_PORT/cgi-bin/sendsms  MO -> 127.0.0.1:$SMS_WEBHOOK_PORT"; }
fakesmsc_summary() { echo "fakesmsc  MT log $DIR/logs/fakesmsc.log"; }
