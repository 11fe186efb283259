"""Hostile and broken input gets a clear error and breaks nothing: stanzas
that do not parse, nonsense addresses, malformed payloads, and the gateway
keeps serving afterwards."""
import pytest

from harness.stanza import NS, find, message, presence, text


def still_works(c, domain):
    m = c.mark()
    c.send_message(f"echo@{domain}", "still alive")
    c.wait_for(message(frm=f"echo@{domain}", body="still alive"), since=m)


def test_unparseable_stanzas_get_bad_request(user, domain):
    # an IQ with two payloads cannot be parsed as one request
    r = user.iq("<query xmlns='jabber:iq:version'/><ping xmlns='urn:xmpp:ping'/>", to=domain,
                allow_error=True)
    assert r.get("type") == "error"
    assert find(r, "error/stanzas:bad-request") is not None or find(r, "error/stanzas:service-unavailable") is not None
    # a message of an unknown type
    m = user.mark()
    user.send(f"<message to='echo@{domain}' type='bogus' id='bad1'><body>x</body></message>")
    err = user.wait_for(message(type="error", id="bad1"), since=m)
    assert find(err, "error/stanzas:bad-request") is not None
    # answered by the gateway from the header of the stanza it could not read
    assert err.get("from") == f"echo@{domain}"
    assert "could not be read" in text(err, "error/stanzas:text")
    still_works(user, domain)


def test_unknown_iq_namespaces_are_service_unavailable(user, domain):
    r = user.iq("<query xmlns='urn:example:nothing'/>", to=domain, allow_error=True)
    assert find(r, "error/stanzas:service-unavailable") is not None
    r = user.iq("<query xmlns='urn:example:nothing'/>", to=f"echo@{domain}", type="set", allow_error=True)
    assert find(r, "error/stanzas:service-unavailable") is not None


def test_nonsense_addresses(user, domain):
    m = user.mark()
    for local in ("UPPER\\20space", "a\\40b\\40c", "#", "#bad\\20room"):
        mid = user.send_message(f"{local}@{domain}", "hi")
        err = user.wait_for(message(type="error", id=mid), since=m)
        assert text(err, "error/stanzas:text"), local
    with pytest.raises(AssertionError):
        user.join_muc(f"#bad\\20room@{domain}", "me", timeout=5)
    still_works(user, domain)


def test_malformed_muc_and_mam_payloads(user, domain):
    room = f"#hostile@{domain}"
    user.join_muc(room, "alice")
    for payload in (
        f"<query xmlns='{NS['muc_admin']}'/>",
        f"<query xmlns='{NS['muc_admin']}'><item nick='x' role='emperor'/></query>",
        f"<query xmlns='{NS['mam']}'><set xmlns='{NS['rsm']}'><max>many</max></set></query>",
    ):
        r = user.iq(payload, to=room, type="set", allow_error=True)
        assert r.get("type") == "error", payload
        assert text(r, "error/stanzas:text"), payload
    # a join without a nickname
    m = user.mark()
    user.send(f"<presence to='{room}'><x xmlns='{NS['muc']}'/></presence>")
    still_works(user, domain)
    assert m is not None


def test_huge_forms_and_bodies_do_not_hurt(user, domain):
    big = "x" * 200_000
    r = user.command(domain, "wizard")
    done = user.command_next(r, {"name": big}, allow_error=True)
    assert done is not None
    mid = user.send_message(f"echo@{domain}", big)
    err = user.wait_for(message(type="error", id=mid))
    assert find(err, "error/stanzas:policy-violation") is not None
    still_works(user, domain)
