#!/usr/bin/env python3
"""Smoke test of an XMPP server started by start-peers.sh, with slixmpp.

Checks, against the server whose ports are in the environment (peers.env):
every component of XMPP_PRIVILEGED_COMPONENTS / XMPP_UNPRIVILEGED_COMPONENTS
authenticates with its secret; the privileged ones receive the XEP-0356
advertisement (roster, message, presence and, on privilege:2, iq namespaces),
the unprivileged ones none; every user of XMPP_USERS logs in; a message from a
user reaches a component; privileged roster get/set work (set: Prosody only) and
are refused to an unprivileged component; XEP-0363 upload (when XMPP_UPLOAD_JID
is set): a slot requested by a user and through a privileged IQ, PUT, then GET
returns the same bytes.
Prints one line per check; exits non-zero if any failed.
"""
import asyncio
import os
import sys
import urllib.request

import slixmpp
from slixmpp.componentxmpp import ComponentXMPP
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

HOST = os.environ.get("XMPP_HOST", "127.0.0.1")
C2S = int(os.environ["XMPP_C2S_PORT"])
COMP = int(os.environ["XMPP_COMPONENT_PORT"])
DOMAIN = os.environ.get("XMPP_DOMAIN", "localhost")
PRIV = os.environ.get("XMPP_PRIVILEGED_COMPONENTS", "").split()
UNPRIV = os.environ.get("XMPP_UNPRIVILEGED_COMPONENTS", "").split()
USERS = [u.split(":", 1) for u in os.environ.get("XMPP_USERS", "").split()]
UPLOAD = os.environ.get("XMPP_UPLOAD_JID", "")
SERVER = os.environ.get("XMPP_SERVER", "prosody")

failures = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
    if not ok:
        failures.append(name)


def secret_of(jid):
    return os.environ[jid.split(".")[0].upper() + "_COMPONENT_SECRET"]


class Comp(ComponentXMPP):
    def __init__(self, jid):
        super().__init__(jid, secret_of(jid), HOST, COMP)
        self.privilege = asyncio.get_event_loop().create_future()
        self.messages = asyncio.Queue()
        for v in ("1", "2"):
            self.register_handler(Callback(
                "priv" + v,
                MatchXPath("{jabber:component:accept}message/{urn:xmpp:privilege:%s}privilege" % v),
                self._priv))
        self.add_event_handler("message", lambda m: self.messages.put_nowait(m))

    def _priv(self, msg):
        if not self.privilege.done():
            self.privilege.set_result(msg.xml)


def client(user, pw):
    cl = slixmpp.ClientXMPP(f"{user}@{DOMAIN}/check", pw)
    cl.register_plugin("xep_0030")
    cl.enable_starttls = False
    cl.enable_direct_tls = False
    cl.enable_plaintext = True
    cl.plugin["feature_mechanisms"].unencrypted_plain = True
    return cl


def perms(xml):
    out = {}
    for p in xml.iter():
        if p.tag.endswith("}perm"):
            # (Prosody's mod_privilege nests each <namespace/> in the previous one: iter())
            nss = {n.get("ns"): n.get("type") for n in p.iter() if n.tag.endswith("}namespace")}
            out[p.get("access")] = nss or p.get("type")
    return out


