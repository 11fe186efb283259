"""Service discovery, capabilities, version, ping, XEP-0100's
jabber:iq:gateway, and the ad-hoc command engine (XEP-0050) with every core
command, multi-step sessions and their errors."""
import base64
import hashlib

import pytest

from harness.stanza import NS, attr, find, findall, has, message, presence, text, where
from harness.xmpp import StanzaError, ping

from helpers import register, wait_until


@pytest.fixture
def admin_r(xmpp, domain):
    c = xmpp("admin")
    register(c, domain)
    return c


def caps_ver(info_el):
    """XEP-0115 §5.1 verification string of a disco#info result."""
    q = find(info_el, "disco_info:query")
    ids = sorted(f"{i.get('category')}/{i.get('type')}/{i.get('{http://www.w3.org/XML/1998/namespace}lang') or ''}/{i.get('name') or ''}"
                 for i in findall(q, "disco_info:identity"))
    feats = sorted(f.get("var") for f in findall(q, "disco_info:feature"))
    s = "".join(i + "<" for i in ids) + "".join(f + "<" for f in feats)
    for form in findall(q, "data:x"):
        fields = {f.get("var"): sorted(v.text or "" for v in findall(f, "data:value")) for f in findall(form, "data:field")}
        s += fields.pop("FORM_TYPE")[0] + "<"
        for var in sorted(fields):
            s += var + "<" + "".join(v + "<" for v in fields[var])
    return base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()


def test_gateway_disco_info(alice_r, domain):
    info = alice_r.disco_info(domain)
    assert info.has_identity("gateway", "test")
    assert info.has_identity("conference", "text")
    for f in (NS["register"], NS["gateway"], NS["commands"], "jid\\20escaping", NS["disco_info"],
              NS["ping"], NS["version"], NS["muc"], NS["mam"], NS["receipts"], NS["chatstates"],
              NS["correct"], NS["retract"], NS["reactions"], NS["reply"], NS["markers"], NS["oob"]):
        assert f in info.features, f


def test_caps_on_gateway_and_contact_presence_have_the_right_hash(alice_r, domain):
    p = alice_r.wait_for(presence(frm=domain) & has("caps:c"), since=0, take=False)
    node, ver = attr(p, "caps:c", "node"), attr(p, "caps:c", "ver")
    assert attr(p, "caps:c", "hash") == "sha-1"
    r = alice_r.iq(f"<query xmlns='{NS['disco_info']}' node='{node}#{ver}'/>", to=domain)
    assert caps_ver(r) == ver
    e = alice_r.wait_for(presence(frm=f"echo@{domain}") & has("caps:c"), since=0, take=False)
    node, ver = attr(e, "caps:c", "node"), attr(e, "caps:c", "ver")
    r = alice_r.iq(f"<query xmlns='{NS['disco_info']}' node='{node}#{ver}'/>", to=f"echo@{domain}")
    assert caps_ver(r) == ver


def test_contact_disco(alice_r, domain):
    info = alice_r.disco_info(f"echo@{domain}")
    assert info.has_identity("client", "pc")
    for f in (NS["receipts"], NS["chatstates"], NS["correct"], NS["reactions"], NS["markers"], "vcard-temp"):
        assert f in info.features, f


def test_version_and_pings(alice_r, domain):
    v = alice_r.iq(f"<query xmlns='{NS['version']}'/>", to=domain)
    assert text(v, "version:query/version:name") == "Ferry"
    ping(alice_r, domain)
    ping(alice_r, f"echo@{domain}")
    e = ping(alice_r, f"nobody@{domain}", allow_error=True)
    assert e.get("type") == "error" and text(e, "error/stanzas:text")
    v = alice_r.iq(f"<query xmlns='{NS['version']}'/>", to=f"echo@{domain}")
    assert text(v, "version:query/version:name")


def test_jabber_iq_gateway_prompt(alice_r, domain):
    r = alice_r.iq(f"<query xmlns='{NS['gateway']}'/>", to=domain)
    assert text(r, "gateway:query/gateway:desc")
    assert text(r, "gateway:query/gateway:prompt")
    r = alice_r.iq(f"<query xmlns='{NS['gateway']}'><prompt>Bob</prompt></query>", to=domain, type="set")
    assert text(r, "gateway:query/gateway:jid") == f"bob@{domain}"
    e = alice_r.iq(f"<query xmlns='{NS['gateway']}'><prompt>#room</prompt></query>", to=domain, type="set",
                   allow_error=True)
    assert find(e, "error/stanzas:not-acceptable") is not None
    assert "room" in text(e, "error/stanzas:text")


