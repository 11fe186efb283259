"""Secrets never reach the log, at any level (trace included): passwords
given in the registration form of every bridge (XEP-0077 form or legacy
fields, the ad-hoc command, the chat fallback), in IRC's `configure`, and
whatever the XMPP library would capture of the raw stream. Stanzas are
still traced (target ferry::stanza), with `[redacted]` in their place."""
import os
import re

from harness.stanza import message
from harness.xmpp import StanzaError

from helpers import wait_until


def test_passwords_are_redacted_at_every_level(ferry_factory, xmpp):
    tag = f"{os.getpid()}x{id(object()) % 100000}"
    secrets = {name: f"{name}-Secret-{tag}" for name in ("form", "legacy", "command", "chat",
                                                          "irc", "sasl", "matrix")}
    accounts = {"alice": secrets["form"], "bob": secrets["legacy"], "carol": secrets["command"],
                "admin": secrets["chat"]}
    f = ferry_factory(bridges={"test": {"accounts": accounts}, "irc": {},
                               "matrix": {"allow_insecure_http": True}},
                      log_level="trace")
    d, irc, matrix = f.config.domain("test"), f.config.domain("irc"), f.config.domain("matrix")
    alice, bob, carol, admin = xmpp("alice"), xmpp("bob"), xmpp("carol"), xmpp("admin")
    alice.register(d, {"username": "alice", "password": secrets["form"]})
    bob.register(d, {"username": "bob", "password": secrets["legacy"]}, form=False)
    r = carol.command(d, "jabber:iq:register")
    r = carol.command_complete(r, {"username": "carol", "password": secrets["command"]})
    assert r.status == "completed", r.notes
    m = admin.mark()
    admin.send_message(d, "register")
    admin.wait_for(message(frm=d, body_contains="User name"), since=m)
    admin.send_message(d, "admin")
    admin.wait_for(message(frm=d, body_contains="Password"), since=m)
    admin.send_message(d, secrets["chat"])
    admin.wait_for(message(frm=d, body_contains="as admin"), since=m)
    r = alice.command(f"secrets.example.org@{irc}", "configure")
    r = alice.command_complete(r, {"nick": "alicenick", "pass": secrets["irc"],
                                   "sasl_password": secrets["sasl"]})
    assert r.status == "completed", r.notes
    # A Matrix homeserver that is not there: the login fails, the password
    # was in the stanza all the same.
    try:
        alice.register(matrix, {"homeserver": "http://127.0.0.1:9", "username": "@alice:localhost",
                                "password": secrets["matrix"]})
    except StanzaError:
        pass
    wait_until(lambda: "sasl_password" in f.log(), what="the configure form in the log")
    log = f.log()
    # No password is in it, anywhere…
    for what, secret in secrets.items():
        assert secret not in log, f"the {what} password is in the log:\n" + "\n".join(
            line for line in log.splitlines() if secret in line)[:3000]
    # …though the stanzas are traced, secrets redacted.
    assert re.search(r"ferry::stanza.*in: <iq", log), log[-3000:]
    assert "[redacted]" in log
