"""One crash domain per (bridge, user): a panic in one user's session (in
`act`, or in a task it started) is reported to that user and the session
restarts; another user of the same bridge does not notice."""
import time

import pytest

from harness.stanza import find, message, text

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
