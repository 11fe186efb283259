"""A raw IRC client for tests: a socket, a reader thread that records
every line (and answers PING), and waits on regular expressions.

    c = IrcClient(port=16667, nick="bob").connect()     # waits for 001
    c.join("#test")                                     # waits for 366
    c.send("PRIVMSG #test :hello")
    m = c.wait_for(r":alice!\\S+ PRIVMSG #test :(.*)")   # a re.Match
    assert m.group(1) == "hi"
    c.quit()

Lines are str (decoded as UTF-8 with replacement), without CRLF. Use
`send_raw(bytes)` to send arbitrary bytes (no CRLF added).
"""
import re
import socket
import threading
import time


class IrcTimeout(AssertionError):
    pass


class IrcClient:
    def __init__(self, host="127.0.0.1", port=6667, nick="tester", user=None, realname=None,
                 password=None):
        self.host = host
        self.port = int(port)
        self.nick = nick
        self.user = user or nick
        self.realname = realname or nick
        self.password = password
        self.lines = []
        self._taken = set()
        self._mark = 0
        self._cond = threading.Condition()
        self.sock = None
        self.closed = threading.Event()
        self._reader = None

    def connect(self, timeout=15, register=True):
        """Connects and registers (NICK/USER), waiting for 001."""
        self.sock = socket.create_connection((self.host, self.port), timeout=timeout)
        self.sock.settimeout(None)
        self._reader = threading.Thread(target=self._read, name=f"irc-{self.nick}", daemon=True)
        self._reader.start()
        if register:
            if self.password:
                self.send(f"PASS {self.password}")
            self.send(f"NICK {self.nick}")
            self.send(f"USER {self.user} 0 * :{self.realname}")
            self.wait_for(r"^:\S+ 001 ", timeout=timeout, since=0)
        return self

    def _read(self):
        buf = b""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
                    if line.startswith("PING"):
                        self.send("PONG" + line[4:])
                    with self._cond:
                        self.lines.append(line)
                        self._cond.notify_all()
        except OSError:
            pass
        finally:
            self.closed.set()
            with self._cond:
                self._cond.notify_all()

    def send(self, line: str):
        """Sends one line (CRLF added; a CR or LF inside is refused)."""
        if "\r" in line or "\n" in line:
            raise ValueError("IRC lines cannot contain CR or LF; use send_raw")
        self.sock.sendall(line.encode("utf-8") + b"\r\n")

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def mark(self) -> int:
        with self._cond:
            self._mark = len(self.lines)
            return self._mark

    def wait_for(self, pattern, timeout=10, since=None, take=True):
        """Waits for the first line (at/after `since`, default the last mark)
        matching the regex `pattern` (re.search); returns the re.Match."""
        rx = re.compile(pattern)
        start = self._mark if since is None else since
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(start, len(self.lines)):
                    if i in self._taken:
                        continue
                    m = rx.search(self.lines[i])
                    if m:
                        if take:
                            self._taken.add(i)
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self.closed.is_set():
                    seen = "\n".join(f"  {line}" for line in self.lines[start:][-60:])
                    state = " (connection closed)" if self.closed.is_set() else ""
                    raise IrcTimeout(f"{self.nick}@{self.port}: no line matching {pattern!r} within "
                                     f"{timeout} s{state}; got:\n{seen or '  (nothing)'}")
                self._cond.wait(min(left, 0.5))

    def expect_no(self, pattern, within=1.0, since=None):
        rx = re.compile(pattern)
        start = self._mark if since is None else since
        time.sleep(within)
        with self._cond:
            for i in range(start, len(self.lines)):
                if i not in self._taken and rx.search(self.lines[i]):
                    raise AssertionError(f"{self.nick}: unexpected line {self.lines[i]!r}")

    def join(self, channel, key=None, timeout=10):
        """JOINs and waits for the end of NAMES (366)."""
        m = len(self.lines)
        self.send(f"JOIN {channel}" + (f" {key}" if key else ""))
        self.wait_for(rf"^:\S+ 366 \S+ {re.escape(channel)} ", timeout=timeout, since=m)

    def privmsg(self, target, text):
        self.send(f"PRIVMSG {target} :{text}")

    def quit(self, message="bye"):
        try:
            self.send(f"QUIT :{message}")
            self.closed.wait(3)
        except OSError:
            pass
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
