"""What the benchmark scripts share (tests/*/bench_*.py): the RSS of a
process and its two parts, percentiles, a one-line report of latency
samples, and when a stanza arrived. Benchmarks print figures; they never
assert timings. CsvLog writes them as CSV for tests/bench_plot.py."""
import csv
import datetime
import os
import statistics
import time
from pathlib import Path


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


def status(pid) -> dict:
    """VmRSS, RssAnon, RssFile and RssShmem of `pid` in KiB (0 when gone)."""
    try:
        return _status(pid)
    except OSError:
        return {}


def tree_pids(pid) -> list:
    """`pid` and its descendants (matridge runs helper processes)."""
    out = [pid]
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except OSError:
        children = []
    for c in children:
        out.extend(tree_pids(int(c)))
    return out


def memory_row(pids) -> dict:
    """The CSV columns rss_kib, anon_kib, file_kib summed over `pids`."""
    s = [status(p) for p in pids]
    return {"rss_kib": sum(x.get("VmRSS", 0) for x in s),
            "anon_kib": sum(x.get("RssAnon", 0) for x in s),
            "file_kib": sum(x.get("RssFile", 0) + x.get("RssShmem", 0) for x in s)}


class CsvLog:
    """Figures as CSV rows, one file per run: $BENCH_OUT/<name>-<time>.csv
    (BENCH_OUT defaults to /tmp/ferry-bench); each row is printed too.
    tests/bench_plot.py draws them. Columns absent from a row stay empty;
    every row gets the run id and the load average."""

    def __init__(self, name, fields):
        out = Path(os.environ.get("BENCH_OUT", "/tmp/ferry-bench"))
        out.mkdir(parents=True, exist_ok=True)
        self.run = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.fields = ["run", "gateway", "scenario", "users"] + [f for f in fields if f not in (
            "run", "gateway", "scenario", "users", "loadavg")] + ["loadavg"]
        self.path = out / f"{name}-{self.run}.csv"
        with open(self.path, "w", newline="") as f:
            csv.DictWriter(f, self.fields).writeheader()
        print(f"\n[bench] figures go to {self.path}", flush=True)

    def row(self, **values):
        values.setdefault("loadavg", f"{os.getloadavg()[0]:.2f}")
        values["run"] = self.run
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields).writerow({k: values.get(k, "") for k in self.fields})
        print(f"[bench] {values.get('gateway')} {values.get('scenario')} users={values.get('users', '')}: "
              + ", ".join(f"{k}={v}" for k, v in values.items()
                          if k not in ("gateway", "scenario", "users", "run") and v != ""), flush=True)
