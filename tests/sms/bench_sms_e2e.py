"""Figures of the SMS bridge end to end, printed (never asserted): run on
demand with

    pytest tests/sms/bench_sms_e2e.py -s        # the sms peers running

- incoming via SMPP: the SMSC's deliver_sm until ferry acknowledged it
  (the text stored by the core), and until the XMPP client has it
- outgoing: XMPP messages to the SMSC's submit_sm (texts/s), and the
  receipts back
"""
import time

from harness.bench import arrival, report
from harness.stanza import has, message

from sms_helpers import DOMAIN, assign, phone, smpp_section, smsc, smsc_submitted, wait_until

N = 100


def test_bench_sms_through_ferry(ferry_factory, xmpp, peers):
    f = ferry_factory(bridges={"sms": smpp_section(peers, rate_limit_per_minute=0)}, log_level="info")
    f.wait_for_log(r"SMPP: bound as transceiver", timeout=20)
    mine = phone()
    assert assign(xmpp("admin"), "alice@localhost", mine).status == "completed"
    alice = xmpp("alice")
    m = alice.mark()
    alice.register(DOMAIN, {"region": "US"})
    alice.wait_for(message(frm=DOMAIN, body_contains=mine), since=m, timeout=15)

    acked, seen = [], []
    frm = phone()
    for i in range(N):
        m = alice.position()
        t0 = time.monotonic()
        r = smsc(peers, "/mo", {"from": frm, "to": mine, "text": f"bench {i}"})
        acked.append(r["acked"] - r["t"])
        st = alice.wait_for(message(frm=f"{frm}@{DOMAIN}", body=f"bench {i}"), since=m, timeout=10)
        seen.append(arrival(alice, st) - t0)
    report("incoming SMPP deliver_sm -> acknowledged (stored)", acked)
    report("incoming SMPP deliver_sm -> XMPP client", seen)

    to = [phone() for _ in range(N)]
    m = alice.mark()
    t0 = time.monotonic()
    ids = [alice.send_message(f"{n}@{DOMAIN}", f"out {i}", extra="<request xmlns='urn:xmpp:receipts'/>")
           for i, n in enumerate(to)]
    wait_until(lambda: all(smsc_submitted(peers, n) for n in to), timeout=60, interval=0.05,
               what="every text at the SMSC")
    t_sent = time.monotonic() - t0
    for i in ids:
        alice.wait_for(has("receipts:received", id=i), since=m, timeout=30)
    t_rcpt = time.monotonic() - t0
    print(f"\n[bench] outgoing: {N} XMPP messages -> submit_sm in {t_sent:.2f} s ({N / t_sent:.0f} texts/s); "
          f"every receipt back after {t_rcpt:.2f} s", flush=True)
