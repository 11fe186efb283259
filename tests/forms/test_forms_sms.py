"""Every data form of the SMS bridge carries its XEP-0004 types (see
test_forms_typed.py): the registration form in both account modes, the
gateway's commands as a user and as an administrator (admin/assign-number),
the preferences with the region list, and a group text's room."""
from test_forms_typed import Walk

SMS = "sms.localhost"


def sms_section(peers, **keys):
    s = {"backend": "twilio", "accounts": "own",
         "twilio": {"api_url": peers.env.get("TWILIO_MOCK_URL", "http://127.0.0.1:9")}}
    s.update(keys)
    return s


def test_every_form_of_the_sms_bridge(ferry_factory, xmpp, peers):
    f = ferry_factory(bridges={"sms": sms_section(peers)})
    alice = xmpp("alice")
    w = Walk()
    w.registration(alice, SMS)
    w.check(alice.disco_info(SMS).el, f"disco#info of {SMS}")
    f.stop()
    # Operator mode: the admin assigns the number, then the user registers.
    f = ferry_factory(bridges={"sms": sms_section(peers, accounts="operator", number_pool=["+15550003001"],
                                                  twilio={"api_url": "http://127.0.0.1:9",
                                                          "account_sid": "AC1", "auth_token": "t"})})
    admin = xmpp("admin")
    w.registration(alice, SMS)
    alice.register(SMS, {"region": "US"})
    nodes = w.commands(alice, SMS)
    assert "preferences" in nodes, nodes
    admin_nodes = w.commands(admin, SMS, skip=nodes)
    assert "admin/assign-number" in admin_nodes, admin_nodes
    w.assert_clean(at_least=6)
