"""A synchronous XMPP test client on top of slixmpp.

slixmpp does the stream, SASL and the stanza plumbing; the tests see raw XML:
every stanza received is recorded in order (`client.stanzas`), and
`wait_for(predicate)` waits for one with a timeout. Sending is raw XML too
(`send`), with helpers for the usual requests. All calls block until done
and raise on timeouts with a readable message listing what did arrive.

    c = XmppClient("alice@localhost", "alicepw", port=15222).connect()
    c.send_message("echo@test.localhost", "hi")
    st = c.wait_for(message(frm="echo@test.localhost", body="hi"), timeout=5)
    info = c.disco_info("test.localhost")
    r = c.command("test.localhost", "wizard")          # XEP-0050
    r = c.command_next(r, {"name": "Ann"})
    join = c.join_muc("#lounge@test.localhost", "al")   # exact XEP-0045 order
    page = c.mam_query("#lounge@test.localhost", max=10)
"""
import copy
import itertools
import threading
import time
import xml.etree.ElementTree as ET

import slixmpp

from .aio import LOOP
from .stanza import (
    NS,
    Match,
    as_match,
    attr,
    bare,
    error_condition,
    esc,
    find,
    findall,
    form_xml,
    has,
    iq,
    local,
    message,
    presence,
    q,
    tag,
    text,
    to_string,
)

_ids = itertools.count(1)
_CLIENT_PREFIX = "{" + NS["client"] + "}"


def new_id(prefix="h") -> str:
    return f"{prefix}{next(_ids)}-{int(time.time() * 1000) % 100000}"


class XmppTimeout(AssertionError):
    """A stanza that was waited for did not arrive."""


class StanzaError(AssertionError):
    """A request was answered with an error."""

    def __init__(self, stanza, what=""):
        self.stanza = stanza
        self.type, self.condition, self.text = error_condition(stanza) or (None, None, None)
        super().__init__(f"{what}: error {self.type}/{self.condition}" + (f" ({self.text})" if self.text else "")
                         + f"\n  {to_string(stanza)[:1500]}")


def _short(el, limit=300) -> str:
    s = to_string(el)
    return s if len(s) <= limit else s[:limit] + "…"


# ---------------------------------------------------------------- results

class DataForm:
    """A parsed XEP-0004 form."""

    def __init__(self, el):
        self.el = el
        self.type = el.get("type")
        self.title = text(el, "data:title")
        self.instructions = [i.text or "" for i in findall(el, "data:instructions")]
        self.fields = {}
        for f in findall(el, "data:field"):
            self.fields[f.get("var")] = FormField(f)

    def __getitem__(self, var):
        return self.fields[var]

    def __contains__(self, var):
        return var in self.fields

    def values(self) -> dict:
        """{var: [values]} of every field."""
        return {k: f.values for k, f in self.fields.items()}

    def __repr__(self):
        return f"DataForm(type={self.type!r}, title={self.title!r}, fields={list(self.fields)})"


class FormField:
    def __init__(self, el):
        self.el = el
        self.var = el.get("var")
        self.type = el.get("type", "text-single")
        self.label = el.get("label")
        self.required = find(el, "data:required") is not None
        self.values = [v.text or "" for v in findall(el, "data:value")]
        self.options = [(o.get("label"), text(o, "data:value")) for o in findall(el, "data:option")]
        self.desc = text(el, "data:desc")

    @property
    def value(self):
        return self.values[0] if self.values else None

    def __repr__(self):
        return f"FormField({self.var!r}, {self.type}, values={self.values})"


class DiscoInfo:
    def __init__(self, el):
        self.el = el
        qn = find(el, "disco_info:query")
        self.node = qn.get("node") if qn is not None else None
        self.identities = [(i.get("category"), i.get("type"), i.get("name"))
                           for i in findall(el, "disco_info:query/disco_info:identity")]
        self.features = {f.get("var") for f in findall(el, "disco_info:query/disco_info:feature")}
        self.forms = [DataForm(x) for x in findall(el, "disco_info:query/data:x")]

    def has_identity(self, category, type=None) -> bool:
        return any(c == category and (type is None or t == type) for c, t, _ in self.identities)

    def __repr__(self):
        return f"DiscoInfo(identities={self.identities}, features={sorted(self.features)})"


