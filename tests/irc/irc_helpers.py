"""Helpers of the IRC suite (names, JIDs, configuring the user's servers)."""
import itertools
import os
import time

_n = itertools.count()


def unique(prefix):
    """A name unique to this run (nicks stay under 30 characters)."""
    return f"{prefix}{os.getpid() % 10000}{int(time.time() * 1000) % 100000}{next(_n)}"


# The test servers listen on loopback, which the gateway refuses unless
# its operator allows it: InspIRCd is 127.0.0.1, ngIRCd 127.0.0.2.
ALLOWED_HOSTS = ["127.0.0.1", "127.0.0.2"]


def irc_config(peers, **keys):
    """The [irc] section of the suite; a key set to None is left out."""
    cfg = {"ports": [peers.irc_port], "tls_ports": [], "idle_timeout": 30,
           "allowed_hosts": ALLOWED_HOSTS}
    cfg.update(keys)
    return cfg


def oper(irc, peers):
    """An IRC operator on InspIRCd (KILL, KLINE …)."""
    op = irc(unique("op"))
    name, password = peers.irc_oper
    op.send(f"OPER {name} {password}")
    op.wait_for(r"^:\S+ 381 ")
    return op


def room_jid(chan, domain, server="127.0.0.1"):
    return f"{chan}%{server}@{domain}"


def configure_server(client, domain, server, values):
    """Runs `configure` on irc.server@GW with `values`."""
    r = client.command(f"{server}@{domain}", "configure")
    r = client.command_complete(r, values)
    assert r.status == "completed", r.notes
    return r


def use_ngircd(client, domain, peers):
    """Points 127.0.0.2 at ngIRCd's port for this user."""
    configure_server(client, domain, "127.0.0.2",
                     {"ports": [str(peers.ngircd_port)], "tls_ports": []})
