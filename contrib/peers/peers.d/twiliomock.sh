# peers.d/twiliomock.sh — a MOCK of Twilio's Messaging API (kit/twilio_mock.py).
# Twilio cannot run here, so this is a mock we wrote: it answers the REST
# calls Ferry makes (account and number checks, Messages.json), posts signed
# status callbacks, and on request posts signed incoming SMS/MMS webhooks.
#
# HTTP on $TWILIO_MOCK_PORT. Accounts: $TWILIO_MOCK_ACCOUNTS
# ("SID:TOKEN:+NUMBER[:+NUMBER…] …"). Numbers ending in 666 get
# "undelivered" (error 30003), in 999 no final status until POST
# /mock/status; To not in E.164 gets 400 (code 21211). Control:
# POST /mock/incoming {"account","from","to","body","media":[…],"url"},
# POST /mock/status {"sid","status"}, GET /mock/messages, GET /mock/media/NAME.

twiliomock_packages() { :; }
twiliomock_ports() { echo "$TWILIO_MOCK_PORT"; }
twiliomock_launch() {
  mkdir -p "$DIR/twiliomock"
  launch twiliomock python3 -u "$PEERS_HOME/kit/twilio_mock.py" \
    --port "$TWILIO_MOCK_PORT" --dir "$DIR/twiliomock" --accounts "$TWILIO_MOCK_ACCOUNTS"
}
twiliomock_wait() { wait_until 30 "twilio mock" curl -fs "http://127.0.0.1:$TWILIO_MOCK_PORT/mock/messages"; }
twiliomock_ready() { twiliomock_wait; }
twiliomock_env() {
  echo "export TWILIO_MOCK_PORT=$TWILIO_MOCK_PORT TWILIO_MOCK_URL=http://127.0.0.1:$TWILIO_MOCK_PORT"
  echo "export TWILIO_MOCK_ACCOUNTS=\"$TWILIO_MOCK_ACCOUNTS\""
}
twiliomock_summary() { echo "twilio    MOCK http://127.0.0.1:$TWILIO_MOCK_PORT"; }
