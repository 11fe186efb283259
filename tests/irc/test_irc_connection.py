"""The user's IRC connections end to end: biboumi's ad-hoc commands on the
server JID, the server JID's presence, the connection closed after the
last room even after a private message, the IRC server restarted in the
middle of a conversation, an operator's KILL, a private conversation
across a restart of ferry, an administrator's disconnect-user as QUIT,
and the operator's log of it all."""
import re
import time
from pathlib import Path

from harness.stanza import NS, error_condition, find, findall, has, message, presence, text, to_string, where

from irc_helpers import configure_server, irc_config, oper, room_jid, unique, use_ngircd


def online(nick):
    """MONITOR's "is online" numeric for NICK."""
    return rf" 730 \S+ :{re.escape(nick)}(!|$)"


def offline(nick):
    return rf" 731 \S+ :{re.escape(nick)}$"


def log_lines(f, what, user):
    """The operator's info lines of ferry `f` about `what` for `user`."""
    return [line for line in f.log().splitlines()
            if " INFO " in line and f"IRC connection {what}" in line and f"user={user}" in line]


def test_server_configure_has_every_biboumi_field(alice, domain):
    server = f"127.0.0.1@{domain}"
    assert "configure" in alice.commands(server)
    assert "get-irc-connection-info" in alice.commands(server)
    r = alice.command(server, "configure")
    fields = set(r.form.fields)
    for var in ["address", "ports", "tls_ports", "verify_cert", "fingerprint", "sasl_password", "nick",
                "pass", "after_connect_commands", "username", "realname", "throttle_limit",
                "max_history_length", "encoding_out", "encoding_in"]:
        assert var in fields, var
    assert r.form["max_history_length"].label == "Maximum history length"
    assert r.form["ports"].type == "text-multi"
    assert r.form["pass"].type == "text-private"
    # A bad value is refused with the field named.
    r = alice.command_complete(r, {"ports": ["sixty-six"]})
    assert r.status == "completed" or r.notes
    assert any("ports" in n for _, n in r.notes), r.notes
    # Gateway commands.
    cmds = alice.commands(domain)
    assert "configure" in cmds and "disconnect-from-irc-server" in cmds


def test_server_passwords_are_encrypted_at_rest(alice, gw, domain):
    # The IRC PASS and the SASL password a user gives in `configure` are
    # sealed with the gateway's key: the database file never holds them.
    tag = unique("")
    nick, server_pw, sasl_pw = f"plainnick{tag}", f"Srv-pa55-{tag}", f"Sasl-pa55-{tag}"
    configure_server(alice, domain, "secrets.example.org",
                     {"nick": nick, "pass": server_pw, "sasl_password": sasl_pw})
    data_dir = Path(gw.config.sections["storage"]["data_dir"])
    files = sorted(data_dir.glob("irc.db*"))
    blob = b"".join(p.read_bytes() for p in files)
    assert nick.encode() in blob, f"not the settings' database: {files}"
    assert server_pw.encode() not in blob, "IRC server password stored in the clear"
    assert sasl_pw.encode() not in blob, "SASL password stored in the clear"
    # The form does not send them back.
    r = alice.command(f"secrets.example.org@{domain}", "configure")
    assert server_pw not in to_string(r.el) and sasl_pw not in to_string(r.el)


def test_connection_info_and_server_presence(alice, irc, domain):
    chan = "#" + unique("info")
    r = room_jid(chan, domain)
    alice.join_muc(r, "alice")
    server = f"127.0.0.1@{domain}"
    alice.wait_for(presence(frm=server) & ~has("muc_user:x"), since=0)
    res = alice.command(server, "get-irc-connection-info")
    note = res.note
    assert "Connected to IRC server 127.0.0.1 on port" in note, note
    assert chan in note, note


