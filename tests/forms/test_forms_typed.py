"""Every data form Ferry sends gives every field its XEP-0004 type, and
every list field its options. A field without a type is text-single by the
XEP, but clients such as Profanity ignore it (they cannot fill it in, nor
show its value). Walked here: the registration form of every bridge
(XEP-0077 and the ad-hoc command), every command at every kind of address
(gateway as a user and as an administrator, contact, service, room) with
the forms of its steps and its result, the room configuration
(muc#owner), the archive's search form and the rooms' disco#info."""
from harness.stanza import NS, findall, has, message, presence

from irc_helpers import irc_config, room_jid as irc_room, unique
from matrix_helpers import MatrixUser, matrix_config, register as matrix_register
from matrix_helpers import room_jid as matrix_room

DATA = "{jabber:x:data}"
TYPES = {"boolean", "fixed", "hidden", "jid-multi", "jid-single", "list-multi", "list-single",
         "text-multi", "text-private", "text-single"}
# Commands that act at once, without a form (the walk would end there).
NEVER_RUN = {"leave"}
# Commands whose last step changes something a walk must not change: their
# first form is checked, then they are cancelled.
ONLY_LOOK = {"unregister", "admin/delete-user", "admin/disconnect-user", "disconnect-user",
             "admin/announce", "shout", "disconnect-from-irc-server", "leave", "relogin",
             "jabber:iq:register"}


def form_problems(el, where):
    """What is wrong with the data forms inside `el`."""
    out = []
    for x in el.iter(DATA + "x"):
        if x.get("type") == "submit":
            continue
        for f in findall(x, "data:field"):
            name = f"{where}: field {f.get('var')!r}"
            t = f.get("type")
            if t is None:
                out.append(f"{name} has no type")
            elif t not in TYPES:
                out.append(f"{name} has the unknown type {t!r}")
            elif t.startswith("list-") and x.get("type") == "form" and not findall(f, "data:option"):
                out.append(f"{name} is a {t} without options")
    return out


class Walk:
    """Collects the forms seen and what is wrong with them."""

    def __init__(self):
        self.problems = []
        self.forms = 0

    def check(self, el, where):
        self.forms += len(list(el.iter(DATA + "x")))
        self.problems += form_problems(el, where)

    def registration(self, client, jid):
        self.check(client.register_form(jid), f"XEP-0077 form of {jid}")
        r = client.command(jid, "jabber:iq:register")
        self.check(r.el, f"jabber:iq:register at {jid}")
        if r.status == "executing":
            client.command_cancel(r)

    def commands(self, client, jid, skip=()):
        nodes = client.commands(jid)
        assert nodes, f"no commands at {jid}"
        for node in nodes:
            if node in skip or node in NEVER_RUN:
                continue
            self.command(client, jid, node)
        return nodes

    def command(self, client, jid, node):
        where = f"{node} at {jid} (as {client.bare})"
        r = client.command(jid, node, allow_error=True)
        if r.status is None:
            return  # refused, with an error: no form
        self.check(r.el, where)
        steps = 0
        while r.status == "executing" and r.form is not None and steps < 4:
            steps += 1
            values = {var: f.values for var, f in r.form.fields.items()
                      if f.type not in ("fixed", "hidden")}
            missing = [var for var, f in r.form.fields.items() if f.required and not f.values]
            if node in ONLY_LOOK or missing:
                client.command_cancel(r)
                return
            action = "next" if "next" in r.actions else "complete"
            r = client.command(jid, node, action, r.sessionid, values, allow_error=True)
            if r.status is None:
                return
            self.check(r.el, f"{where}, step {steps + 1}")

    def room(self, client, room):
        """A joined room: its commands, muc#owner form, MAM form, disco."""
        self.commands(client, room)
        r = client.iq(f"<query xmlns='{NS['muc_owner']}'/>", to=room, allow_error=True)
        self.check(r, f"muc#owner form of {room}")
        r = client.iq(f"<query xmlns='{NS['mam']}'/>", to=room, allow_error=True)
        self.check(r, f"MAM form of {room}")
        self.check(client.disco_info(room).el, f"disco#info of {room}")

    def assert_clean(self, at_least):
        assert not self.problems, "\n".join(self.problems)
        assert self.forms >= at_least, f"only {self.forms} forms walked"


def test_every_form_of_the_test_bridge_and_the_core(ferry_factory, xmpp):
    f = ferry_factory()
    d = f.config.domain("test")
    alice, admin = xmpp("alice"), xmpp("admin")
    w = Walk()
    w.registration(alice, d)
    for c in (alice, admin):
        c.register(d, {"username": c.bare.split("@")[0], "password": c.bare.split("@")[0] + "pw"})
    w.check(alice.register_form(d), "XEP-0077 form of a registered user")
    w.check(alice.disco_info(d).el, f"disco#info of {d}")
    nodes = w.commands(alice, d)
    for n in ("status", "preferences", "wizard", "unregister"):
        assert n in nodes, nodes
    admin_nodes = w.commands(admin, d, skip=nodes)
    assert "admin/stats" in admin_nodes, admin_nodes
    w.commands(alice, f"echo@{d}")
    w.commands(alice, f"server@{d}")
    alice.join_muc(f"#lounge@{d}", "alice")
    w.room(alice, f"#lounge@{d}")
    w.assert_clean(at_least=20)


def test_every_form_of_the_irc_and_matrix_bridges(ferry_factory, xmpp, peers):
    peers.require("inspircd", "synapse")
    f = ferry_factory(bridges={"irc": irc_config(peers), "matrix": matrix_config()})
    irc_d, mx_d = f.config.domain("irc"), f.config.domain("matrix")
    alice = xmpp("alice")
    w = Walk()
    # IRC: the registration form, the gateway's, the server's and a
    # channel's commands (the biboumi `configure` forms among them).
    w.registration(alice, irc_d)
    w.check(alice.disco_info(irc_d).el, f"disco#info of {irc_d}")
    chan = "#" + unique("forms")
    rjid = irc_room(chan, irc_d)
    alice.join_muc(rjid, "alice")
    nodes = w.commands(alice, irc_d)
    assert "configure" in nodes, nodes
    assert "configure" in w.commands(alice, f"127.0.0.1@{irc_d}")
    w.room(alice, rjid)
    alice.leave_muc(rjid, "alice")
    # Matrix: the registration form (homeserver, username, password,
    # device), then the commands of a logged-in user and of a room.
    w.registration(alice, mx_d)
    me = matrix_register(alice, mx_d, peers)
    w.commands(alice, mx_d)
    bob = MatrixUser.register(peers.matrix_url, "formbob")
    room = bob.create_room(name="forms", invite=[me.user_id])
    mjid = matrix_room(room, mx_d)
    alice.wait_for(message() & has("conference:x", jid=mjid), timeout=30)
    alice.join_muc(mjid, "alice")
    w.room(alice, mjid)
    w.assert_clean(at_least=15)
