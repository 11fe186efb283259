"""Smoke tests of the ferry binary with the test bridge: it starts, its
component connects to Prosody, the gateway answers service discovery, and
it stops cleanly. The detailed behaviour is tested in tests/core/."""
import re

from harness.stanza import NS


def test_version_and_help(ferry_bin):
    import subprocess
    v = subprocess.run([str(ferry_bin), "--version"], capture_output=True, text=True, timeout=10)
    assert v.returncode == 0
    assert re.search(r"\d+\.\d+\.\d+", v.stdout)
    h = subprocess.run([str(ferry_bin), "--help"], capture_output=True, text=True, timeout=10)
    assert h.returncode == 0 and "--config" in h.stdout


def test_check_accepts_the_generated_config(ferry_factory):
    f = ferry_factory(start=False)
    r = f.check()
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_names_an_unknown_key_of_the_test_section(ferry_factory):
    f = ferry_factory(bridges={"test": {"teleport": True}}, start=False)
    r = f.check()
    assert r.returncode != 0
    assert "teleport" in r.stdout + r.stderr


def test_the_component_connects_and_health_says_so(ferry_factory):
    f = ferry_factory()
    health = f.health()
    assert health["bridges"]["test"]["state"] == "connected", health


def test_the_gateway_answers_disco_info(ferry_factory, alice):
    f = ferry_factory()
    info = alice.disco_info(f.config.domain("test"))
    assert info.has_identity("gateway", "test"), info
    for feature in (NS["register"], NS["gateway"], NS["commands"], "jid\\20escaping"):
        assert feature in info.features, info


def test_sigterm_stops_it_with_exit_code_zero(ferry_factory):
    f = ferry_factory()
    assert f.stop() == 0
