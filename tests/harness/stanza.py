"""Reading and building raw stanzas.

Received stanzas are `xml.etree.ElementTree.Element`s in the `jabber:client`
namespace. `NS` maps short prefixes to namespaces so paths stay readable:

    find(st, "muc_user:x/muc_user:status")      # first match or None
    findall(st, "disco_info:query/disco_info:feature")
    attr(st, "muc_user:x/muc_user:item", "role")
    text(st, "body")                           # body = jabber:client body

Matchers build predicates for `XmppClient.wait_for`:

    m = message(frm="echo@test.localhost", body="hi", type="chat")
    m = presence(frm=room + "/alice") & has("muc_user:x/muc_user:status[@code='110']")
    m = iq(id="abc")
    m = message() & ~has("delay:delay")

Building: `esc(text)` and `q(value)` (quoted attribute) keep XML safe;
`form_xml(values)` builds an XEP-0004 submit form.
"""
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

NS = {
    "client": "jabber:client",
    "stanzas": "urn:ietf:params:xml:ns:xmpp-stanzas",
    "disco_info": "http://jabber.org/protocol/disco#info",
    "disco_items": "http://jabber.org/protocol/disco#items",
    "commands": "http://jabber.org/protocol/commands",
    "data": "jabber:x:data",
    "register": "jabber:iq:register",
    "gateway": "jabber:iq:gateway",
    "roster": "jabber:iq:roster",
    "version": "jabber:iq:version",
    "ping": "urn:xmpp:ping",
    "muc": "http://jabber.org/protocol/muc",
    "muc_user": "http://jabber.org/protocol/muc#user",
    "muc_admin": "http://jabber.org/protocol/muc#admin",
    "muc_owner": "http://jabber.org/protocol/muc#owner",
    "mam": "urn:xmpp:mam:2",
    "rsm": "http://jabber.org/protocol/rsm",
    "forward": "urn:xmpp:forward:0",
    "delay": "urn:xmpp:delay",
    "sid": "urn:xmpp:sid:0",
    "receipts": "urn:xmpp:receipts",
    "chatstates": "http://jabber.org/protocol/chatstates",
    "correct": "urn:xmpp:message-correct:0",
    "retract": "urn:xmpp:message-retract:1",
    "retract0": "urn:xmpp:message-retract:0",
    "fasten": "urn:xmpp:fasten:0",
    "reactions": "urn:xmpp:reactions:0",
    "reply": "urn:xmpp:reply:0",
    "fallback": "urn:xmpp:fallback:0",
    "markers": "urn:xmpp:chat-markers:0",
    "oob": "jabber:x:oob",
    "xhtml": "http://jabber.org/protocol/xhtml-im",
    "xhtml_body": "http://www.w3.org/1999/xhtml",
    "caps": "http://jabber.org/protocol/caps",
    "rosterx": "http://jabber.org/protocol/rosterx",
    "nick": "http://jabber.org/protocol/nick",
    "vcard_update": "vcard-temp:x:update",
    "occupant_id": "urn:xmpp:occupant-id:0",
    "conference": "jabber:x:conference",
    "hints": "urn:xmpp:hints",
    "upload": "urn:xmpp:http:upload:0",
    "privilege": "urn:xmpp:privilege:2",
    "privilege1": "urn:xmpp:privilege:1",
    "stream": "http://etherx.jabber.org/streams",
}

NS_CLIENT = NS["client"]


def tag(name: str) -> str:
    """`message` -> `{jabber:client}message`; `muc:x` -> `{…muc}x`."""
    if ":" in name:
        prefix, local = name.split(":", 1)
        return "{%s}%s" % (NS[prefix], local)
    return "{%s}%s" % (NS_CLIENT, name)


def _path(path: str) -> str:
    # plain names (no prefix) inside a path are jabber:client children
    parts = []
    for part in path.split("/"):
        if part in (".", "..", "*", "") or part.startswith("{") or ":" in part.split("[")[0]:
            parts.append(part)
        else:
            parts.append("client:" + part)
    return "/".join(parts)


def find(el, path: str):
    """First element at `path` (prefixes from NS), or None."""
    if el is None:
        return None
    return el.find(_path(path), NS)


def findall(el, path: str) -> list:
    """Every element at `path`."""
    if el is None:
        return []
    return el.findall(_path(path), NS)


def text(el, path: str = None, default=None):
    """Text of the element at `path` (or of `el`), `default` if absent."""
    node = el if path is None else find(el, path)
    if node is None:
        return default
    return node.text if node.text is not None else ""


def attr(el, path: str, name: str, default=None):
    """Attribute `name` of the element at `path`."""
    node = find(el, path)
    return default if node is None else node.get(name, default)


def local(el) -> str:
    """Local name of an element's tag."""
    return el.tag.rsplit("}", 1)[-1]


def bare(jid: str) -> str:
    return (jid or "").split("/", 1)[0]


def resource(jid: str):
    return jid.split("/", 1)[1] if jid and "/" in jid else None


