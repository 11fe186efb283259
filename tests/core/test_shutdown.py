"""SIGTERM: every user gets unavailable presence from the gateway and its
contacts, rooms say goodbye with status 332, and ferry exits 0."""
from harness.stanza import find, findall, message, presence

from helpers import register


def test_sigterm_says_goodbye(ferry_factory, xmpp):
    f = ferry_factory()
    d = f.config.domain("test")
    alice = xmpp("alice")
    register(alice, d)
    room = f"#bye@{d}"
    alice.join_muc(room, "alice")
    alice.wait_for(presence(frm=f"echo@{d}"), since=0, take=False)
    m = alice.mark()
    assert f.stop() == 0
    alice.wait_for(presence(frm=d, type="unavailable"), since=m)
    alice.wait_for(presence(frm=f"echo@{d}", type="unavailable"), since=m)
    left = alice.wait_for(presence(frm=f"{room}/alice", type="unavailable"), since=m)
    codes = {s.get("code") for s in findall(left, "muc_user:x/muc_user:status")}
    assert {"110", "332"} <= codes
