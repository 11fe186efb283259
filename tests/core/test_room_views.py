"""Each user sees the occupants their own network session reported, even
though the gateway stores a room's occupant list once for everyone in it
(src/muc/occupants.rs): a change that one user's session reports (here the
test network's `view ROOM +NICK` / `-NICK`, which tells only that user's
session, as a network that shows each user a list of its own would) must
never show up in another user's list, also once most users' sessions have
reported it and the shared table has taken it."""
from harness.stanza import message, presence

from helpers import register


def nicks(join):
    return {p.get("from").split("/", 1)[1] for p in join.occupants}


def view(client, domain, change):
    m = client.mark()
    client.send_message(f"echo@{domain}", f"view #views {change}")
    return m


def test_each_user_sees_only_what_their_own_session_reported(xmpp, domain):
    r = f"#views@{domain}"
    a1, b1, c1 = (xmpp(n, resource="one") for n in ("alice", "bob", "carol"))
    for c in (a1, b1, c1):
        register(c, domain)
    ma = a1.mark()
    a1.join_muc(r, "alice")
    b1.join_muc(r, "bob")
    c1.join_muc(r, "carol")
    a1.wait_for(presence(frm=f"{r}/carol"), since=ma)

    # Only alice's session sees ghost arrive.
    m = view(a1, domain, "+ghost")
    a1.wait_for(presence(frm=f"{r}/ghost"), since=m)
    # Then bob's too: now two of three lists have ghost, carol's does not.
    mb = view(b1, domain, "+ghost")
    b1.wait_for(presence(frm=f"{r}/ghost"), since=mb)
    # Only carol's session sees the bot leave.
    mc = view(c1, domain, "-echo")
    c1.wait_for(presence(frm=f"{r}/echo", type="unavailable"), since=mc)

    # A second client of each user gets that user's list from the
    # gateway's state (the session is in the room already).
    a2, b2, c2 = (xmpp(n, resource="two") for n in ("alice", "bob", "carol"))
    assert nicks(a2.join_muc(r, "alice")) == {"echo", "bob", "carol", "ghost"}
    assert nicks(b2.join_muc(r, "bob")) == {"echo", "alice", "carol", "ghost"}
    assert nicks(c2.join_muc(r, "carol")) == {"alice", "bob"}
    assert not c1.received(presence(frm=f"{r}/ghost"))
    assert not a1.received(presence(frm=f"{r}/echo", type="unavailable"), since=ma)

    # alice's session sees ghost go: her clients get it, bob's keep ghost.
    m2 = view(a2, domain, "-ghost")
    a2.wait_for(presence(frm=f"{r}/ghost", type="unavailable"), since=m2)
    b3 = xmpp("bob", resource="three")
    assert nicks(b3.join_muc(r, "bob")) == {"echo", "alice", "carol", "ghost"}
    a3 = xmpp("alice", resource="three")
    assert nicks(a3.join_muc(r, "alice")) == {"echo", "bob", "carol"}
    assert not b1.received(presence(frm=f"{r}/ghost", type="unavailable"))

    # Room messages still name the right sender for everyone.
    mm = c1.mark()
    a1.send_message(r, "hello views", type="groupchat")
    c1.wait_for(message(frm=f"{r}/alice", body="hello views"), since=mm)
