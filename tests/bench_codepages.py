"""Which code of a running binary is resident: the file-backed part of its
RSS, attributed to crates. Reads /proc/PID/maps and /proc/PID/pagemap
(present bit of every page of the binary's mappings) and the binary's
symbol table (`nm`), and sums resident bytes of the text segment per crate
(the first path segment of each demangled symbol), the read-only data and
the rest per mapping.

    python3 tests/bench_codepages.py PID [TOP]

Run as root (pagemap needs it for other users' processes). The kernel maps
file pages around each fault (fault-around, 64 KiB by default), so the
attribution is by 16-page windows: it says where code is touched, not how
much of each function is.

Idle mode: starts each binary in turn against the running peers (Prosody;
`[irc]` and `[matrix]` configured, `[http]` listening, no user, log level
info), reads its RSS and the two halves at each of AT seconds after start,
prints the page map at the last one, stops it; ROUNDS times, alternating,
so that every build sees the same page cache and load:

    export PEERS_DIR=/tmp/ferry-bench-peers; PEERS="xmpp" contrib/peers/start-peers.sh $PEERS_DIR
    python3 tests/bench_codepages.py idle before=/path/ferry after=/path/ferry \
        [--at 4,10] [--rounds 2] [--csv FILE] [--top 12]

A NAME ending in "+pageout" also asks the kernel to reclaim the process's
read-only file pages once, 5 s after start (process_madvise MADV_PAGEOUT,
root): what `src/codepages.rs` does from inside, simulated on a build
without it (close, not equal: PAGEOUT also drops the pages from the page
cache, so they come back by readahead).
"""
import bisect
import csv
import ctypes
import os
import time
import re
import struct
import subprocess
import sys
from collections import defaultdict

PAGE = 4096


def mappings(pid, binary):
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5] == binary:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((lo, hi, parts[1], int(parts[2], 16)))
    return out


