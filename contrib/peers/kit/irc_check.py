#!/usr/bin/env python3
"""Smoke test of an IRC server: two raw clients register, join a channel and
exchange a channel and a private PRIVMSG; then a burst of N private messages.
usage: irc_check.py PORT [BURST_N]"""
import os
import socket
import sys
import time

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("IRC_PORT", "16667"))
BURST = int(sys.argv[2]) if len(sys.argv) > 2 else 100
TAG = f"{os.getpid() % 10000}"


def conn(nick):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    s.sendall(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n".encode())
    return s


def read_until(s, needle, limit=10):
    buf = b""
    end = time.time() + limit
    while time.time() < end:
        data = s.recv(65536)
        if not data:
            break
        buf += data
        for line in data.split(b"\r\n"):
            if line.startswith(b"PING"):
                s.sendall(b"PONG" + line[4:] + b"\r\n")
        if needle.encode() in buf:
            return buf.decode(errors="replace")
    raise SystemExit(f"port {PORT}: did not see {needle!r}; got {buf[-500:]!r}")


t0 = time.time()
a, b = f"chka{TAG}", f"chkb{TAG}"
ca = conn(a); read_until(ca, " 001 ")
cb = conn(b); read_until(cb, " 001 ")
ca.sendall(f"JOIN #check{TAG}\r\n".encode()); read_until(ca, " 366 ")
cb.sendall(f"JOIN #check{TAG}\r\n".encode()); read_until(cb, " 366 ")
ca.sendall(f"PRIVMSG #check{TAG} :hello channel\r\n".encode()); read_until(cb, f"PRIVMSG #check{TAG} :hello channel")
cb.sendall(f"PRIVMSG {a} :hello {a}\r\n".encode()); read_until(ca, f"PRIVMSG {a} :hello {a}")
t1 = time.time()
ca.sendall(b"".join(f"PRIVMSG {b} :m{i}\r\n".encode() for i in range(BURST)))
read_until(cb, f":m{BURST - 1}\r\n", limit=30)
t2 = time.time()
ca.sendall(b"QUIT :bye\r\n"); cb.sendall(b"QUIT :bye\r\n")
print(f"IRC ok on port {PORT}: registration, JOIN, channel + private PRIVMSG in {t1 - t0:.2f}s; "
      f"{BURST} private messages in {t2 - t1:.2f}s")