def test_connection_closed_after_the_last_room_even_after_a_private_message(ferry_factory, peers, xmpp, irc):
    # A second ferry: on the unprivileged irc2.localhost component.
    f = ferry_factory(bridges={"irc": irc_config(peers, idle_timeout=3, domain="irc2.localhost")})
    domain = f.config.domain("irc")
    carol = xmpp("carol")
    watcher = irc(unique("w"))
    chan = "#" + unique("idle")
    r = room_jid(chan, domain)
    carol.join_muc(r, "carol")
    watcher.send("MONITOR + carol")
    watcher.wait_for(r" 730 ")
    carol.send_message(f"{watcher.nick.lower()}%127.0.0.1@{domain}", "a private word", type="chat")
    watcher.wait_for(r"PRIVMSG \S+ :a private word$")
    carol.leave_muc(r, "carol")
    t0 = time.monotonic()
    watcher.expect_no(r" 731 ", within=1.5)
    watcher.wait_for(r" 731 ", timeout=10)
    assert time.monotonic() - t0 >= 2.0
    # The server's JID goes offline.
    carol.wait_for(presence(frm=f"127.0.0.1@{domain}", type="unavailable"))


def test_irc_server_restarted_mid_conversation(alice, irc, domain, peers):
    use_ngircd(alice, domain, peers)
    chan = "#" + unique("rst")
    bob_nick = unique("bob")
    bob = irc(bob_nick, server="ngircd")
    bob.join(chan)
    r = room_jid(chan, domain, server="127.0.0.2")
    alice.join_muc(r, "alice")
    bob.send(f"PRIVMSG {chan} :before")
    alice.wait_for(message(frm=f"{r}/{bob_nick}", body="before"))
    mark = alice.mark()
    peers.restart("ngircd", downtime=2)
    # The client stays in the room: its own presence turns xa and says why.
    st = alice.wait_for(presence(frm=f"{r}/alice") & has("muc_user:x/muc_user:status", code="110"), since=mark, timeout=15)
    assert st.get("type") is None, to_string(st)
    assert text(st, "show") == "xa", to_string(st)
    assert "lost" in (text(st, "status") or ""), to_string(st)
    # A message meanwhile is refused with a reason, not dropped silently.
    mid = alice.send_message(r, "too early", type="groupchat")
    err = alice.wait_for(message(id=mid, type="error"), timeout=5)
    assert error_condition(err)[:2] == ("wait", "recipient-unavailable"), to_string(err)
    bob = irc(bob_nick, server="ngircd")
    bob.join(chan)
    # Ferry rejoins IRC by itself and the client is back without joining again.
    bob.wait_for(r"^:alice!\S+ JOIN", timeout=30)
    back = alice.wait_for(
        presence(frm=f"{r}/alice") & has("muc_user:x/muc_user:status", code="110") & ~has("show"),
        timeout=15,
    )
    assert back.get("type") is None, to_string(back)
    # bob, who came back, is listed again.
    alice.wait_for(presence(frm=f"{r}/{bob_nick}") & ~has("show"), since=mark, timeout=10)
    bob.send(f"PRIVMSG {chan} :after")
    alice.wait_for(message(frm=f"{r}/{bob_nick}", body="after"))
    alice.send_message(r, "me too", type="groupchat")
    bob.wait_for(r"^:alice!\S+ PRIVMSG \S+ :me too$")
    # No unavailable self-presence was sent, and nothing arrived twice.
    gone = presence(frm=f"{r}/alice", type="unavailable")
    assert not alice.received(gone, since=mark), [to_string(s) for s in alice.received(gone, since=mark)]
    live = message(frm=f"{r}/{bob_nick}") & ~has("delay:delay")
    got = [text(s, "body") for s in alice.received(live)]
    assert got.count("before") == 1 and got.count("after") == 1, got
    bob.expect_no(r"PRIVMSG \S+ :(me too|too early)$", within=0.5)


