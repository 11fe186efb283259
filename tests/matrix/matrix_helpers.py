"""Helpers of the Matrix suite: a small Matrix client over the
client-server HTTP API (the "other side" of the gateway, a real Synapse
user), the gateway's JID scheme for Matrix ids, and registration through
XMPP."""
import itertools
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request

from harness.stanza import message, presence, text, where

_n = itertools.count()


def unique(prefix):
    return f"{prefix}{os.getpid() % 10000}x{int(time.time() * 1000) % 1000000}x{next(_n)}"


# -- JIDs of Matrix ids (docs/matrix.md) --------------------------------------

_XEP0106 = {" ": "\\20", '"': "\\22", "&": "\\26", "'": "\\27", "/": "\\2f", ":": "\\3a",
            "<": "\\3c", ">": "\\3e", "@": "\\40", "\\": "\\5c"}


def encode_case(s):
    out = []
    for c in s:
        if c == "^":
            out.append("^^")
        elif "A" <= c <= "Z":
            out.append("^" + c.lower())
        elif " " <= c <= "~":
            out.append(c)
        else:
            out.append(f"^_{ord(c):x}_")
    return "".join(out)


def escape_node(s):
    return "".join(_XEP0106.get(c, c) for c in s)


def contact_jid(user_id, domain):
    """`@bob:localhost` -> `bob\\3alocalhost@matrix.localhost`."""
    return f"{escape_node(encode_case(user_id[1:]))}@{domain}"


def room_jid(room, domain):
    """`!Id:localhost` -> `!^id\\3alocalhost@matrix.localhost`."""
    return f"{escape_node(encode_case(room))}@{domain}"


# -- the Matrix side -----------------------------------------------------------

