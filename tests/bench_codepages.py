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
"""
import bisect
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


def main():
    pid = int(sys.argv[1])
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
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


if __name__ == "__main__":
    main()
