#!/bin/bash
# Synapse smoke test with curl (Client-Server API v3): every user of MATRIX_USERS
# logs in; alice creates a room inviting bob, bob joins, alice sends, bob reads.
set -euo pipefail
HS=${MATRIX_URL:-http://127.0.0.1:18008}
j() { python3 -c "import sys,json; print(json.load(sys.stdin)$1)"; }
login() { curl -fsS -XPOST "$HS/_matrix/client/v3/login" -d "{\"type\":\"m.login.password\",\"identifier\":{\"type\":\"m.id.user\",\"user\":\"$1\"},\"password\":\"$2\"}" | j "['access_token']"; }
for u in ${MATRIX_USERS:-alice:alicepw bob:bobpw}; do login "${u%%:*}" "${u#*:}" >/dev/null; done
A=$(login alice alicepw); B=$(login bob bobpw)
ROOM=$(curl -fsS -XPOST -H "Authorization: Bearer $A" "$HS/_matrix/client/v3/createRoom" -d '{"name":"check","preset":"private_chat","invite":["@bob:localhost"]}' | j "['room_id']")
curl -fsS -XPOST -H "Authorization: Bearer $B" "$HS/_matrix/client/v3/rooms/$ROOM/join" -d '{}' >/dev/null
curl -fsS -XPUT -H "Authorization: Bearer $A" "$HS/_matrix/client/v3/rooms/$ROOM/send/m.room.message/txn$RANDOM$RANDOM" -d '{"msgtype":"m.text","body":"hello bob from matrix"}' >/dev/null
BODY=$(curl -fsS -H "Authorization: Bearer $B" "$HS/_matrix/client/v3/rooms/$ROOM/messages?dir=b&limit=5" | j "['chunk'][0]['content']['body']")
echo "Matrix ok: users ${MATRIX_USERS:-} log in; room $ROOM: bob reads '$BODY'"
[ "$BODY" = "hello bob from matrix" ]
