"""One crash domain per (bridge, user): a panic in one user's session (in
`act`, or in a task it started) is reported to that user and the session
restarts; another user of the same bridge does not notice."""
import time

import pytest

from harness.stanza import find, has, message, presence, text, to_string

from helpers import register


@pytest.fixture
def pair(ferry_factory, xmpp):
    f = ferry_factory()
    d = f.config.domain("test")
    alice = xmpp("alice")
    bob = xmpp("bob")
    register(alice, d)
    register(bob, d)
    return f, d, alice, bob


@pytest.mark.parametrize("trigger", ["panic", "spawn-panic"])
def test_a_panic_in_one_session_does_not_touch_another_user(pair, trigger):
    f, d, alice, bob = pair
    echo = f"echo@{d}"
    ma, mb = alice.mark(), bob.mark()
    mid = alice.send_message(echo, trigger)
    # alice is told, by the gateway, that her session failed and restarts
    alice.wait_for(message(frm=d, body_contains="session failed"), since=ma)
    if trigger == "panic":
        err = alice.wait_for(message(frm=echo, type="error", id=mid), since=ma)
        assert find(err, "error/stanzas:internal-server-error") is not None
    # bob, meanwhile, chats on
    for i in range(3):
        bob.send_message(echo, f"bob {i}")
        bob.wait_for(message(frm=echo, body=f"bob {i}"), since=mb)
    assert not bob.received(message(frm=d, body_contains="failed"), since=mb)
    # alice's session is back
    deadline = time.monotonic() + 15
    while True:
        alice.send_message(echo, "are you back")
        try:
            alice.wait_for(message(frm=echo, body="are you back"), since=ma, timeout=2)
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
    assert "session failed" in f.log() or "restarting" in f.log()


def test_rooms_survive_a_session_restart(pair):
    """The clients of a user whose session crashed stay in their rooms
    (their own presence turns xa meanwhile); the new session joins again by
    itself, and the room works without the client joining again."""
    f, d, alice, bob = pair
    r = f"#survivors@{d}"
    alice.join_muc(r, "alice")
    bob.join_muc(r, "bob")
    alice.wait_for(presence(frm=f"{r}/bob"))
    ma = alice.mark()
    alice.send_message(f"echo@{d}", "panic")
    away = alice.wait_for(presence(frm=f"{r}/alice") & has("show"), since=ma, timeout=10)
    assert text(away, "show") == "xa" and "Reconnecting" in (text(away, "status") or ""), to_string(away)
    assert find(away, "muc_user:x/muc_user:status[@code='110']") is not None
    back = alice.wait_for(presence(frm=f"{r}/alice") & ~has("show"), since=ma, timeout=20)
    assert back.get("type") is None, to_string(back)
    assert not alice.received(presence(frm=f"{r}/alice", type="unavailable"), since=ma)
    # the room works both ways without joining again
    mid = alice.send_message(r, "still here", type="groupchat")
    alice.wait_for(message(frm=f"{r}/alice", id=mid, body="still here"), timeout=10)
    bob.wait_for(message(frm=f"{r}/alice", body="still here"))
    bob.send_message(r, "welcome back", type="groupchat")
    alice.wait_for(message(frm=f"{r}/bob", body="welcome back"))
