"""Facts of the cluster suite shared by its fixtures and tests."""

# load01..load20: registered on ejabberd by contrib/peers (XMPP_LOAD_USERS=20)
USERS = [f"load{i:02d}" for i in range(1, 21)]
LOAD_PASSWORD = "loadpw"
# [cluster] lease_timeout of both instances (the default)
LEASE_TIMEOUT = 10
