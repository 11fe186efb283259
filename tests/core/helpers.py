"""Helpers shared by the end-to-end tests of the core (tests/core): a
registered user in one call, and the test network's facts."""
from harness.stanza import NS, message, presence

# the test network's accounts: same names and passwords as the XMPP users
PASSWORDS = {"alice": "alicepw", "bob": "bobpw", "carol": "carolpw", "admin": "adminpw"}


def account_of(client) -> str:
    return client.bare.split("@")[0]


def register(client, domain, account=None, password=None, wait_welcome=True):
    """Registers `client` with the gateway at `domain` (XEP-0077) as the
    test-network account of the same name, and waits for the welcome."""
    name = account or account_of(client)
    m = client.position()
    client.register(domain, {"username": name, "password": password or PASSWORDS[name]})
    if wait_welcome:
        client.wait_for(message(frm=domain, body_contains="as " + name), since=m, timeout=10)
    return name


def wait_logged_in(client, domain, timeout=10, since=0):
    """Waits for the gateway's presence saying the session is logged in."""
    from harness.stanza import text, where
    return client.wait_for(
        presence(frm=domain) & where(lambda e: (text(e, "status") or "").startswith("Logged in"),
                                     "status Logged in…"),
        timeout=timeout, since=since, take=False)


def wait_until(fn, timeout=10, interval=0.2, what="condition"):
    """Polls `fn` until it returns something true; returns that."""
    import time
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout} s (last: {last!r})")


def forget_gateway(client, domain):
    """Removes the gateway and its contacts from the client's roster (the
    server keeps rosters across tests), so subscriptions start afresh."""
    for jid in list(client.roster()):
        if jid == domain or jid.endswith("@" + domain):
            client.iq(f"<query xmlns='jabber:iq:roster'><item jid='{jid}' subscription='remove'/></query>",
                      type="set")


def contact(name, domain):
    return f"{name}@{domain}"


__all__ = ["NS", "PASSWORDS", "register", "wait_logged_in", "wait_until", "forget_gateway", "contact", "account_of"]
