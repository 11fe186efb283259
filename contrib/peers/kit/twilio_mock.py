"""A MOCK of Twilio's Messaging API, for Ferry's tests (Twilio cannot run
here). Standard library only. It answers what Ferry calls and calls Ferry
back the way Twilio does, signing every webhook with X-Twilio-Signature
(base64 HMAC-SHA1 of the URL and the sorted form parameters, keyed with the
account's auth token).

REST (HTTP Basic with SID:TOKEN):
  GET  /2010-04-01/Accounts/{SID}.json
  GET  /2010-04-01/Accounts/{SID}/IncomingPhoneNumbers.json?PhoneNumber=
  POST /2010-04-01/Accounts/{SID}/Messages.json   To, From, Body, MediaUrl*, StatusCallback
       -> 201; then StatusCallback gets "sent" and "delivered" ("undelivered",
       ErrorCode 30003, for numbers ending in 666; nothing more for 999)
Control (JSON):
  POST /mock/incoming {"account","from","to","body","media":[{"url","type"}],"url"}
       -> {"status": what the webhook answered, "body": …}
  POST /mock/status {"sid","status"[,"error_code"]} -> a status callback now
  GET  /mock/messages  every message sent through the API
  GET  /mock/media/NAME  a small PNG (media for MMS)
  POST /mock/fail {"count": N, "status": 503}  answer the next N sends with that status
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def sign(token, url, params):
    data = url + "".join(k + v for k, v in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def post_form(url, params, token, signature=None):
    body = urllib.parse.urlencode(params).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": signature if signature is not None else sign(token, url, params),
        "User-Agent": "TwilioProxy/1.1 (ferry test mock)",
    })
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError as e:
        return 0, repr(e)


class State:
    def __init__(self, accounts, directory):
        self.accounts = {}
        for spec in accounts.split():
            sid, token, *numbers = spec.split(":")
            self.accounts[sid] = {"token": token, "numbers": numbers}
        self.messages = []
        self.lock = threading.Lock()
        self.counter = 0
        self.fail = (0, 503)
        self.log = open(os.path.join(directory, "messages.jsonl"), "a", buffering=1)

    def new_sid(self, prefix):
        with self.lock:
            self.counter += 1
            return f"{prefix}{int(time.time() * 1000):x}{self.counter:08x}"


class Handler(BaseHTTPRequestHandler):
    state: State = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        print("%s %s" % (self.command, fmt % args), flush=True)

    def reply(self, status, obj, ctype="application/json"):
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def account(self, sid):
        acct = self.state.accounts.get(sid)
        auth = self.headers.get("Authorization", "")
        if not acct or not auth.startswith("Basic "):
            return None
        try:
            user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return None
        return acct if (user == sid and hmac.compare_digest(pw, acct["token"])) else None

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        if u.path == "/mock/messages":
            with self.state.lock:
                return self.reply(200, self.state.messages)
        if u.path.startswith("/mock/media/"):
            return self.reply(200, PNG, "image/png")
        m = re.fullmatch(r"/2010-04-01/Accounts/([^/]+)\.json", u.path)
        if m:
            acct = self.account(m[1])
            if not acct:
                return self.reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
            return self.reply(200, {"sid": m[1], "status": "active", "friendly_name": "mock"})
        m = re.fullmatch(r"/2010-04-01/Accounts/([^/]+)/IncomingPhoneNumbers\.json", u.path)
        if m:
            acct = self.account(m[1])
            if not acct:
                return self.reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
            want = urllib.parse.parse_qs(u.query).get("PhoneNumber", [None])[0]
            nums = [n for n in acct["numbers"] if want in (None, n)]
            return self.reply(200, {"incoming_phone_numbers": [{"phone_number": n} for n in nums]})
        self.reply(404, {"code": 20404, "message": "not found", "status": 404})

    def do_POST(self):
        u = urllib.parse.urlsplit(self.path)
        raw = self.body()
        m = re.fullmatch(r"/2010-04-01/Accounts/([^/]+)/Messages\.json", u.path)
        if m:
            return self.send_message(m[1], urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True))
        req = json.loads(raw or b"{}")
        if u.path == "/mock/incoming":
            return self.incoming(req)
        if u.path == "/mock/status":
            msg = self.find(req["sid"])
            if not msg:
                return self.reply(404, {"error": "no such message"})
            st, body = self.callback(msg, req["status"], req.get("error_code"))
            return self.reply(200, {"status": st, "body": body})
        if u.path == "/mock/fail":
            self.state.fail = (int(req.get("count", 1)), int(req.get("status", 503)))
            return self.reply(200, {"ok": True})
        self.reply(404, {"error": "no such endpoint"})

    def find(self, sid):
        with self.state.lock:
            return next((m for m in self.state.messages if m["sid"] == sid), None)

    def send_message(self, sid, form):
        acct = self.account(sid)
        if not acct:
            return self.reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
        with self.state.lock:
            count, status = self.state.fail
            if count > 0:
                self.state.fail = (count - 1, status)
                return self.reply(status, {"code": 20429 if status == 429 else 20500,
                                           "message": "mock: failing on request", "status": status})
        f = {}
        for k, v in form:
            f.setdefault(k, []).append(v)
        to, frm = f.get("To", [""])[0], f.get("From", [""])[0]
        if not re.fullmatch(r"\+[1-9]\d{6,14}", to):
            return self.reply(400, {"code": 21211, "message": f"The 'To' number {to} is not a valid phone number.", "status": 400})
        if frm not in acct["numbers"]:
            return self.reply(400, {"code": 21606, "message": f"The From phone number {frm} is not a valid, SMS-capable inbound phone number for your account.", "status": 400})
        media = f.get("MediaUrl", [])
        msg = {"sid": self.state.new_sid("MM" if media else "SM"), "account_sid": sid, "to": to, "from": frm,
               "body": f.get("Body", [""])[0], "media": media, "status": "queued",
               "status_callback": f.get("StatusCallback", [None])[0], "t": time.time()}
        with self.state.lock:
            self.state.messages.append(msg)
        self.state.log.write(json.dumps(msg) + "\n")
        self.reply(201, {"sid": msg["sid"], "status": "queued", "to": to, "from": frm, "body": msg["body"],
                         "num_segments": "1", "num_media": str(len(media))})
        if msg["status_callback"]:
            threading.Thread(target=self.progress, args=(msg,), daemon=True).start()

    def progress(self, msg):
        time.sleep(0.05)
        self.callback(msg, "sent")
        if msg["to"].endswith("999"):
            return
        time.sleep(0.05)
        if msg["to"].endswith("666"):
            self.callback(msg, "undelivered", "30003")
        else:
            self.callback(msg, "delivered")

    def callback(self, msg, status, error_code=None):
        msg["status"] = status
        if not msg.get("status_callback"):
            return 0, "no StatusCallback"
        token = self.state.accounts[msg["account_sid"]]["token"]
        params = [("MessageSid", msg["sid"]), ("MessageStatus", status), ("AccountSid", msg["account_sid"]),
                  ("From", msg["from"]), ("To", msg["to"]), ("ApiVersion", "2010-04-01")]
        if error_code:
            params.append(("ErrorCode", str(error_code)))
        return post_form(msg["status_callback"], params, token)

    def incoming(self, req):
        acct = self.state.accounts[req["account"]]
        media = req.get("media", [])
        params = [("MessageSid", self.state.new_sid("MM" if media else "SM")), ("AccountSid", req["account"]),
                  ("From", req["from"]), ("To", req["to"]), ("Body", req.get("body", "")),
                  ("NumMedia", str(len(media))), ("NumSegments", "1"), ("ApiVersion", "2010-04-01")]
        for i, m in enumerate(media):
            params += [(f"MediaUrl{i}", m["url"]), (f"MediaContentType{i}", m.get("type", "image/png"))]
        t0 = time.time()
        status, body = post_form(req["url"], params, acct["token"], req.get("signature"))
        self.reply(200, {"status": status, "body": body, "t": t0, "answered": time.time()})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--accounts", required=True)
    a = p.parse_args()
    Handler.state = State(a.accounts, a.dir)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", a.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
