"""Through the real binary: ferry stopped (and killed) while Matrix
messages arrive loses nothing and doubles nothing; files both ways."""
import http.server
import socketserver
import threading
import urllib.request

from harness.stanza import find, has, message, text

from matrix_helpers import MatrixUser, contact_jid, register, wait_until


def _dm(alice, domain, peers):
    me = register(alice, domain, peers)
    bob = MatrixUser.register(peers.matrix_url, "bob")
    bob_jid = contact_jid(bob.user_id, domain)
    room = bob.create_dm(me.user_id)
    wait_until(lambda: bob_jid in alice.roster(), what="bob in the roster")
    bob.wait(room, lambda e: e.get("type") == "m.room.member" and e.get("state_key") == me.user_id
             and e["content"].get("membership") == "join", "ferry joined")
    return me, bob, bob_jid, room


def _count(client, frm, body):
    return len(client.received(message(frm=frm, body=body)))


def test_restart_while_messages_arrive(alice, gw, domain, peers):
    me, bob, bob_jid, room = _dm(alice, domain, peers)
    bob.send(room, "before the restart")
    alice.wait_for(message(frm=bob_jid, body="before the restart"))
    assert gw.stop() == 0
    for i in range(3):
        bob.send(room, f"while down {i}")
    gw.start()
    for i in range(3):
        alice.wait_for(message(frm=bob_jid, body=f"while down {i}"), timeout=30)
    bob.send(room, "after")
    alice.wait_for(message(frm=bob_jid, body="after"), timeout=30)
    alice.expect_no(message(frm=bob_jid), within=2)
    for body in ["before the restart", "while down 0", "while down 1", "while down 2", "after"]:
        assert _count(alice, bob_jid, body) == 1, body


def test_crash_while_messages_arrive(alice, gw, domain, peers):
    me, bob, bob_jid, room = _dm(alice, domain, peers)
    bob.send(room, "before the crash")
    alice.wait_for(message(frm=bob_jid, body="before the crash"))
    gw.kill()
    bob.send(room, "during the crash")
    gw.start()
    alice.wait_for(message(frm=bob_jid, body="during the crash"), timeout=30)
    assert _count(alice, bob_jid, "during the crash") == 1


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("content-type", "image/png")
        self.send_header("content-length", str(len(PNG)))
        self.end_headers()
        self.wfile.write(PNG)

    def log_message(self, *a):
        pass


def test_files_both_ways(alice, domain, peers):
    me, bob, bob_jid, room = _dm(alice, domain, peers)
    # Matrix -> XMPP: an image becomes an OOB link to the published file.
    mxc = bob.upload(PNG, "image/png", "photo.png")
    bob.send(room, "photo.png", msgtype="m.image", url=mxc,
             info={"mimetype": "image/png", "size": len(PNG)})
    m = alice.wait_for(message(frm=bob_jid) & has("oob:x"), timeout=30)
    url = text(find(m, "oob:x"), "oob:url")
    assert text(m, "body") == url
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.read() == PNG

    # XMPP -> Matrix: an OOB link is fetched and uploaded as m.image.
    srv = socketserver.TCPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        link = f"http://127.0.0.1:{srv.server_address[1]}/cat.png"
        alice.send_message(bob_jid, link, extra=f"<x xmlns='jabber:x:oob'><url>{link}</url></x>")
        ev = bob.wait(room, lambda e: e.get("content", {}).get("msgtype") == "m.image"
                      and e.get("sender") == me.user_id, "the image")
        assert ev["content"]["body"] == "cat.png"
        assert bob.download(ev["content"]["url"]) == PNG
    finally:
        srv.shutdown()
        srv.server_close()
