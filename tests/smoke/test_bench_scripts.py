"""The benchmark scripts are not part of the suite (they take minutes and
print figures); this only checks that they still import and that the load
generator's stanza reader splits a stream as the benchmarks expect."""
import importlib.util
from pathlib import Path

from harness.loadgen import Reader

TESTS = Path(__file__).resolve().parents[1]


def test_bench_scripts_import():
    import sys
    names = sorted(TESTS.glob("*/bench_*.py")) + sorted(TESTS.glob("bench_*.py"))
    assert len(names) >= 8, names
    # Every suite's own helpers first: some benchmarks use another suite's
    # (the cluster's uses the IRC suite's), which its conftest would add.
    for suite in sorted({path.parent for path in names}):
        sys.path.insert(0, str(suite))
    for path in names:
        spec = importlib.util.spec_from_file_location(f"bench_check_{path.stem}", path)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_load_generator_reader_splits_stanzas():
    r = Reader()
    got = r.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
                 b"<presence from='#c%s@gw/u1'><x xmlns='http://jabber.org/protocol/muc#user'>"
                 b"<item role='participant'/><status code='110'/></x></presence><message from='#c%s@gw/bot' ty")
    assert [(s.name, s.attrs["from"], s.codes) for s in got] == [("presence", "#c%s@gw/u1", ["110"])]
    got = r.feed(b"pe='groupchat'><body>L 1 &amp; 2</body><stanza-id xmlns='urn:xmpp:sid:0' id='x'/></message>")
    assert [(s.name, s.attrs["type"], s.body, s.children) for s in got] == [
        ("message", "groupchat", "L 1 & 2", ["body", "stanza-id"])]