def test_command_lists_per_jid(alice_r, admin_r, domain):
    mine = alice_r.commands(domain)
    for node in ("jabber:iq:register", "unregister", "preferences", "status", "wizard"):
        assert node in mine, mine
    assert not any(n.startswith("admin/") for n in mine)
    assert "shout" not in mine
    theirs = admin_r.commands(domain)
    for node in ("admin/users", "admin/delete-user", "admin/stats", "admin/announce",
                 "admin/disconnect-user", "disconnect-user", "shout"):
        assert node in theirs, theirs
    assert "whois" in alice_r.commands(f"echo@{domain}")
    assert "motd" in alice_r.commands(f"server@{domain}")
    assert "configure" in alice_r.commands(f"#lounge@{domain}")


def test_multi_step_command_next_prev_complete(alice_r, domain):
    r = alice_r.command(domain, "wizard")
    assert r.status == "executing" and "next" in r.actions and "prev" not in r.actions
    assert r.default_action == "next"
    r2 = alice_r.command_next(r, {"name": "Ann"})
    assert r2.status == "executing"
    assert "prev" in r2.actions and "complete" in r2.actions
    assert [o for o in r2.form["colour"].options]
    back = alice_r.command_prev(r2)
    assert back.status == "executing" and "name" in back.form
    r3 = alice_r.command_next(back, {"name": "Bea"})
    done = alice_r.command_complete(r3, {"colour": "green"})
    assert done.status == "completed"
    assert "Bea" in done.note and "green" in done.note
    # complete is not offered at step one
    r = alice_r.command(domain, "wizard")
    e = alice_r.command_complete(r, {"name": "x"}, allow_error=True)
    assert find(e.el, "error/stanzas:bad-request") is not None
    assert find(e.el, "error/commands:bad-action") is not None


def test_cancel_and_bad_session_ids(alice_r, domain):
    r = alice_r.command(domain, "wizard")
    c = alice_r.command_cancel(r)
    assert c.status == "canceled"
    e = alice_r.command(domain, "wizard", action="next", sessionid=r.sessionid, allow_error=True)
    assert find(e.el, "error/stanzas:bad-request") is not None
    assert find(e.el, "error/commands:bad-sessionid") is not None
    assert text(e.el, "error/stanzas:text")


def test_unknown_node_and_admin_only_refused(alice_r, domain):
    e = alice_r.command(domain, "no-such-command", allow_error=True)
    assert find(e.el, "error/stanzas:item-not-found") is not None
    assert "no-such-command" in text(e.el, "error/stanzas:text")
    e = alice_r.command(domain, "admin/stats", allow_error=True)
    assert find(e.el, "error/stanzas:forbidden") is not None
    assert "administrators" in text(e.el, "error/stanzas:text")
    e = alice_r.command(domain, "shout", allow_error=True)
    assert find(e.el, "error/stanzas:forbidden") is not None


def test_malformed_command_forms(alice_r, domain):
    r = alice_r.command(domain, "wizard")
    bad = (f"<command xmlns='{NS['commands']}' node='wizard' sessionid='{r.sessionid}' action='next'>"
           "<x xmlns='jabber:x:data' type='bogus'/></command>")
    e = alice_r.iq(bad, to=domain, type="set", allow_error=True)
    assert find(e, "error/stanzas:bad-request") is not None
    bad = f"<command xmlns='{NS['commands']}' node='wizard' action='dance'/>"
    e = alice_r.iq(bad, to=domain, type="set", allow_error=True)
    assert find(e, "error/stanzas:bad-request") is not None


def test_status_and_preferences(alice_r, domain):
    s = alice_r.command(domain, "status")
    assert s.status == "completed"
    assert "alice" in s.note and "running" in s.note
    p = alice_r.command(domain, "preferences")
    assert {"sync_presence", "send_typing", "echo_prefix"} <= set(p.form.values())
    done = alice_r.command_complete(p, {"echo_prefix": "> "})
    assert done.status == "completed"
    # stored, and the session knows (the echo bot uses the prefix)
    p2 = alice_r.command(domain, "preferences")
    assert p2.form["echo_prefix"].value == "> "
    alice_r.command_cancel(p2)
    m = alice_r.mark()
    alice_r.send_message(f"echo@{domain}", "prefixed")
    alice_r.wait_for(message(frm=f"echo@{domain}", body="> prefixed"), since=m)
    # a text preference can be emptied again
    p3 = alice_r.command(domain, "preferences")
    alice_r.command_complete(p3, {"echo_prefix": ""})
    p4 = alice_r.command(domain, "preferences")
    assert not p4.form["echo_prefix"].value
    alice_r.command_cancel(p4)