def test_nick_taken_while_the_irc_server_restarted(alice, irc, domain, peers):
    # Someone takes the user's nick while Ferry reconnects: the client stays
    # in the room and is told its new nick (303), as on a nick change.
    use_ngircd(alice, domain, peers)
    chan = "#" + unique("nck")
    nick = unique("al")
    r = room_jid(chan, domain, server="127.0.0.2")
    alice.join_muc(r, nick)
    mark = alice.mark()
    # 4 s down: Ferry's attempts (1 s, then 2 s later, ±20 %) fail, its next
    # one comes >= 1.4 s after the server is back, when the nick is taken.
    peers.restart("ngircd", downtime=4)
    alice.wait_for(presence(frm=f"{r}/{nick}") & has("muc_user:x/muc_user:status", code="110"),
                   since=mark, timeout=15)
    squatter = irc(nick, server="ngircd")
    assert squatter.nick == nick
    change = alice.wait_for(presence(frm=f"{r}/{nick}", type="unavailable")
                            & has("muc_user:x/muc_user:status", code="303"), since=mark, timeout=30)
    new = find(change, "muc_user:x/muc_user:item").get("nick")
    assert new and new != nick, to_string(change)
    back = alice.wait_for(presence(frm=f"{r}/{new}") & has("muc_user:x/muc_user:status", code="110")
                          & ~has("show"), since=mark, timeout=15)
    assert back.get("type") is None, to_string(back)
    squatter.join(chan)
    squatter.wait_for(rf"^:\S+ 353 .*{re.escape(new)}", timeout=10)


def test_admin_disconnect_user_quits_with_the_message(admin, xmpp, irc, domain):
    dave = xmpp("bob")
    chan = "#" + unique("dis")
    watcher = irc(unique("w"))
    watcher.join(chan)
    r = room_jid(chan, domain)
    dave.join_muc(r, "bobx")
    watcher.wait_for(r"^:bobx!\S+ JOIN")
    res = admin.command(domain, "admin/disconnect-user")
    res = admin.command_complete(res, {"jids": ["bob@localhost"], "quit-message": "Maintenance, back soon"})
    assert res.status == "completed", res.notes
    watcher.wait_for(r"^:bobx!\S+ QUIT :.*Maintenance, back soon")


def test_fixed_server_mode_drops_the_server_from_addresses(ferry_factory, peers, xmpp, irc):
    f = ferry_factory(bridges={"irc": irc_config(peers, fixed_server="127.0.0.1", domain="irc2.localhost")})
    domain = f.config.domain("irc")
    carol = xmpp("carol")
    bob = irc(unique("bob"))
    chan = "#" + unique("fixed")
    bob.join(chan)
    r = f"{chan}@{domain}"
    carol.join_muc(r, "carol")
    bob.wait_for(r"^:carol!\S+ JOIN")
    bob.send(f"PRIVMSG {chan} :fixed hello")
    carol.wait_for(message(frm=f"{r}/{bob.nick}", body="fixed hello"))
    carol.send_message(f"{bob.nick.lower()}@{domain}", "direct", type="chat")
    bob.wait_for(r"^:carol!\S+ PRIVMSG \S+ :direct$")
    cmds = carol.commands(domain)
    assert "server-configure" in cmds and "get-irc-connection-info" in cmds


def test_channel_list_and_gateway_prompt(alice, irc, domain):
    chan = "#" + unique("listed")
    bob = irc(unique("bob"))
    bob.join(chan)
    items = alice.disco_items(f"127.0.0.1@{domain}")
    jids = [j for j, _, _ in items]
    assert room_jid(chan.lower(), domain) in jids, jids
    # XEP-0100: the prompt turns "#chan%server" into the room's JID.
    r = alice.iq("<query xmlns='jabber:iq:gateway'/>", to=domain)
    assert find(r, "{jabber:iq:gateway}query/{jabber:iq:gateway}prompt") is not None or \
        text(r, "{jabber:iq:gateway}query/{jabber:iq:gateway}desc")
    r = alice.iq(f"<query xmlns='jabber:iq:gateway'><prompt>{chan}%127.0.0.1</prompt></query>",
                 to=domain, type="set")
    jid = text(r, "{jabber:iq:gateway}query/{jabber:iq:gateway}jid") or \
        text(r, "{jabber:iq:gateway}query/{jabber:iq:gateway}prompt")
    assert jid == room_jid(chan.lower(), domain), jid


