"""What the operator reads when a fresh Matrix account logs in: no ERROR
(matrix-sdk logs the homeserver's 404 for the absent
m.secret_storage.default_key as one, though every fresh account has
none), and one line saying what it means."""
from matrix_helpers import register


def test_a_fresh_account_logs_no_error(gw, alice, domain, peers):
    register(alice, domain, peers)
    gw.wait_for_log(r"INFO .*the Matrix account has no secret storage", timeout=60)
    errors = [line for line in gw.log().splitlines() if " ERROR " in line]
    assert not errors, "\n".join(errors)
