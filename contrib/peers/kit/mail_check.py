#!/usr/bin/env python3
"""Smoke test of the `mail` peers with Python's own mail clients: SMTP ->
Postfix -> LMTP -> Dovecot -> IMAP IDLE push; IMAPS and submission with
STARTTLS verified against the test CA; the no-IDLE address; submission
AUTH; the autoconfig file over HTTP; the SRV record (a raw DNS query)."""
import email.message
import imaplib
import os
import smtplib
import socket
import ssl
import struct
import time
import urllib.request
import uuid

E = os.environ
IMAP, IMAPS, SMTP, SUB = (int(E[k]) for k in ("IMAP_PORT", "IMAPS_PORT", "SMTP_PORT", "SUBMISSION_PORT"))
CA = ssl.create_default_context(cafile=E["MAIL_TLS_CA"])


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")


# IDLE push of a mail sent by SMTP
m = imaplib.IMAP4("127.0.0.1", IMAP)
check("IDLE" in m.capabilities, f"IDLE on 127.0.0.1: {m.capabilities}")
m.login("bob", "bobpw")
m.select("INBOX")
tag = m._new_tag().decode()
m.send(f"{tag} IDLE\r\n".encode())
check(m.readline().startswith(b"+"), "IDLE continuation")
subj = "check " + uuid.uuid4().hex[:8]
msg = email.message.EmailMessage()
msg["From"], msg["To"], msg["Subject"] = "alice@localhost", "bob@localhost", subj
msg.set_content("hello bob")
t0 = time.time()
with smtplib.SMTP("127.0.0.1", SMTP) as s:
    s.send_message(msg)
m.sock.settimeout(20)
line = m.readline()
dt = time.time() - t0
m.send(b"DONE\r\n")
while not m.readline().startswith(tag.encode()):
    pass
check(b"EXISTS" in line, f"EXISTS pushed: {line!r}")
m.logout()

# no IDLE on 127.0.0.2 (after login: the capability the client uses)
n = imaplib.IMAP4("127.0.0.2", IMAP)
n.login("bob", "bobpw")
caps = n.capability()[1][0].decode()
check("IDLE" not in caps.split(), f"no IDLE on 127.0.0.2: {caps}")
n.logout()

# IMAPS and STARTTLS verify with the test CA; Sent has its SPECIAL-USE
s = imaplib.IMAP4_SSL("127.0.0.1", IMAPS, ssl_context=CA)
s.login("bob", "bobpw")
lst = b" ".join(s.list()[1])
check(b"\\Sent" in lst, f"Sent special-use: {lst!r}")
s.logout()
with smtplib.SMTP("127.0.0.1", SUB) as sub:
    sub.starttls(context=CA)
    sub.login("alice", "alicepw")

# autoconfig over HTTP
url = E["AUTOCONFIG_URL"].replace("{domain}", E["AUTOCONFIG_DOMAIN"])
xml = urllib.request.urlopen(url, timeout=10).read().decode()
check(f"<port>{IMAPS}</port>" in xml, "autoconfig names IMAPS")

# SRV record of _imaps._tcp.srv.test
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
for label in "_imaps._tcp.srv.test".split("."):
    q += bytes([len(label)]) + label.encode()
q += b"\x00" + struct.pack(">HH", 33, 1)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)
u.sendto(q, ("127.0.0.1", int(E["MAIL_DNS_PORT"])))
answer = u.recv(512)
ancount = struct.unpack(">H", answer[6:8])[0]
check(ancount >= 1 and struct.pack(">H", IMAPS) in answer, "SRV answer with the IMAPS port")

print(f"mail ok: IDLE push {dt:.2f}s after SMTP; no IDLE on 127.0.0.2; IMAPS + STARTTLS verify; "
      f"Sent special-use; submission AUTH; autoconfig; SRV")
