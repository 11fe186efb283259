"""A real client other than slixmpp fills in Ferry's forms: Profanity (the
terminal client) in tmux registers with the test bridge through the ad-hoc
command's form, and shows the Matrix registration form's fields (with the
device name's default value) and registers with them too. Profanity
ignores data-form fields without a type: before every field carried its
type, "User name" and "Homeserver" could not be filled in at all."""
import re

from harness.profanity import Profanity

from matrix_helpers import MatrixUser, matrix_config


def test_profanity_registers_through_the_forms(ferry_factory, peers, tmp_path):
    peers.require("synapse")
    f = ferry_factory(bridges={"test": {}, "matrix": matrix_config()})
    d, mx = f.config.domain("test"), f.config.domain("matrix")
    with Profanity(tmp_path) as p:
        p.connect(peers.jid("carol"), peers.password("carol"), peers.host, peers.c2s_port)

        p.type(f"/cmd exec jabber:iq:register {d}")
        p.wait_for(r"\[field1\] User name \(required\):\s*\n", what="the user name field")
        p.wait_for(r"\[field2\] Password \(required\):", what="the password field")
        p.type("/field1 carol")
        p.type("/field2 carolpw")
        p.type("/form submit")
        f.wait_for_log(r"user registered bridge=test user=carol@localhost", timeout=20)

        user = MatrixUser.register(peers.matrix_url, "prof")
        p.type(f"/cmd exec jabber:iq:register {mx}")
        p.wait_for(r"\[field1\] Homeserver \(required\):\s*\n", what="the homeserver field")
        p.wait_for(r"\[field2\] User name \(required\):\s*\n", what="the user name field")
        p.wait_for(r"\[field3\] Password \(required\):", what="the password field")
        p.wait_for(r"\[field4\] Device name: \S+", what="the device name and its default")
        p.type(f"/field1 {peers.matrix_url}")
        p.type(f"/field2 {user.user_id}")
        p.type(f"/field3 {user.password}")
        p.wait_for(r"\[field1\] Homeserver \(required\): " + re.escape(peers.matrix_url),
                   what="the homeserver as typed")
        p.type("/form submit")
        f.wait_for_log(r"user registered bridge=matrix user=carol@localhost", timeout=30)
