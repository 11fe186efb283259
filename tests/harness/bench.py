"""What the benchmark scripts share (tests/*/bench_*.py): the RSS of a
process and its two parts, percentiles, a one-line report of latency
samples, and when a stanza arrived. Benchmarks print figures; they never
assert timings."""
import statistics
import time


def _status(pid) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[key] = int(value.split()[0])
    return out


def rss_kib(pid) -> int:
    """Resident set size of `pid`, in KiB."""
    return _status(pid).get("VmRSS", 0)


def rss_split(pid) -> str:
    """VmRSS's two halves: private memory (RssAnon: heap, stacks) and mapped
    files, mostly ferry's own code pages (RssFile: shared with the page
    cache and every process running the binary, reclaimable)."""
    s = _status(pid)
    return (f"anonymous {s.get('RssAnon', 0) / 1024:.1f} MiB, "
            f"files {(s.get('RssFile', 0) + s.get('RssShmem', 0)) / 1024:.1f} MiB")


def pct(values, p):
    """The p-th percentile (nearest rank) of `values`."""
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def report(name, samples_s):
    """Prints median, p95, min and max of samples given in seconds."""
    ms = [s * 1000 for s in samples_s]
    print(f"\n[bench] {name}: n={len(ms)} median={statistics.median(ms):.2f} ms "
          f"p95={pct(ms, 95):.2f} ms min={min(ms):.2f} ms max={max(ms):.2f} ms", flush=True)


def arrival(client, stanza):
    """When `stanza` arrived at `client` (the harness records every arrival
    time), or now if it is not found."""
    for i in range(len(client.stanzas) - 1, -1, -1):
        if client.stanzas[i] is stanza:
            return client.times[i]
    return time.monotonic()
