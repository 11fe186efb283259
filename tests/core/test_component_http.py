"""The real ferry binary's component stream and HTTP listener against the
real Prosody: /health and /metrics follow the stream through a Prosody
restart (ferry reconnects and never exits), a wrong component secret is
reported clearly and retried, the state files are private, webhooks are
routed and limited, and SIGTERM ends it with status 0."""
import os
import re
import stat
import time

import pytest


def wait_health(f, want_status, timeout=30, state=None):
    """Polls /health until it answers `want_status` (and the test bridge is
    in `state`, if given); returns the JSON."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        assert f.running, f"ferry exited:\n{f.log_tail(60)}"
        try:
            r = f.http("GET", "/health", timeout=3)
        except OSError as e:  # not listening yet
            last = e
            time.sleep(0.1)
            continue
        last = r
        if r.status == want_status:
            body = r.json()
            if state is None or body["bridges"]["test"]["state"] == state:
                return body
        time.sleep(0.2)
    raise AssertionError(f"/health never answered {want_status} ({state}) within {timeout} s; last: {last!r}")


def metric(f, name, bridge="test"):
    text = f.http("GET", "/metrics").text
    m = re.search(rf'^{name}{{bridge="{bridge}"}} (\d+)$', text, re.M)
    assert m, f"no {name} for {bridge} in /metrics:\n{text}"
    return int(m.group(1))


def test_health_and_metrics_follow_a_prosody_restart(ferry_factory, peers):
    f = ferry_factory()
    health = wait_health(f, 200, state="connected")
    assert health["status"] == "ok"
    assert health["bridges"]["test"]["domain"] == f.config.domain("test")
    assert metric(f, "ferry_component_connected") == 1
    assert metric(f, "ferry_component_reconnects_total") == 0
    peers.stop("prosody")
    try:
        down = wait_health(f, 503, state="connecting")
        assert down["status"] == "degraded"
        assert down["bridges"]["test"]["last_error"], down
        assert metric(f, "ferry_component_connected") == 0
        time.sleep(2)  # a few reconnection attempts against a closed port
        assert f.running
    finally:
        peers.start("prosody")
    up = wait_health(f, 200, state="connected", timeout=60)
    assert up["bridges"]["test"]["connected_since"], up
    assert metric(f, "ferry_component_reconnects_total") >= 1
    assert metric(f, "ferry_component_connected") == 1
    assert f.stop() == 0


def test_a_wrong_secret_is_reported_and_retried(ferry_factory):
    f = ferry_factory(bridges={"test": {"secret": "not-the-secret"}}, wait=False)
    deadline = time.monotonic() + 20
    while True:
        body = wait_health(f, 503, state="connecting")
        err = body["bridges"]["test"]["last_error"] or ""
        if err or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "not-authorized" in err or "refused" in err, body
    f.wait_for_log(r"refused the component test\.localhost")
    time.sleep(1)
    assert f.running, "ferry must keep retrying, not exit"
    assert f.stop() == 0


def test_state_files_are_private(ferry_factory):
    f = ferry_factory()
    data = f.workdir / "data"
    key = data / "ferry.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    if not f.config.storage_url:
        assert (data / "test.db").is_file()
    assert (data / "test").is_dir()
    assert f.stop() == 0
    # A key file others can read: ferry refuses to start, and says why.
    os.chmod(key, 0o644)
    f.start(wait=False)
    deadline = time.monotonic() + 10
    while f.running and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not f.running and f.proc.returncode == 1
    assert "readable by others" in f.log() and "chmod 600" in f.log()
    os.chmod(key, 0o600)


def test_webhooks_are_routed_and_limited(ferry_factory):
    f = ferry_factory(config={"http": {"max_body_bytes": 2048}})
    r = f.http("POST", "/bridge/nosuchbridge/x", b"{}")
    assert r.status == 404, r
    r = f.http("POST", "/bridge/test/say", b"x" * 4096)
    assert r.status == 413, r
    assert "max_body_bytes" in r.text
    r = f.http("GET", "/media/" + "0" * 32 + "/nothing.png")
    assert r.status == 404, r
    r = f.http("GET", "/metrics")
    content_type = {k.lower(): v for k, v in r.headers.items()}.get("content-type", "")
    assert r.status == 200 and content_type.startswith("text/plain"), r.headers
    assert 'ferry_build_info{version="' in r.text


def test_check_reports_bad_values_of_the_generated_config(ferry_factory):
    f = ferry_factory(config={"xmpp": {"port": 70000}, "access": {"users": ["[bad"]}}, start=False)
    r = f.check()
    assert r.returncode == 1
    out = r.stdout + r.stderr
    assert "[xmpp] port: 70000 is out of range (1-65535)" in out, out
    assert '[access] bad pattern "[bad"' in out, out


def test_nothing_is_lost_when_prosody_restarts_mid_stream(ferry_factory, xmpp, peers):
    """The network (the test bridge's /say) writes to alice while Prosody
    restarts: what ferry had written but Prosody had not confirmed is sent
    again, what came while Prosody was down waits in the outbox. Alice is
    offline during the restart, so Prosody keeps every message for her
    (offline storage) and she gets them all when she logs in again;
    duplicates are allowed, losses are not."""
    import threading

    from harness.stanza import message, text

    from helpers import register

    f = ferry_factory()
    domain = f.config.domain("test")
    alice = xmpp("alice")
    register(alice, domain)
    alice.disconnect()
    total = 120
    posted = []
    errors = []

    def say_all():
        for i in range(total):
            for _ in range(200):  # ferry itself never goes away: retry a refused POST
                try:
                    r = f.http("POST", "/bridge/test/say?to=alice&from=bob", f"m{i}".encode(), timeout=5)
                    if r.status == 200:
                        posted.append(i)
                        break
                    errors.append(r)
                except OSError as e:
                    errors.append(e)
                time.sleep(0.05)
            time.sleep(0.03)

    writer = threading.Thread(target=say_all)
    writer.start()
    time.sleep(0.8)
    try:
        peers.restart("prosody", downtime=2)
    finally:
        writer.join(120)
    assert len(posted) == total, f"the webhook refused messages: {errors[:5]}"
    wait_health(f, 200, state="connected", timeout=60)
    assert metric(f, "ferry_component_reconnects_total") >= 1
    alice = xmpp("alice")
    bob = f"bob@{domain}"
    deadline = time.monotonic() + 60
    seen = set()
    while len(seen) < total and time.monotonic() < deadline:
        for el in alice.received(message(frm=bob)):
            body = text(el, "body") or ""
            if body.startswith("m") and body[1:].isdigit():
                seen.add(int(body[1:]))
        time.sleep(0.3)
    missing = sorted(set(range(total)) - seen)
    assert not missing, f"{len(missing)} of {total} messages lost across the Prosody restart: {missing[:20]}"
    got = [text(el, "body") for el in alice.received(message(frm=bob))]
    print(f"prosody restart: {total} messages, {len(got) - total} duplicates, "
          f"outbox now {f.health()['bridges']['test']['outbox']}")
    assert f.stop() == 0


def test_a_restarted_ferry_reads_what_it_wrote(ferry_factory, xmpp):
    """Registrations (with their sealed credentials) survive a restart, and
    `ferry users` lists them from the database."""
    from helpers import register, wait_logged_in

    f = ferry_factory()
    domain = f.config.domain("test")
    alice = xmpp("alice")
    register(alice, domain)
    assert f.stop() == 0
    m = alice.position()
    f.start()
    users = f.run("users", "--config", str(f.config_path))
    assert users.returncode == 0, users.stderr
    assert f"test ({domain}): " in users.stdout, users.stdout
    assert "alice@localhost\talice\tregistered " in users.stdout, users.stdout
    assert "alicepw" not in users.stdout
    # The account, decrypted after the restart, logs the session in again.
    wait_logged_in(alice, domain, since=m, timeout=20)
    db = f.config.stored_bytes()
    assert b"alicepw" not in db