class MatrixError(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class MatrixUser:
    """A Matrix user driven over the client-server API."""

    def __init__(self, url, user_id, password, token):
        self.url = url.rstrip("/")
        self.user_id = user_id
        self.password = password
        self.token = token
        self.since = None
        self.events = []  # (room_id, event) from /sync timelines and ephemeral
        self.invites = set()

    @classmethod
    def register(cls, url, prefix="peer"):
        name = unique(prefix)
        password = name + "-pw"
        body = {"username": name, "password": password, "auth": {"type": "m.login.dummy"},
                "initial_device_display_name": "python peer"}
        r = cls._call(url, "POST", "/_matrix/client/v3/register", body, None)
        u = cls(url, r["user_id"], password, r["access_token"])
        u.sync(timeout=0)
        return u

    @classmethod
    def login(cls, url, user_id, password, device="element"):
        """Another device of an existing user."""
        body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
                "password": password, "initial_device_display_name": device}
        r = cls._call(url, "POST", "/_matrix/client/v3/login", body, None)
        u = cls(url, r["user_id"], password, r["access_token"])
        u.sync(timeout=0)
        return u

    @staticmethod
    def _call(url, method, path, body, token, query=None, raw=None, content_type=None):
        full = url.rstrip("/") + path
        if query:
            full += "?" + urllib.parse.urlencode(query)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(full, data=data, method=method)
        req.add_header("content-type", content_type or "application/json")
        if token:
            req.add_header("authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                payload = resp.read()
                if raw is None and resp.headers.get_content_type() == "application/json":
                    return json.loads(payload or b"{}")
                return payload
        except urllib.error.HTTPError as e:
            raise MatrixError(e.code, e.read().decode(errors="replace")) from None

    def call(self, method, path, body=None, **kw):
        return self._call(self.url, method, path, body, self.token, **kw)

    def txn(self):
        return unique("t")

    # rooms
    def create_room(self, **body):
        return self.call("POST", "/_matrix/client/v3/createRoom", body)["room_id"]

    def create_dm(self, user_id):
        """An unencrypted direct chat (is_direct invite + m.direct)."""
        room = self.create_room(preset="trusted_private_chat", is_direct=True, invite=[user_id])
        self.call("PUT", f"/_matrix/client/v3/user/{q(self.user_id)}/account_data/m.direct",
                  {user_id: [room]})
        return room

    def join(self, room):
        return self.call("POST", f"/_matrix/client/v3/join/{q(room)}", {})["room_id"]

    def invite(self, room, user):
        self.call("POST", f"/_matrix/client/v3/rooms/{q(room)}/invite", {"user_id": user})

    def state(self, room, type_, content, key=""):
        return self.call("PUT", f"/_matrix/client/v3/rooms/{q(room)}/state/{type_}/{q(key)}",
                         content)["event_id"]

    def get_state(self, room, type_, key=""):
        return self.call("GET", f"/_matrix/client/v3/rooms/{q(room)}/state/{type_}/{q(key)}")

    def send(self, room, body, msgtype="m.text", **extra):
        content = {"msgtype": msgtype, "body": body}
        content.update(extra)
        return self.send_event(room, "m.room.message", content)

    def send_event(self, room, type_, content):
        return self.call("PUT", f"/_matrix/client/v3/rooms/{q(room)}/send/{type_}/{self.txn()}",
                         content)["event_id"]

    def redact(self, room, event_id, reason=None):
        body = {"reason": reason} if reason else {}
        return self.call("PUT", f"/_matrix/client/v3/rooms/{q(room)}/redact/{q(event_id)}/{self.txn()}",
                         body)["event_id"]

    def typing(self, room, on=True):
        self.call("PUT", f"/_matrix/client/v3/rooms/{q(room)}/typing/{q(self.user_id)}",
                  {"typing": on, "timeout": 30000})

    def receipt(self, room, event_id):
        self.call("POST", f"/_matrix/client/v3/rooms/{q(room)}/receipt/m.read/{q(event_id)}", {})

    def upload(self, data, content_type, filename):
        r = self._call(self.url, "POST", "/_matrix/media/v3/upload", None, self.token,
                       query={"filename": filename}, raw=data, content_type=content_type)
        return json.loads(r)["content_uri"]

    def download(self, mxc):
        server, media = mxc[len("mxc://"):].split("/", 1)
        req = urllib.request.Request(f"{self.url}/_matrix/client/v1/media/download/{server}/{media}")
        req.add_header("authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.read()

    # sync
    def sync(self, timeout=5000):
        query = {"timeout": str(timeout)}
        if self.since:
            query["since"] = self.since
        r = self.call("GET", "/_matrix/client/v3/sync", query=query)
        self.since = r["next_batch"]
        rooms = r.get("rooms", {})
        for room, upd in rooms.get("join", {}).items():
            for ev in upd.get("timeline", {}).get("events", []):
                self.events.append((room, ev))
            for ev in upd.get("ephemeral", {}).get("events", []):
                self.events.append((room, ev))
        for room in rooms.get("invite", {}):
            self.invites.add(room)
        return r

    def wait(self, room, pred, what="event", timeout=30):
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for r, ev in self.events[seen:]:
                if r == room and pred(ev):
                    self.events.remove((r, ev))
                    return ev
            seen = 0
            left = deadline - time.monotonic()
            if left <= 0:
                mine = [e for r, e in self.events if r == room]
                raise AssertionError(f"{self.user_id} never saw {what} in {room}; saw {mine}")
            self.sync(timeout=int(min(left, 5) * 1000))

    def wait_invite(self, timeout=30):
        deadline = time.monotonic() + timeout
        while not self.invites:
            assert time.monotonic() < deadline, f"{self.user_id} got no invitation"
            self.sync(timeout=2000)
        return self.invites.pop()

    def wait_text(self, room, body, timeout=30):
        return self.wait(room, lambda e: e.get("type") == "m.room.message"
                         and e.get("content", {}).get("body") == body, f"message {body!r}", timeout)


def q(s):
    return urllib.parse.quote(s, safe="")


# -- XMPP side -----------------------------------------------------------------

def matrix_config(**keys):
    # Synapse (and the tests' file servers) are on loopback, which the
    # gateway refuses unless its operator allows it.
    cfg = {"allow_insecure_http": True, "sync_timeout_secs": 5, "allowed_hosts": ["127.0.0.1"]}
    cfg.update(keys)
    return cfg


def register(client, domain, peers, prefix="xmpp"):
    """Registers `client` with the Matrix gateway as a fresh Matrix user;
    returns that MatrixUser (its token is the test's, not ferry's) once the
    gateway says it is logged in."""
    user = MatrixUser.register(peers.matrix_url, prefix)
    m = client.position()
    client.register(domain, {"homeserver": peers.matrix_url, "username": user.user_id,
                             "password": user.password})
    wait_logged_in(client, domain, since=m)
    return user


def wait_logged_in(client, domain, since=0, timeout=30):
    return client.wait_for(
        presence(frm=domain) & where(lambda e: (text(e, "status") or "").startswith("Logged in"),
                                     "status Logged in…"),
        timeout=timeout, since=since, take=False)


def wait_until(fn, timeout=30, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout} s (last: {last!r})")