class CommandResponse:
    """The answer to an XEP-0050 request."""

    def __init__(self, el, jid):
        self.el = el
        self.jid = jid
        c = find(el, "commands:command")
        self.command = c
        self.node = c.get("node") if c is not None else None
        self.sessionid = c.get("sessionid") if c is not None else None
        self.status = c.get("status") if c is not None else None
        actions = find(c, "commands:actions") if c is not None else None
        self.actions = [local(a) for a in actions] if actions is not None else []
        self.default_action = actions.get("execute") if actions is not None else None
        form = find(c, "data:x") if c is not None else None
        self.form = DataForm(form) if form is not None else None
        self.notes = [(n.get("type", "info"), n.text or "") for n in findall(c, "commands:note")] if c is not None else []

    @property
    def note(self):
        return self.notes[0][1] if self.notes else None

    def __repr__(self):
        return (f"CommandResponse(node={self.node!r}, status={self.status!r}, actions={self.actions}, "
                f"form={self.form!r}, notes={self.notes})")


class MucJoin:
    """What a room sent while joining, in order (see XmppClient.join_muc)."""

    def __init__(self, room, nick, stanzas):
        self.room = room
        self.nick = nick
        self.stanzas = stanzas
        self.presences = [s for s in stanzas if s.tag == tag("presence")]
        self.self_presence = next((p for p in self.presences
                                   if has("muc_user:x/muc_user:status", code="110")(p)), None)
        self.occupants = [p for p in self.presences if p is not self.self_presence]
        self.history = [s for s in stanzas if s.tag == tag("message") and find(s, "subject") is None]
        self.subject_message = next((s for s in stanzas if s.tag == tag("message") and find(s, "subject") is not None), None)
        self.subject = text(self.subject_message, "subject") if self.subject_message is not None else None

    def kinds(self) -> list:
        """The order as a list of 'presence', 'self-presence', 'history', 'subject'."""
        out = []
        for s in self.stanzas:
            if s is self.self_presence:
                out.append("self-presence")
            elif s.tag == tag("presence"):
                out.append("presence")
            elif s is self.subject_message:
                out.append("subject")
            else:
                out.append("history")
        return out


class MamPage:
    def __init__(self, messages, fin_iq):
        self.results = messages  # the <message><result/></message> stanzas, in order
        self.fin_iq = fin_iq
        self.fin = find(fin_iq, "mam:fin")
        self.complete = self.fin is not None and self.fin.get("complete") in ("true", "1")
        self.first = text(self.fin, "rsm:set/rsm:first")
        self.last = text(self.fin, "rsm:set/rsm:last")
        count = text(self.fin, "rsm:set/rsm:count")
        self.count = int(count) if count else None

    @property
    def messages(self) -> list:
        """The archived messages (the forwarded <message/> of each result)."""
        return [find(r, "mam:result/forward:forwarded/message") for r in self.results]

    @property
    def ids(self) -> list:
        """The archive ids (result/@id)."""
        return [attr(r, "mam:result", "id") for r in self.results]

    @property
    def bodies(self) -> list:
        return [text(m, "body") for m in self.messages]


# ---------------------------------------------------------------- client

