"""Helpers of the IRC suite (names, JIDs, configuring the user's servers)."""
import itertools
import os
import time

_n = itertools.count()


def unique(prefix):
    """A name unique to this run (nicks stay under 30 characters)."""
    return f"{prefix}{os.getpid() % 10000}{int(time.time() * 1000) % 100000}{next(_n)}"


def irc_config(peers, **keys):
    cfg = {"ports": [peers.irc_port], "tls_ports": [], "idle_timeout": 30}
    cfg.update(keys)
    return cfg


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