async def main():
    comps = {}
    for jid in PRIV + UNPRIV:
        c = Comp(jid)
        c.connect()
        try:
            await asyncio.wait_for(c.wait_until("session_start"), 10)
            comps[jid] = c
            check(f"component {jid} authenticated", True)
        except asyncio.TimeoutError:
            check(f"component {jid} authenticated", False, "no session within 10 s")
    for jid in PRIV:
        if jid not in comps:
            continue
        try:
            xml = await asyncio.wait_for(asyncio.shield(comps[jid].privilege), 5)
            p = perms(xml)
            ns = xml.find(".//*[@access]")
            version = ns.tag.split("}")[0].strip("{") if ns is not None else "?"
            want = {"roster": "both", "message": "outgoing", "presence": "roster"}
            ok = all(p.get(k) == v for k, v in want.items())
            if version.endswith(":2"):
                ok = ok and p.get("iq") == {
                    "http://jabber.org/protocol/pubsub": "both",
                    "http://jabber.org/protocol/pubsub#owner": "set",
                    "urn:xmpp:http:upload:0": "get"}
            check(f"privileges of {jid}", ok, f"{version} {p}")
            if os.environ.get("VERBOSE"):
                print("    " + ET.tostring(xml).decode())
        except asyncio.TimeoutError:
            check(f"privileges of {jid}", False, "no <privilege/> advertisement within 5 s")
    await asyncio.sleep(0.5)
    for jid in UNPRIV:
        if jid in comps:
            check(f"no privileges for {jid}", not comps[jid].privilege.done())

    clients = {}
    for user, pw in USERS:
        cl = client(user, pw)
        cl.connect(HOST, C2S)
        try:
            await asyncio.wait_for(cl.wait_until("session_start"), 10)
            clients[user] = cl
            check(f"c2s login {user}@{DOMAIN}", True)
        except asyncio.TimeoutError:
            check(f"c2s login {user}@{DOMAIN}", False, "no session within 10 s")
    if not clients or not comps:
        return
    user = "alice" if "alice" in clients else next(iter(clients))
    cl = clients[user]
    cl.send_presence()
    target = (PRIV + UNPRIV)[0]
    cl.send_message(mto=target, mbody="hello component")
    try:
        m = await asyncio.wait_for(comps[target].messages.get(), 5)
        check(f"message {user} -> {target}", m["body"] == "hello component", str(m["from"]))
    except asyncio.TimeoutError:
        check(f"message {user} -> {target}", False, "not received within 5 s")

    bare = f"{user}@{DOMAIN}"
    if PRIV and PRIV[0] in comps:
        comp = comps[PRIV[0]]
        iq = comp.make_iq_get(queryxmlns="jabber:iq:roster", ito=bare, ifrom=PRIV[0])
        try:
            r = await iq.send(timeout=5)
            check("privileged roster get", r["type"] == "result")
        except Exception as e:  # noqa: BLE001 - report whatever failed
            check("privileged roster get", False, str(e)[:200])
        if SERVER == "prosody":
            iq = comp.make_iq_set(ito=bare, ifrom=PRIV[0])
            iq.append(ET.fromstring(f"<query xmlns='jabber:iq:roster'><item jid='contact@{PRIV[0]}' name='Contact'/></query>"))
            try:
                r = await iq.send(timeout=5)
                roster = await cl.get_roster()
                check("privileged roster set", r["type"] == "result" and f"contact@{PRIV[0]}" in cl.client_roster.keys())
            except Exception as e:  # noqa: BLE001
                check("privileged roster set", False, str(e)[:200])
    if UNPRIV and UNPRIV[0] in comps:
        iq = comps[UNPRIV[0]].make_iq_get(queryxmlns="jabber:iq:roster", ito=bare, ifrom=UNPRIV[0])
        try:
            r = await iq.send(timeout=5)
            check("unprivileged roster get refused", False, "got " + r["type"])
        except slixmpp.exceptions.IqError as e:
            check("unprivileged roster get refused", True, e.iq["error"]["condition"])
        except Exception as e:  # noqa: BLE001
            check("unprivileged roster get refused", False, str(e)[:200])

    if UPLOAD:
        data = b"\x89PNG ferry upload check " + os.urandom(16)
        items = await cl.plugin["xep_0030"].get_items(jid=DOMAIN)
        jids = [str(i[0]) for i in items["disco_items"]["items"]]
        check(f"{UPLOAD} listed in disco#items of {DOMAIN}", UPLOAD in jids, " ".join(jids))
        iq = cl.make_iq_get(ito=UPLOAD)
        iq.append(ET.fromstring(f"<request xmlns='urn:xmpp:http:upload:0' filename='check.png' size='{len(data)}' content-type='image/png'/>"))
        try:
            r = await iq.send(timeout=5)
            slot = r.xml.find("{urn:xmpp:http:upload:0}slot")
            put = slot.find("{urn:xmpp:http:upload:0}put").get("url")
            get = slot.find("{urn:xmpp:http:upload:0}get").get("url")
            headers = {h.get("name"): h.text for h in slot.find("{urn:xmpp:http:upload:0}put")}
            req = urllib.request.Request(put, data=data, method="PUT",
                                         headers={"Content-Type": "image/png", **headers})
            status = urllib.request.urlopen(req, timeout=10).status
            back = urllib.request.urlopen(get, timeout=10).read()
            check("XEP-0363 slot, PUT, GET", back == data, f"PUT {status}, GET {get}")
        except Exception as e:  # noqa: BLE001
            check("XEP-0363 slot, PUT, GET", False, str(e)[:300])
        if PRIV and PRIV[0] in comps and SERVER == "prosody":
            comp = comps[PRIV[0]]
            iq = comp.make_iq_get(ito=bare, ifrom=PRIV[0])
            iq.append(ET.fromstring(
                "<privileged_iq xmlns='urn:xmpp:privilege:2'>"
                f"<iq xmlns='jabber:client' type='get' id='up1' to='{UPLOAD}' from='{bare}'>"
                f"<request xmlns='urn:xmpp:http:upload:0' filename='priv.png' size='{len(data)}' content-type='image/png'/>"
                "</iq></privileged_iq>"))
            try:
                r = await iq.send(timeout=5)
                slot = r.xml.find(".//{urn:xmpp:http:upload:0}slot")
                put = slot.find("{urn:xmpp:http:upload:0}put").get("url")
                get = slot.find("{urn:xmpp:http:upload:0}get").get("url")
                headers = {h.get("name"): h.text for h in slot.find("{urn:xmpp:http:upload:0}put")}
                req = urllib.request.Request(put, data=data, method="PUT",
                                             headers={"Content-Type": "image/png", **headers})
                urllib.request.urlopen(req, timeout=10)
                back = urllib.request.urlopen(get, timeout=10).read()
                check("XEP-0363 slot through privileged IQ (XEP-0356)", back == data, get)
            except Exception as e:  # noqa: BLE001
                check("XEP-0363 slot through privileged IQ (XEP-0356)", False, str(e)[:300])

    for c in list(clients.values()) + list(comps.values()):
        c.disconnect()
    await asyncio.sleep(0.3)


asyncio.run(main())
print(f"slixmpp {slixmpp.__version__}: {len(failures)} failed")
sys.exit(1 if failures else 0)