def to_string(el) -> str:
    """The element as XML text (for messages and debugging)."""
    ET.register_namespace("", NS_CLIENT)
    return ET.tostring(el, encoding="unicode")


def error_condition(el):
    """(type, condition, text) of a stanza's <error/>, or None."""
    err = find(el, "error")
    if err is None:
        return None
    cond = next((local(c) for c in err if c.tag.startswith("{%s}" % NS["stanzas"]) and local(c) != "text"), None)
    return err.get("type"), cond, text(err, "stanzas:text")


# ---------------------------------------------------------------- building

def esc(s: str) -> str:
    """Escapes text content."""
    return escape(s)


def q(s: str) -> str:
    """A quoted, escaped attribute value: f"<x a={q(v)}/>"."""
    return quoteattr(s)


def form_xml(values: dict, type: str = "submit", form_type: str = None) -> str:
    """An XEP-0004 form: {var: str | bool | list[str]}."""
    out = [f"<x xmlns='jabber:x:data' type={q(type)}>"]
    if form_type:
        out.append(f"<field var='FORM_TYPE' type='hidden'><value>{esc(form_type)}</value></field>")
    for var, value in values.items():
        if isinstance(value, bool):
            value = ["1" if value else "0"]
        elif isinstance(value, str):
            value = [value]
        out.append(f"<field var={q(var)}>" + "".join(f"<value>{esc(v)}</value>" for v in value) + "</field>")
    out.append("</x>")
    return "".join(out)


# ---------------------------------------------------------------- matchers

class Match:
    """A predicate on stanzas; combine with &, |, ~."""

    def __init__(self, fn, desc: str):
        self.fn = fn
        self.desc = desc

    def __call__(self, el) -> bool:
        try:
            return bool(self.fn(el))
        except (AttributeError, TypeError, ValueError):
            return False

    def __and__(self, other):
        other = as_match(other)
        return Match(lambda e: self(e) and other(e), f"({self.desc} and {other.desc})")

    def __or__(self, other):
        other = as_match(other)
        return Match(lambda e: self(e) or other(e), f"({self.desc} or {other.desc})")

    def __invert__(self):
        return Match(lambda e: not self(e), f"not {self.desc}")

    def __repr__(self):
        return self.desc


def as_match(pred) -> Match:
    if isinstance(pred, Match):
        return pred
    return Match(pred, getattr(pred, "__name__", "predicate"))


def _stanza(kind, frm, to, type, id, extra_desc=""):
    def fn(el):
        if el.tag != tag(kind):
            return False
        if frm is not None and not _jid_matches(el.get("from"), frm):
            return False
        if to is not None and not _jid_matches(el.get("to"), to):
            return False
        if type is not None and (el.get("type") or default_type(kind)) != type:
            return False
        if id is not None and el.get("id") != id:
            return False
        return True

    parts = [f"{k}={v!r}" for k, v in (("from", frm), ("to", to), ("type", type), ("id", id)) if v is not None]
    return Match(fn, f"{kind}({', '.join(parts)}{extra_desc})")


def default_type(kind: str) -> str:
    return {"message": "normal", "presence": "available", "iq": ""}[kind]


def _jid_matches(actual, wanted) -> bool:
    """`wanted` without a resource matches any resource of that bare JID;
    with one, only that full JID. Case-insensitive on the bare part."""
    if actual is None:
        return False
    if "/" in wanted:
        a_bare, _, a_res = actual.partition("/")
        w_bare, _, w_res = wanted.partition("/")
        return a_bare.lower() == w_bare.lower() and a_res == w_res
    return bare(actual).lower() == wanted.lower()


def message(frm=None, to=None, type=None, id=None, body=None, body_contains=None) -> Match:
    """A <message/>; `frm` without resource matches any resource."""
    base = _stanza("message", frm, to, type, id)
    if body is None and body_contains is None:
        return base

    def fn(el):
        b = text(el, "body")
        if body is not None and b != body:
            return False
        if body_contains is not None and (b is None or body_contains not in b):
            return False
        return True

    desc = f", body={body!r}" if body is not None else f", body~{body_contains!r}"
    return base & Match(fn, desc.lstrip(", "))


def presence(frm=None, to=None, type=None, id=None) -> Match:
    """A <presence/> (type 'available' when absent)."""
    return _stanza("presence", frm, to, type, id)


def iq(frm=None, to=None, type=None, id=None) -> Match:
    """An <iq/>."""
    return _stanza("iq", frm, to, type, id)


def has(path: str, **attrs) -> Match:
    """The stanza has an element at `path` (with these attribute values)."""
    def fn(el):
        for node in findall(el, path):
            if all(node.get(k.rstrip("_")) == v for k, v in attrs.items()):
                return True
        return False

    extra = "".join(f"[@{k}={v!r}]" for k, v in attrs.items())
    return Match(fn, f"has({path}{extra})")


def where(fn, desc: str = "where(...)") -> Match:
    """Any predicate on the element."""
    return Match(fn, desc)