def resident(pid, lo, hi):
    """Addresses of the present pages in [lo, hi)."""
    pages = []
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(lo // PAGE * 8)
        data = f.read((hi - lo) // PAGE * 8)
    for i in range(len(data) // 8):
        (entry,) = struct.unpack_from("<Q", data, i * 8)
        if entry >> 63:
            pages.append(lo + i * PAGE)
    return pages


def crate_of(name):
    name = name.strip()
    m = re.match(r"^<?(?:impl )?<?&?(?:mut )?(?:dyn )?([A-Za-z_][A-Za-z0-9_]*)(::|$| as )", name)
    if m:
        return m.group(1)
    return name.split("(")[0][:40] or "?"


def symbols(binary):
    """[(address, size, crate)] of text symbols, sorted by address."""
    out = subprocess.run(["nm", "-C", "--defined-only", "-S", "-n", binary], capture_output=True,
                         text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[2] in "tTwW":
            syms.append((int(parts[0], 16), int(parts[1], 16), crate_of(parts[3])))
    return syms


def sections(binary):
    """[(address, size, name)] of the binary's allocated sections."""
    out = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True, check=True).stdout
    secs = []
    for line in out.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\S+\s+(\S*A\S*)", line)
        if m and int(m.group(2), 16):
            secs.append((int(m.group(2), 16), int(m.group(3), 16), m.group(1)))
    return sorted(secs)


def page_map(pid, top):
    binary = subprocess.run(["readlink", f"/proc/{pid}/exe"], capture_output=True, text=True).stdout.strip()
    maps = mappings(pid, binary)
    if not maps:
        sys.exit(f"no mapping of {binary} in {pid}")
    base = min(lo - off for lo, _, _, off in maps)
    syms = symbols(binary)
    addrs = [s[0] for s in syms]
    secs = sections(binary)
    per_crate = defaultdict(int)
    per_section = defaultdict(int)
    total = defaultdict(int)
    for lo, hi, perms, off in maps:
        pages = resident(pid, lo, hi)
        total[perms] += len(pages) * PAGE
        for p in pages:
            a = p - base
            for s_lo, size, name in secs:
                ov = min(a + PAGE, s_lo + size) - max(a, s_lo)
                if ov > 0:
                    per_section[name] += ov
        if "x" not in perms:
            continue
        for p in pages:
            # bytes of this page per crate, by the symbols overlapping it
            a, b = p - base, p - base + PAGE
            i = max(0, bisect.bisect_right(addrs, a) - 1)
            covered = 0
            while i < len(syms) and syms[i][0] < b:
                s_lo, size, crate = syms[i]
                ov = min(b, s_lo + size) - max(a, s_lo)
                if ov > 0:
                    per_crate[crate] += ov
                    covered += ov
                i += 1
            if covered < PAGE:
                per_crate["(between symbols)"] += PAGE - covered
    print(f"{binary}, pid {pid}: resident pages of its mappings")
    for perms, b in sorted(total.items()):
        print(f"  {perms}: {b / 1024:8.0f} KiB")
    print("by section:")
    for name, b in sorted(per_section.items(), key=lambda kv: -kv[1]):
        if b >= 16 * 1024:
            print(f"  {b / 1024:8.0f} KiB  {name}")
    print(f"text by crate (top {top}):")
    for crate, b in sorted(per_crate.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {b / 1024:8.0f} KiB  {crate}")


def private_map(pid, least_kib=32):
    """The private (anonymous) resident memory by mapping: the heap, each
    malloc arena, thread stacks, relocated data of each object."""
    print("private memory by mapping:")
    head, rows = None, []
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if parts and "-" in parts[0] and len(parts) >= 5 and ":" in parts[3]:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                head = (parts[1], (hi - lo) // 1024, parts[5] if len(parts) > 5 else "[anon]")
            elif parts and parts[0] == "Anonymous:" and head:
                kib = int(parts[1])
                if kib >= least_kib:
                    rows.append((kib, *head))
    for kib, perms, size, what in sorted(rows, reverse=True):
        print(f"  {kib:6d} KiB of {size:8d} KiB {perms} {what}")


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0])
    return out


def pageout(pid):
    """Asks the kernel to reclaim every read-only file mapping of `pid`
    (MADV_PAGEOUT through process_madvise); the bytes asked for."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = libc.syscall(434, pid, 0)  # pidfd_open
    if pidfd < 0:
        raise OSError(ctypes.get_errno(), "pidfd_open")

    class Iovec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    asked = 0
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 6 or "w" in parts[1] or not parts[5].startswith("/"):
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            iov = Iovec(lo, hi - lo)
            if libc.syscall(440, pidfd, ctypes.byref(iov), 1, 21, 0) >= 0:  # process_madvise, MADV_PAGEOUT
                asked += hi - lo
    os.close(pidfd)
    return asked


def idle(argv):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import tempfile
    from pathlib import Path

    from harness.ferry import Ferry, FerryConfig
    from harness.peers import Peers

    builds, at, rounds, csv_path, top = [], [4.0, 10.0], 2, None, 12
    args = iter(argv)
    for a in args:
        if a == "--at":
            at = [float(x) for x in next(args).split(",")]
        elif a == "--rounds":
            rounds = int(next(args))
        elif a == "--csv":
            csv_path = next(args)
        elif a == "--top":
            top = int(next(args))
        else:
            name, _, binary = a.partition("=")
            builds.append((name, binary))
    peers = Peers.load()
    http_port = int(os.environ.get("FERRY_HTTP_PORT", "15780"))
    rows = []
    for r in range(1, rounds + 1):
        for name, binary in builds:
            with tempfile.TemporaryDirectory() as tmp:
                cfg = FerryConfig(peers, Path(tmp) / "data", http_port=http_port, log_level="info")
                cfg.bridge("irc", ports=[peers.irc_port or 6667], tls_ports=[])
                cfg.bridge("matrix", allow_insecure_http=True)
                # As an operator runs it: no RUST_BACKTRACE (the harness sets it
                # for the tests; with it every error captures a backtrace).
                f = Ferry(binary, cfg, Path(tmp) / "run", name=name, env={"RUST_BACKTRACE": "0"})
                t0 = time.monotonic()
                f.start(timeout=60)
                pid = f.pid
                paged = None
                for t in at:
                    if name.endswith("+pageout") and paged is None and t > 5.0:
                        time.sleep(max(0.0, t0 + 5.0 - time.monotonic()))
                        paged = pageout(pid)
                    time.sleep(max(0.0, t0 + t - time.monotonic()))
                    s = status(pid)
                    load = os.getloadavg()[0]
                    row = {"round": r, "build": name, "seconds": t, "rss_kib": s["VmRSS"],
                           "anon_kib": s["RssAnon"], "file_kib": s["RssFile"] + s.get("RssShmem", 0),
                           "load": f"{load:.1f}"}
                    rows.append(row)
                    print(f"[idle] round {r} {name:>16} {t:5.1f} s: RSS {s['VmRSS'] / 1024:6.1f} MiB, "
                          f"anon {s['RssAnon'] / 1024:5.1f}, files {row['file_kib'] / 1024:5.1f} (load {load:.1f})",
                          flush=True)
                if r == rounds:
                    page_map(pid, top)
                    private_map(pid)
                f.stop()
                noisy = [line for line in f.log().splitlines() if " WARN " in line or " ERROR " in line
                         or "panicked" in line]
                for line in noisy[:3]:
                    print(f"[idle]   log: {line[:160]}")
    if csv_path:
        with open(csv_path, "w", newline="") as out:
            w = csv.DictWriter(out, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "idle":
        idle(sys.argv[2:])
        return
    page_map(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 25)


if __name__ == "__main__":
    main()