class XmppClient:
    """A client connection with a recorded stream of incoming stanzas."""

    def __init__(self, jid, password, host="127.0.0.1", port=5222, features=(), presence=True,
                 name=None):
        self.jid = jid if "/" in jid else f"{jid}/{new_id('test')}"
        self.bare = bare(self.jid)
        self.password = password
        self.host = host
        self.port = int(port)
        self.features = list(features)
        self.initial_presence = presence
        self.name = name or self.bare
        self.stanzas = []          # every stanza received, in order
        self.times = []            # arrival time of each
        self._taken = set()
        self._mark = 0
        self._cond = threading.Condition()
        self.disconnected = threading.Event()
        self.xmpp = None

    # -- connection ----------------------------------------------------------

    def connect(self, timeout=15):
        """Connects, authenticates, (by default) sends initial presence."""
        def build():
            x = slixmpp.ClientXMPP(self.jid, self.password)
            x.enable_starttls = False
            x.enable_direct_tls = False
            x.enable_plaintext = True
            x.plugin["feature_mechanisms"].unencrypted_plain = True
            for p in ("xep_0030", "xep_0115", "xep_0199", "xep_0092"):
                x.register_plugin(p)
            for f in self.features:
                x.plugin["xep_0030"].add_feature(f)
            x.add_filter("in", self._record)
            x.add_event_handler("disconnected", lambda *_: self.disconnected.set())
            x.add_event_handler("failed_auth", lambda *_: self.disconnected.set())
            self.xmpp = x
            return x

        x = LOOP.call(build)

        async def go():
            x.connect(self.host, self.port)
            await x.wait_until("session_start", timeout)
            if self.features:
                await x.plugin["xep_0115"].update_caps()
            if self.initial_presence:
                x.send_presence()

        try:
            LOOP.run(go(), timeout + 1)
        except (TimeoutError, Exception) as e:  # noqa: BLE001 - report any failure the same way
            LOOP.call(x.abort)
            raise AssertionError(f"{self.jid}: could not log in to {self.host}:{self.port}: {e!r}") from None
        self.disconnected.clear()
        return self

    def disconnect(self, wait=True):
        """Sends unavailable presence and closes the stream."""
        if self.xmpp is None:
            return

        async def go():
            self.xmpp.disconnect(ignore_send_queue=False)
            if wait:
                try:
                    await self.xmpp.disconnected
                except Exception:  # noqa: BLE001 - already gone
                    pass

        try:
            LOOP.run(go(), 10)
        except TimeoutError:
            LOOP.call(self.xmpp.abort)

    def _record(self, stanza):
        if not stanza.xml.tag.startswith(_CLIENT_PREFIX):
            return stanza  # stream negotiation (features, SASL), not a stanza
        el = copy.deepcopy(stanza.xml)
        with self._cond:
            self.stanzas.append(el)
            self.times.append(time.monotonic())
            self._cond.notify_all()
        return stanza

    # -- sending -------------------------------------------------------------

    def send(self, xml):
        """Sends raw XML (a string in the client namespace, or an Element)."""
        data = xml if isinstance(xml, str) else to_string(xml)
        LOOP.call(self.xmpp.send_raw, data)

    def send_message(self, to, body=None, type="chat", id=None, extra="", origin_id=True) -> str:
        """Sends a message; returns its id. `extra` is raw XML of more children.
        Adds an XEP-0359 origin-id equal to the id unless origin_id=False."""
        id = id or new_id("m")
        parts = [f"<message to={q(to)} type={q(type)} id={q(id)}>"]
        if body is not None:
            parts.append(f"<body>{esc(body)}</body>")
        if origin_id:
            parts.append(f"<origin-id xmlns='urn:xmpp:sid:0' id={q(id)}/>")
        parts.append(extra)
        parts.append("</message>")
        self.send("".join(parts))
        return id

    def send_presence(self, to=None, type=None, show=None, status=None, extra=""):
        attrs = "".join(f" {k}={q(v)}" for k, v in (("to", to), ("type", type)) if v)
        inner = (f"<show>{esc(show)}</show>" if show else "") + (f"<status>{esc(status)}</status>" if status else "")
        self.send(f"<presence{attrs}>{inner}{extra}</presence>")

    def iq(self, payload: str, to=None, type="get", timeout=10, allow_error=False, id=None):
        """Sends <iq type=… to=…>payload</iq>; returns the answer (an Element).
        Raises StanzaError on an error answer unless allow_error."""
        id = id or new_id("iq")
        to_attr = f" to={q(to)}" if to else ""
        m = self.position()
        self.send(f"<iq type={q(type)} id={q(id)}{to_attr}>{payload}</iq>")
        resp = self.wait_for(iq(id=id) & Match(lambda e: e.get("type") in ("result", "error"), "result/error"),
                             timeout=timeout, since=m, what=f"answer to iq {id} to {to}")
        if resp.get("type") == "error" and not allow_error:
            raise StanzaError(resp, f"iq {type} to {to}")
        return resp

    # -- receiving -----------------------------------------------------------

    def mark(self) -> int:
        """The current position in the stream; pass as `since=` to only look
        at what arrives afterwards. Also the default `since` from now on."""
        with self._cond:
            self._mark = len(self.stanzas)
            return self._mark

    def position(self) -> int:
        """The current position in the stream (the default stays as it is)."""
        with self._cond:
            return len(self.stanzas)

    def wait_for(self, pred, timeout=10, since=None, take=True, what=None):
        """Waits for the first stanza (at or after `since`, default: the last
        mark) that matches and was not already returned by wait_for; returns
        it. Raises XmppTimeout listing what arrived instead."""
        pred = as_match(pred)
        start = self._mark if since is None else since
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(start, len(self.stanzas)):
                    if i in self._taken:
                        continue
                    if pred(self.stanzas[i]):
                        if take:
                            self._taken.add(i)
                        return self.stanzas[i]
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = "\n".join(f"  [{i}] {_short(s)}" for i, s in enumerate(self.stanzas[start:], start))
                    raise XmppTimeout(f"{self.name}: no {what or pred!r} within {timeout} s; "
                                      f"received since #{start}:\n{seen or '  (nothing)'}")
                self._cond.wait(left)

    def wait_for_all(self, preds, timeout=10, since=None) -> list:
        """Waits for one stanza per predicate (any order); returns them in
        the order of `preds`."""
        deadline = time.monotonic() + timeout
        return [self.wait_for(p, timeout=max(0.0, deadline - time.monotonic()), since=since) for p in preds]

    def expect_no(self, pred, within=1.0, since=None):
        """Asserts that no matching stanza arrives within `within` seconds."""
        pred = as_match(pred)
        start = self._mark if since is None else since
        time.sleep(within)
        with self._cond:
            for i in range(start, len(self.stanzas)):
                if i not in self._taken and pred(self.stanzas[i]):
                    raise AssertionError(f"{self.name}: unexpected {pred!r}: {_short(self.stanzas[i], 2000)}")

    def received(self, pred=None, since=None) -> list:
        """Every stanza received (since `since`, default 0) matching `pred`."""
        pred = as_match(pred) if pred else (lambda e: True)
        with self._cond:
            return [s for s in self.stanzas[since or 0:] if pred(s)]

    # -- service discovery ---------------------------------------------------

    def disco_info(self, jid, node=None, timeout=10) -> DiscoInfo:
        n = f" node={q(node)}" if node else ""
        return DiscoInfo(self.iq(f"<query xmlns='{NS['disco_info']}'{n}/>", to=jid, timeout=timeout))

    def disco_items(self, jid, node=None, timeout=10) -> list:
        """[(jid, node, name)]"""
        n = f" node={q(node)}" if node else ""
        r = self.iq(f"<query xmlns='{NS['disco_items']}'{n}/>", to=jid, timeout=timeout)
        return [(i.get("jid"), i.get("node"), i.get("name")) for i in findall(r, "disco_items:query/disco_items:item")]

    def commands(self, jid) -> dict:
        """{node: name} of the ad-hoc commands offered at `jid`."""
        return {node: name for _, node, name in self.disco_items(jid, node=NS["commands"])}

    # -- XEP-0050 ad-hoc commands --------------------------------------------

    def command(self, jid, node, action="execute", sessionid=None, values=None, allow_error=False,
                timeout=10) -> CommandResponse:
        """One XEP-0050 request. `values` (dict) becomes a submitted form."""
        sid = f" sessionid={q(sessionid)}" if sessionid else ""
        act = f" action={q(action)}" if action else ""
        payload = form_xml(values) if values is not None else ""
        r = self.iq(f"<command xmlns='{NS['commands']}' node={q(node)}{sid}{act}>{payload}</command>",
                    to=jid, type="set", allow_error=allow_error, timeout=timeout)
        return CommandResponse(r, jid)

    def command_next(self, prev: CommandResponse, values=None, **kw) -> CommandResponse:
        return self.command(prev.jid, prev.node, "next", prev.sessionid, values, **kw)

    def command_prev(self, prev: CommandResponse, **kw) -> CommandResponse:
        return self.command(prev.jid, prev.node, "prev", prev.sessionid, None, **kw)

    def command_complete(self, prev: CommandResponse, values=None, **kw) -> CommandResponse:
        return self.command(prev.jid, prev.node, "complete", prev.sessionid, values, **kw)

    def command_cancel(self, prev: CommandResponse, **kw) -> CommandResponse:
        return self.command(prev.jid, prev.node, "cancel", prev.sessionid, None, **kw)

    # -- XEP-0077 registration -----------------------------------------------

    def register_form(self, jid, **kw):
        """The registration query answer (an Element)."""
        return self.iq(f"<query xmlns='{NS['register']}'/>", to=jid, **kw)

    def register(self, jid, values: dict, form=True, **kw):
        """Submits a registration (an x:data form, or plain fields with form=False)."""
        if form:
            payload = form_xml(values, form_type=NS["register"])
        else:
            payload = "".join(f"<{k}>{esc(v)}</{k}>" for k, v in values.items())
        return self.iq(f"<query xmlns='{NS['register']}'>{payload}</query>", to=jid, type="set", **kw)

    def unregister(self, jid, **kw):
        return self.iq(f"<query xmlns='{NS['register']}'><remove/></query>", to=jid, type="set", **kw)

    # -- roster --------------------------------------------------------------

    def roster(self) -> dict:
        """{jid: {'subscription', 'ask', 'name', 'groups'}} from the server."""
        r = self.iq(f"<query xmlns='{NS['roster']}'/>")
        out = {}
        for item in findall(r, "roster:query/roster:item"):
            out[item.get("jid")] = {
                "subscription": item.get("subscription", "none"),
                "ask": item.get("ask"),
                "name": item.get("name"),
                "groups": [g.text for g in findall(item, "roster:group")],
            }
        return out

    # -- XEP-0045 rooms ------------------------------------------------------

    def join_muc(self, room, nick, password=None, history=None, timeout=15, extra="") -> MucJoin:
        """Joins `room` as `nick` and returns everything the room sent until
        the subject (which XEP-0045 sends last), in order. `history` is a
        dict of <history/> attributes (maxstanzas, maxchars, seconds, since).
        Raises StanzaError when the join is refused."""
        full = f"{room}/{nick}"
        hist = ""
        if history is not None:
            hist = "<history" + "".join(f" {k}={q(str(v))}" for k, v in history.items()) + "/>"
        pw = f"<password>{esc(password)}</password>" if password is not None else ""
        m = self.position()
        self.send(f"<presence to={q(full)}><x xmlns='{NS['muc']}'>{hist}{pw}</x>{extra}</presence>")
        from_room = Match(lambda e: bare(e.get("from")).lower() == room.lower(), f"from {room}")
        end = (message(frm=room) & has("subject")) | (presence(frm=full, type="error"))
        last = self.wait_for(end & from_room, timeout=timeout, since=m, take=False, what=f"subject of {room}")
        if last.tag == tag("presence"):
            raise StanzaError(last, f"join {full}")
        with self._cond:
            upto = next(i for i in range(m, len(self.stanzas)) if self.stanzas[i] is last)
            got = []
            for i in range(m, upto + 1):
                if from_room(self.stanzas[i]) and self.stanzas[i].tag in (tag("presence"), tag("message")):
                    got.append(self.stanzas[i])
                    self._taken.add(i)
        return MucJoin(room, nick, got)

    def leave_muc(self, room, nick, status=None, timeout=10):
        st = f"<status>{esc(status)}</status>" if status else ""
        m = self.position()
        self.send(f"<presence to={q(room + '/' + nick)} type='unavailable'>{st}</presence>")
        return self.wait_for(presence(frm=f"{room}/{nick}", type="unavailable"), timeout=timeout, since=m)

    # -- XEP-0313 archives ---------------------------------------------------

    def mam_query(self, to=None, with_=None, start=None, end=None, max=None, after=None, before=None,
                  ids=None, timeout=15, allow_error=False) -> MamPage:
        """Queries an archive (`to`: a room JID, or None for the user's own)
        and returns the page (messages in order + the <fin/>)."""
        qid = new_id("mam")
        fields = {}
        if with_:
            fields["with"] = with_
        if start:
            fields["start"] = start
        if end:
            fields["end"] = end
        if ids:
            fields["ids"] = list(ids)
        form = form_xml(fields, form_type=NS["mam"]) if fields else ""
        rsm = ""
        if max is not None or after is not None or before is not None:
            rsm = f"<set xmlns='{NS['rsm']}'>"
            if max is not None:
                rsm += f"<max>{int(max)}</max>"
            if after is not None:
                rsm += f"<after>{esc(after)}</after>"
            if before is not None:
                rsm += "<before/>" if before == "" else f"<before>{esc(before)}</before>"
            rsm += "</set>"
        m = self.position()
        resp = self.iq(f"<query xmlns='{NS['mam']}' queryid={q(qid)}>{form}{rsm}</query>", to=to, type="set",
                       timeout=timeout, allow_error=allow_error)
        results = self.received(message() & has("mam:result", queryid=qid), since=m)
        with self._cond:
            for i in range(m, len(self.stanzas)):
                if any(self.stanzas[i] is r for r in results):
                    self._taken.add(i)
        return MamPage(results, resp)


def ping(client: XmppClient, jid, timeout=10, allow_error=False):
    """XEP-0199 ping; returns the answer."""
    return client.iq(f"<ping xmlns='{NS['ping']}'/>", to=jid, timeout=timeout, allow_error=allow_error)


__all__ = ["XmppClient", "XmppTimeout", "StanzaError", "DataForm", "DiscoInfo", "CommandResponse",
           "MucJoin", "MamPage", "new_id", "ping", "ET"]
