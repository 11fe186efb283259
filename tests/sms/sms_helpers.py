"""Helpers of the SMS suite: the [sms] sections for each backend, texts
from phones through Kannel's fake SMSC and the SMPP SMSC, what the phone
side received, and registration with a number."""
import json
import random
import socket
import time
import urllib.parse
import urllib.request

from harness.stanza import message

DOMAIN = "sms.localhost"


def phone(tail=None):
    """A fresh North American test number (+1555…), unique per call."""
    tail = tail or ""
    body = f"{random.randrange(10**7):07d}"
    n = "+1555" + body
    return n[: len(n) - len(tail)] + tail if tail else n


def kannel_section(peers, **keys):
    e = peers.env
    s = {"backend": "kannel", "webhook_secret": e["SMS_WEBHOOK_SECRET"], "default_region": "US",
         "rate_limit_per_minute": 0,
         "kannel": {"sendsms_url": e["KANNEL_SENDSMS_URL"], "username": e["KANNEL_USER"],
                    "password": e["KANNEL_PASSWORD"]}}
    s.update(keys)
    return s


def kannel_http(peers):
    """The [http] section Kannel's get-url expects (its port is fixed in kannel.conf)."""
    port = int(peers.env["SMS_WEBHOOK_PORT"])
    return {"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}"}


def smpp_section(peers, **keys):
    e = peers.env
    s = {"backend": "smpp", "default_region": "US", "rate_limit_per_minute": 0, "retry_secs": 1,
         "smpp": {"host": "127.0.0.1", "port": int(e["SMPP_PORT"]), "system_id": e["SMPP_SYSTEM_ID"],
                  "password": e["SMPP_PASSWORD"], "enquire_link_secs": 5, "reconnect_secs": 1}}
    s.update(keys)
    return s


def twilio_accounts(peers):
    """[(sid, token, [numbers])] of the Twilio mock."""
    out = []
    for a in peers.env["TWILIO_MOCK_ACCOUNTS"].split():
        sid, token, *numbers = a.split(":")
        out.append((sid, token, numbers))
    return out


def twilio_section(peers, **keys):
    sid, token, _ = twilio_accounts(peers)[0]
    s = {"backend": "twilio", "default_region": "US", "rate_limit_per_minute": 0,
         "twilio": {"api_url": peers.env["TWILIO_MOCK_URL"], "account_sid": sid, "auth_token": token}}
    s.update(keys)
    return s


def http_json(url, body=None, method=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"null")


def smsc(peers, path, body=None):
    return http_json(f"http://127.0.0.1:{peers.env['SMPP_CONTROL_PORT']}{path}", body)


def twilio_mock(peers, path, body=None):
    return http_json(f"{peers.env['TWILIO_MOCK_URL']}{path}", body)


def kannel_mo(peers, frm, to, text=None, ucs2=None):
    """A text from a phone through Kannel's fake-mo SMSC: plain `text` (no
    spaces) or `ucs2` (any text, sent as UTF-16BE)."""
    if ucs2 is not None:
        line = f"{frm} {to} ucs2 {urllib.parse.quote_from_bytes(ucs2.encode('utf-16-be'), safe='')}"
    else:
        line = f"{frm} {to} text {text}"
    with socket.create_connection(("127.0.0.1", int(peers.env["KANNEL_SMSC2_PORT"])), timeout=5) as s:
        s.sendall((line + "\n").encode())
        time.sleep(0.1)


def fakesmsc_lines(peers, to):
    """The texts fakesmsc (the phone side of Kannel) got for `to`."""
    digits = to.lstrip("+")
    try:
        with open(peers.env["KANNEL_FAKESMSC_LOG"], encoding="utf-8", errors="replace") as f:
            return [l for l in f if "Got message" in l and digits in l]
    except FileNotFoundError:
        return []


def smsc_submitted(peers, to):
    """The submit_sm the SMPP SMSC recorded for `to`."""
    digits = to.lstrip("+")
    out = []
    try:
        with open(peers.env["SMSC_LOG"], encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                if str(r.get("dest", r.get("destination_addr", ""))).lstrip("+") == digits:
                    out.append(r)
    except FileNotFoundError:
        pass
    return out


def register(client, region="US", timeout=15, **more):
    """Registers `client` with the SMS gateway; returns the welcome text."""
    m = client.mark()
    client.register(DOMAIN, {"region": region, **more})
    w = client.wait_for(message(frm=DOMAIN, body_contains="registered"), since=m, timeout=timeout)
    return w.findtext("{jabber:client}body")


def assign(admin, jid, number):
    """admin/assign-number, as an administrator."""
    r = admin.command(DOMAIN, "admin/assign-number")
    return admin.command_complete(r, {"jid": jid, "number": number})


def wait_until(fn, timeout=10, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout} s (last: {last!r})")