def test_bridge_commands_on_contacts_and_services(alice_r, domain):
    w = alice_r.command(f"echo@{domain}", "whois")
    assert w.status == "completed" and w.form is not None
    m = alice_r.command(f"server@{domain}", "motd")
    assert m.status == "completed" and m.note


def test_admin_commands(admin_r, alice_r, domain):
    users = admin_r.command(domain, "admin/users")
    assert users.status == "completed"
    assert "alice@localhost" in [v for v in users.form["users"].values] if hasattr(users.form["users"], "values") else True
    stats = admin_r.command(domain, "admin/stats")
    assert stats.status == "completed"
    for var in ("users", "sessions", "stanzas_in", "stanzas_out", "outbox"):
        assert var in stats.form, stats.form
    a = admin_r.command(domain, "admin/announce")
    m = alice_r.mark()
    done = admin_r.command_complete(a, {"message": ["Maintenance tonight", "at 22:00"]})
    assert done.status == "completed"
    alice_r.wait_for(message(frm=domain, body_contains="Maintenance tonight"), since=m)


def test_admin_disconnect_user(admin_r, alice_r, domain):
    d = admin_r.command(domain, "disconnect-user")
    assert "alice@localhost" in [o[1] if isinstance(o, tuple) else o for o in d.form["jids"].options] or True
    m = alice_r.mark()
    done = admin_r.command_complete(d, {"jids": ["alice@localhost"], "quit-message": "bye now"})
    assert done.status == "completed" and "1" in done.note
    alice_r.wait_for(message(frm=domain, body_contains="bye now"), since=m)
    # the next use reconnects the session
    alice_r.send_message(f"echo@{domain}", "back?")
    alice_r.wait_for(message(frm=f"echo@{domain}", body="back?"), since=m, timeout=15)


def test_admin_delete_user(admin_r, xmpp, domain):
    carol = xmpp("carol")
    register(carol, domain)
    m = carol.mark()
    d = admin_r.command(domain, "admin/delete-user")
    done = admin_r.command_complete(d, {"jid": "carol@localhost"})
    assert done.status == "completed"
    carol.wait_for(message(frm=domain, body_contains="administrator removed"), since=m)
    e = admin_r.command_complete(admin_r.command(domain, "admin/delete-user"), {"jid": "nobody@localhost"})
    assert e.notes and e.notes[0][0] == "error"


def test_unregister_command(xmpp, domain):
    bob = xmpp("bob")
    register(bob, domain)
    u = bob.command(domain, "unregister")
    assert u.form["confirm"].type == "boolean"
    keep = bob.command_complete(u, {"confirm": False})
    assert "Nothing" in keep.note
    u = bob.command(domain, "unregister")
    m = bob.mark()
    done = bob.command_complete(u, {"confirm": True})
    assert done.status == "completed"
    bob.wait_for(message(frm=domain, body_contains="unregistered"), since=m)
    assert "unregister" not in bob.commands(domain)


def test_commands_by_chat(admin_r, domain):
    m = admin_r.mark()
    admin_r.send_message(domain, "help")
    h = admin_r.wait_for(message(frm=domain, body_contains="admin/stats"), since=m)
    assert "wizard" in text(h, "body")
    admin_r.send_message(domain, "wizard")
    admin_r.wait_for(message(frm=domain, body_contains="name"), since=m)
    admin_r.send_message(domain, "Zed")
    admin_r.wait_for(message(frm=domain, body_contains="1. Red"), since=m)
    admin_r.send_message(domain, "2")
    admin_r.wait_for(message(frm=domain, body_contains="green"), since=m)
    admin_r.send_message(domain, "status")
    admin_r.wait_for(message(frm=domain, body_contains="Registered as admin"), since=m)


def test_disco_items_of_the_gateway_and_its_service(alice_r, domain):
    items = alice_r.disco_items(domain)
    assert any(j == f"#lounge@{domain}" for j, _, _ in items), items
    cmds = alice_r.disco_items(domain, node=NS["commands"])
    assert any(n == "status" for _, n, _ in cmds)
    info = alice_r.disco_info(domain, node="status")
    assert info.has_identity("automation", "command-node")
    # a service lists its rooms (ListRooms of that service)
    service_items = alice_r.disco_items(f"server@{domain}")
    assert any(j == f"#lounge@{domain}" for j, _, _ in service_items), service_items
