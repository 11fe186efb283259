"""The gateway on ejabberd 23.01 (XEP-0356 privilege:1, whose roster push
fails on that version): registration, a round trip, a room, and the roster
reached by the fallback after the refused push."""
import pytest

from harness.stanza import NS, has, message, presence, text

from helpers import forget_gateway, register, wait_until


@pytest.fixture
def ej(peers, ferry_factory, xmpp):
    peers.require("ejabberd")
    f = ferry_factory(config={"xmpp": {"port": peers.ej_component_port}})
    alice = xmpp("alice", port=peers.ej_c2s_port)
    return f, f.config.domain("test"), alice


def test_on_ejabberd(ej):
    f, d, alice = ej
    forget_gateway(alice, d)
    m = alice.mark()
    register(alice, d)
    alice.send_message(f"echo@{d}", "hello ejabberd", extra="<request xmlns='urn:xmpp:receipts'/>")
    alice.wait_for(message(frm=f"echo@{d}", body="hello ejabberd"), since=m)
    j = alice.join_muc(f"#ej@{d}", "alice")
    assert j.kinds()[-1] == "subject"
    # contacts reach the roster one way or another (the push is refused by
    # ejabberd 23.01; subscription requests follow)
    wait_until(lambda: f"echo@{d}" in alice.roster(), timeout=15, what="echo in the roster")
