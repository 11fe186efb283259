"""Ferry's end-to-end test harness: real peers (contrib/peers), a real
`ferry` process, real XMPP clients (slixmpp) and raw IRC sockets.

See tests/README.md for the API. Fixtures live in harness.fixtures and are
loaded by tests/conftest.py.
"""
