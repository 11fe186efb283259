"""Which IRC servers the gateway connects to: the operator's allowed and
denied hosts, and by default no loopback, private, link-local or
unique-local address, checked on the address a name resolves to. Every
refusal is a clear error to the user, and nothing reaches the refused
address (a listener there would see it). These tests aim at 127.0.0.3
only: this machine must send nothing outside 127.0.0.0/8."""
import socket
import threading

import pytest

from harness.stanza import error_condition, message, to_string
from harness.xmpp import StanzaError

from irc_helpers import configure_server, irc_config, room_jid, unique


class Listener:
    """A TCP listener on 127.0.0.3:PORT that records every connection."""

    def __init__(self, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.3", port))
        self.sock.listen(8)
        self.accepted = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, addr = self.sock.accept()
            except OSError:
                return
            self.accepted.append(addr)
            conn.close()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        except OSError:
            pass
        self.sock.close()


@pytest.fixture
def trap(peers):
    t = Listener(peers.irc_port)
    yield t
    t.close()


def refusal(stanza):
    kind, condition, text = error_condition(stanza)
    # A join is forbidden, a message not allowed.
    assert (kind, condition) in {("auth", "forbidden"), ("cancel", "not-allowed")}, to_string(stanza)
    return text or ""


def test_loopback_outside_the_allowed_hosts_is_refused(alice, domain, trap):
    # The suite's configuration allows 127.0.0.1 and 127.0.0.2 only.
    for server in ("127.0.0.3", "127.3", "2130706435"):
        with pytest.raises(StanzaError) as e:
            alice.join_muc(room_jid("#" + unique("no"), domain, server=server), "alice")
        text = refusal(e.value.stanza)
        assert "127.0.0.3" in text and "loopback" in text, text
        assert "allowed_hosts" in text, text
    mid = alice.send_message(f"someone%2130706435@{domain}", "hello?", type="chat")
    err = alice.wait_for(message(id=mid, type="error"), timeout=10)
    assert "resolves to 127.0.0.3, a loopback address" in refusal(err)
    assert trap.accepted == []


def test_the_check_applies_to_the_address_connected_to(alice, domain, trap, peers):
    # A harmless server name whose configured address is refused.
    server = unique("elsewhere") + ".example"
    configure_server(alice, domain, server, {"address": "127.0.0.3", "ports": [str(peers.irc_port)],
                                              "tls_ports": []})
    with pytest.raises(StanzaError) as e:
        alice.join_muc(room_jid("#" + unique("no"), domain, server=server), "alice")
    assert "127.0.0.3 is a loopback address" in refusal(e.value.stanza)
    assert trap.accepted == []


def test_default_policy_and_denied_hosts(ferry_factory, peers, xmpp, trap):
    # Without allowed_hosts, loopback is refused (even the real server);
    # denied_hosts refuses by name before any lookup.
    f = ferry_factory(bridges={"irc": irc_config(peers, domain="irc2.localhost", allowed_hosts=None,
                                                  denied_hosts=["*.blocked.example"])})
    domain = f.config.domain("irc")
    carol = xmpp("carol")
    with pytest.raises(StanzaError) as e:
        carol.join_muc(room_jid("#" + unique("no"), domain), "carol")
    assert "127.0.0.1 is a loopback address" in refusal(e.value.stanza)
    with pytest.raises(StanzaError) as e:
        carol.join_muc(room_jid("#" + unique("no"), domain, server="irc.blocked.example"), "carol")
    assert "does not connect to irc.blocked.example" in refusal(e.value.stanza)
    assert [line for line in f.log().splitlines()
            if " INFO " in line and "IRC connection refused" in line and "user=carol@localhost" in line]
    assert trap.accepted == []


def test_ferry_check_validates_the_host_patterns(ferry_factory, peers):
    f = ferry_factory(start=False, bridges={"irc": irc_config(
        peers, allowed_hosts=["10.0.0.0/99", "ok.example"], denied_hosts="*.evil.example")})
    r = f.check()
    assert r.returncode != 0, r.stdout + r.stderr
    out = r.stdout + r.stderr
    assert "[irc] allowed_hosts" in out and "10.0.0.0/99" in out, out
    f.config.bridge("irc", **irc_config(peers, allowed_hosts=["10.0.0.0/8", "*.example.org"],
                                        denied_hosts=["*"]))
    r = f.check()
    assert r.returncode == 0, r.stdout + r.stderr


def test_registration_with_a_refused_server_is_refused(alice, domain, trap):
    # The SASL password is checked by logging in: not on a refused server.
    with pytest.raises(StanzaError) as e:
        alice.register(domain, {"server": "2130706435", "sasl_password": "secret"})
    text = e.value.text or ""
    assert "resolves to 127.0.0.3, a loopback address" in text, to_string(e.value.stanza)
    assert trap.accepted == []
