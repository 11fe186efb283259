# peers.d/smsc.sh — an SMSC we did not write: the SMPP 3.4 server of PyPI's
# smpp34 (its own Rust/tokio engine), driven by kit/smsc.py.
#
# SMPP on $SMPP_PORT (any system_id/password binds). It accepts every
# submit_sm, records it in $DIR/smsc/submitted.jsonl and, when asked for,
# answers with a delivery receipt: DELIVRD, UNDELIV for numbers ending in
# 666, none for numbers ending in 999 (send one later through the control
# port), ESME_RINVDSTADR for numbers ending in 0000. Control HTTP on
# $SMPP_CONTROL_PORT: POST /mo {"from","to","text"[,"coding","split"]}
# delivers a text from a phone to the bound ESME; POST /dlr
# {"message_id","stat"}; POST /throttle {"count"}; GET /sessions.

smsc_packages() { :; }
smsc_venv() { echo "smsc smpp34==$SMPP34_VERSION"; }
smsc_ports() { echo "$SMPP_PORT $SMPP_CONTROL_PORT"; }
smsc_launch() {
  mkdir -p "$DIR/smsc"
  launch smsc "$FERRY_VENVS/smsc/bin/python" -u "$PEERS_HOME/kit/smsc.py" \
    --port "$SMPP_PORT" --control "$SMPP_CONTROL_PORT" --dir "$DIR/smsc"
}
smsc_wait() {
  wait_port "$SMPP_PORT" 30 smsc
  wait_port "$SMPP_CONTROL_PORT" 30 smsc
}
smsc_ready() { smsc_wait; }
smsc_env() {
  echo "export SMPP_PORT=$SMPP_PORT SMPP_CONTROL_PORT=$SMPP_CONTROL_PORT SMPP_SYSTEM_ID=$SMPP_SYSTEM_ID SMPP_PASSWORD=$SMPP_PASSWORD"
  echo "export SMSC_LOG=$DIR/smsc/submitted.jsonl"
}
smsc_summary() { echo "smsc      smpp://127.0.0.1:$SMPP_PORT  control http://127.0.0.1:$SMPP_CONTROL_PORT (smpp34 $SMPP34_VERSION)"; }