def test_a_kill_brings_back_only_a_connection_in_use(ferry_factory, peers, xmpp, irc):
    # An operator KILLs the user's connection. One that nothing uses (a raw
    # command was its last use: no room, no private message) stays gone;
    # one carrying a private conversation comes back. The operator's log
    # has one info line per event, with the user and the server, and no
    # password.
    f = ferry_factory(bridges={"irc": irc_config(peers, domain="irc2.localhost")})
    domain = f.config.domain("irc")
    carol = xmpp("carol")
    nick, secret = unique("kc"), unique("Pa55-")
    configure_server(carol, domain, "127.0.0.1", {"nick": nick, "pass": secret})
    op = oper(irc, peers)
    op.send(f"MONITOR + {nick}")
    op.wait_for(offline(nick))
    carol.send_message(f"127.0.0.1@{domain}", f"WHOIS {op.nick}", type="chat")
    op.wait_for(online(nick))
    op.send(f"KILL {nick} :not needed")
    op.wait_for(offline(nick))
    op.expect_no(online(nick), within=4)
    # A private conversation: killed, the connection is back.
    carol.send_message(f"{op.nick.lower()}%127.0.0.1@{domain}", "still there?", type="chat")
    op.wait_for(online(nick))
    op.wait_for(rf"^:{nick}!\S+ PRIVMSG {op.nick} :still there\?$")
    op.send(f"KILL {nick} :needed")
    op.wait_for(offline(nick))
    op.wait_for(online(nick), timeout=10)
    f.wait_for_log(r"IRC connection back")
    for what in ("opened", "KILLed: killed by", "dropped, not reconnecting", "dropped, reconnecting",
                 "back"):
        lines = log_lines(f, what, "carol@localhost")
        assert lines and all("server=127.0.0.1" in line for line in lines), (what, f.log_tail(40))
    assert "not needed" in log_lines(f, "KILLed", "carol@localhost")[0]
    assert not [line for line in f.log().splitlines() if "IRC connection" in line and secret in line]


def test_a_join_after_kills_does_not_wait_for_the_backoff(ferry_factory, peers, xmpp, irc):
    # KILLed again and again while in a room, Ferry comes back each time,
    # waiting longer each time (1, 2, 4 s, then 8). A room the user joins
    # meanwhile is joined at once, not after the wait.
    f = ferry_factory(bridges={"irc": irc_config(peers, domain="irc2.localhost")})
    domain = f.config.domain("irc")
    bob = xmpp("bob")
    nick = unique("kj")
    op = oper(irc, peers)
    op.send(f"MONITOR + {nick}")
    op.wait_for(offline(nick))
    bob.join_muc(room_jid("#" + unique("kill"), domain), nick)
    op.wait_for(online(nick))
    for i in range(3):
        op.send(f"KILL {nick} :kill {i}")
        op.wait_for(offline(nick))
        op.wait_for(online(nick), timeout=20)
    watcher = irc(unique("w"))
    chan = "#" + unique("after")
    watcher.join(chan)
    op.send(f"KILL {nick} :kill 3")
    op.wait_for(offline(nick))
    bob.send(f"<presence to='{room_jid(chan, domain)}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    watcher.wait_for(rf"^:{nick}!\S+ JOIN :?{re.escape(chan)}$", timeout=5)


def test_a_private_conversation_survives_a_restart(ferry_factory, peers, xmpp, irc):
    # Ferry stops (SIGTERM), then crashes (SIGKILL), in the middle of a
    # private conversation: each time it comes back on IRC under the same
    # nick by itself, so the other side's next message arrives.
    f = ferry_factory(bridges={"irc": irc_config(peers, domain="irc2.localhost")})
    domain = f.config.domain("irc")
    carol = xmpp("carol")
    nick = unique("rs")
    configure_server(carol, domain, "127.0.0.1", {"nick": nick})
    bob = irc(unique("bob"))
    bob.send(f"MONITOR + {nick}")
    bob.wait_for(offline(nick))
    contact = f"{bob.nick.lower()}%127.0.0.1@{domain}"
    carol.send_message(contact, "before the restart", type="chat")
    bob.wait_for(online(nick))
    bob.wait_for(rf"^:{nick}!\S+ PRIVMSG {bob.nick} :before the restart$")
    for how, stop in (("stopped", f.stop), ("crashed", f.kill)):
        stop()
        bob.wait_for(offline(nick))
        f.start()
        bob.wait_for(online(nick), timeout=15)
        bob.send(f"PRIVMSG {nick} :after ferry {how}")
        carol.wait_for(message(frm=contact, type="chat", body=f"after ferry {how}"), timeout=10)
    assert len(log_lines(f, "restored", "carol@localhost")) == 2, f.log_tail(60)
