"""Helpers of the email suite: mailboxes on the peers' Dovecot made on the
fly, the correspondents' side driven with Python's own mail clients
(smtplib to send like any mail server, imaplib to read a mailbox), the
gateway's JIDs of addresses (XEP-0106), registration through XMPP."""
import email
import email.policy
import email.utils
import imaplib
import itertools
import os
import smtplib
import time
from email.message import EmailMessage

from harness.stanza import message, presence, text, where

_n = itertools.count()


def unique(prefix):
    return f"{prefix}{os.getpid() % 10000}x{int(time.time() * 1000) % 1000000}x{next(_n)}"


# -- JIDs of addresses (XEP-0106) -----------------------------------------------

_XEP0106 = {" ": "\\20", '"': "\\22", "&": "\\26", "'": "\\27", "/": "\\2f", ":": "\\3a",
            "<": "\\3c", ">": "\\3e", "@": "\\40", "\\": "\\5c"}


def jid(address, domain):
    """`bob@localhost` -> `bob\\40localhost@email.localhost`."""
    return "".join(_XEP0106.get(c, c) for c in address.lower()) + "@" + domain


# -- the mail side ----------------------------------------------------------------

class Mailbox:
    """A mailbox on the test Dovecot, and its owner's mail client."""

    def __init__(self, peers, user, password):
        self.peers = peers
        self.user = user
        self.password = password
        self.address = f"{user}@localhost"

    @classmethod
    def create(cls, peers, prefix="mb"):
        """A new empty mailbox (a line in Dovecot's passwd-file), usable
        when this returns."""
        user = unique(prefix)
        mb = cls(peers, user, f"{user}-pw")
        path = peers.env["MAIL_USERS_FILE"]
        with open(path, "a") as f:
            f.write(f"{user}:{{PLAIN}}{mb.password}\n")
        deadline = time.monotonic() + 20
        while True:
            try:
                mb.imap().logout()
                return mb
            except imaplib.IMAP4.error:
                # Dovecot notices the change by the file's mtime (seconds).
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
                os.utime(path)

    # sending, as a correspondent's mail server would
    def send(self, to, subject="hello", body="hi", headers=None, html=None, attachments=(),
             msg_id=None, charset="utf-8", cc=()):
        """Sends a mail from this mailbox by SMTP; returns its Message-ID
        (without brackets)."""
        m = EmailMessage()
        m["From"] = self.address
        m["To"] = ", ".join([to] if isinstance(to, str) else to)
        if cc:
            m["Cc"] = ", ".join(cc)
        m["Subject"] = subject
        m["Date"] = email.utils.formatdate(localtime=True)
        mid = msg_id or f"{unique('m')}@{self.user}.localhost"
        m["Message-ID"] = f"<{mid}>"
        for k, v in (headers or {}).items():
            m[k] = v
        if body is not None:
            m.set_content(body, charset=charset)
        if html is not None:
            if body is None:
                m.set_content(html, subtype="html")
            else:
                m.add_alternative(html, subtype="html")
        for name, mime, data in attachments:
            maintype, subtype = mime.split("/", 1)
            m.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
        self.send_raw([to] if isinstance(to, str) else list(to) + list(cc), m.as_bytes())
        return mid

    def send_raw(self, to, raw: bytes):
        with smtplib.SMTP(self.peers.env.get("SMTP_HOST", "127.0.0.1"),
                          int(self.peers.env["SMTP_PORT"])) as s:
            s.sendmail(self.address, [to] if isinstance(to, str) else to, raw)

    # reading
    def imap(self):
        c = imaplib.IMAP4(self.peers.env.get("IMAP_HOST", "127.0.0.1"), int(self.peers.env["IMAP_PORT"]))
        c.login(self.user, self.password)
        return c

    def folder(self, name="INBOX"):
        """Every mail of a folder, parsed, in UID order."""
        c = self.imap()
        try:
            typ, _ = c.select(f'"{name}"')
            assert typ == "OK", f"cannot select {name}"
            _, data = c.uid("SEARCH", None, "ALL")
            uids = data[0].split()
            out = []
            for u in uids:
                _, d = c.uid("FETCH", u, "(BODY.PEEK[])")
                # Python's email package wants \n line ends, IMAP gives \r\n.
                raw = d[0][1].replace(b"\r\n", b"\n")
                out.append(email.message_from_bytes(raw, policy=email.policy.default))
            return out
        finally:
            c.logout()

    def count(self, name="INBOX"):
        """How many mails a folder holds."""
        c = self.imap()
        try:
            typ, data = c.select(f'"{name}"', readonly=True)
            return int(data[0])
        finally:
            c.logout()

    def wait_folder(self, n, name="INBOX", timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            got = self.folder(name)
            if len(got) >= n:
                return got
            assert time.monotonic() < deadline, f"{self.address}: {len(got)} mails in {name}, expected {n}"
            time.sleep(0.2)

    def flags(self, msg_id):
        """The IMAP flags of the mail with this Message-ID in INBOX."""
        c = self.imap()
        try:
            c.select("INBOX")
            _, data = c.uid("SEARCH", None, "HEADER", "Message-ID", f"<{msg_id}>")
            uid = data[0].split()[-1]
            _, d = c.uid("FETCH", uid, "(FLAGS)")
            return d[0].decode()
        finally:
            c.logout()


# -- the XMPP side ------------------------------------------------------------------

def email_config(peers, **keys):
    cfg = {
        "ca_file": peers.env["MAIL_TLS_CA"],
        "autoconfig_urls": [peers.env["AUTOCONFIG_URL"]],
        "nameservers": [f"127.0.0.1:{peers.env['MAIL_DNS_PORT']}"],
        "guess_hosts": False,
        "poll_interval": 1,
        "connect_timeout": 5,
        "reconnect_max_delay": 2,
        # The test servers (and the self-signed one) are on loopback, which
        # the default host policy refuses; 127.0.0.9 and the rest stay refused.
        "allowed_hosts": ["127.0.0.1", "127.0.0.2", "127.0.0.3"],
    }
    cfg.update(keys)
    return cfg


def by_hand(peers, mb, imap_host=None, **over):
    """Registration values with the servers given: IMAP in plain text on
    127.0.0.1 (IDLE) or 127.0.0.2 (no IDLE), submission with STARTTLS."""
    v = {"email": mb.address, "password": mb.password,
         "imap_host": imap_host or peers.env["IMAP_HOST"], "imap_port": peers.env["IMAP_PORT"],
         "imap_security": "plain",
         "smtp_host": "localhost", "smtp_port": peers.env["SUBMISSION_PORT"],
         "smtp_security": "starttls", "username": mb.user}
    v.update(over)
    return v


def wait_logged_in(client, domain, since=0, timeout=30):
    return client.wait_for(
        presence(frm=domain) & where(lambda e: (text(e, "status") or "").startswith("Logged in"),
                                     "status Logged in…"),
        timeout=timeout, since=since, take=False)


def register(client, domain, peers, mb=None, **over):
    """Registers `client` with a (new) mailbox; returns the mailbox once the
    gateway says it is logged in."""
    mb = mb or Mailbox.create(peers, "x")
    m = client.position()
    client.register(domain, by_hand(peers, mb, **over))
    wait_logged_in(client, domain, since=m)
    return mb


def upload(client, peers, data: bytes, filename, content_type):
    """Shares a file the way an XMPP client does (XEP-0363): asks the
    upload service for a slot, PUTs the file; returns the GET URL."""
    import urllib.request
    from harness.stanza import find
    r = client.iq(f"<request xmlns='urn:xmpp:http:upload:0' filename='{filename}' size='{len(data)}' "
                  f"content-type='{content_type}'/>", to=peers.env["XMPP_UPLOAD_JID"])
    slot = find(r, "{urn:xmpp:http:upload:0}slot")
    put = find(slot, "{urn:xmpp:http:upload:0}put")
    get = find(slot, "{urn:xmpp:http:upload:0}get")
    req = urllib.request.Request(put.get("url"), data=data, method="PUT")
    req.add_header("Content-Type", content_type)
    for h in put.findall("{urn:xmpp:http:upload:0}header"):
        req.add_header(h.get("name"), h.text or "")
    urllib.request.urlopen(req, timeout=20).read()
    return get.get("url")


def wait_until(fn, timeout=20, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout} s (last: {last!r})")


def chat_from(address, domain, **kw):
    return message(frm=jid(address, domain), type="chat", **kw)
