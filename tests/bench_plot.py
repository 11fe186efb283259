"""Draws the benchmarks' CSV files (tests/irc/bench_scale.py,
tests/matrix/bench_matrix.py, tests/matrix/bench_matridge.py) with gnuplot
(Debian's gnuplot-nox): RSS and latency against the number of users, one
line per gateway, as SVG and PNG.

    python3 tests/bench_plot.py OUTDIR FILE.csv...

Writes OUTDIR/irc-rss.{svg,png}, irc-p95.{svg,png} from the IRC rows
(scenario "scale" and "one-channel") and OUTDIR/matrix-rss.{svg,png} from
the Matrix rows (scenarios "sessions" and "sessions-idle"). Where a file holds several runs of
the same point, the last one is drawn.
"""
import csv
import subprocess
import sys
import tempfile
from pathlib import Path


def rows(files):
    out = []
    for f in files:
        with open(f, newline="") as fh:
            out.extend(csv.DictReader(fh))
    return out


def series(data, scenario, y, scale=1.0):
    """{gateway: [(users, y)]} for one scenario, the last value of each point."""
    pts = {}
    for r in data:
        if r.get("scenario") != scenario or not r.get(y) or "+" in r.get("gateway", "+"):
            continue  # "ferry+heaptrack": profiled runs are not figures
        pts.setdefault(r["gateway"], {})[int(r["users"])] = float(r[y]) * scale
    return {g: sorted(p.items()) for g, p in pts.items()}


def plot(out, name, title, xlabel, ylabel, lines, logy=False, key="top left"):
    """lines: [(label, [(x, y)])]; writes OUT/name.svg and .png."""
    lines = [(label, pts) for label, pts in lines if pts]
    if not lines:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        specs = []
        for i, (label, pts) in enumerate(lines):
            d = Path(tmp) / f"{i}.dat"
            d.write_text("".join(f"{x} {y}\n" for x, y in pts))
            specs.append(f"'{d}' using 1:2 with linespoints lw 2 pt 7 title '{label}'")
        body = (f"set title '{title}'\nset xlabel '{xlabel}'\nset ylabel '{ylabel}'\n"
                "set grid\nset xrange [0:*]\nset yrange [0:*]\n" + f"set key {key}\n" + ("set logscale y\nset yrange [*:*]\n" if logy else "")
                + "plot " + ", ".join(specs) + "\n")
        for term, ext in (("svg size 720,560 dynamic background rgb 'white'", "svg"),
                          ("pngcairo size 720,560", "png")):
            script = f"set terminal {term}\nset output '{out / (name + '.' + ext)}'\n" + body
            subprocess.run(["gnuplot"], input=script.encode(), check=True)
    return True


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    data = rows(sys.argv[2:])
    mib = 1 / 1024
    rss = []
    for g, pts in series(data, "scale", "rss_kib", mib).items():
        rss.append((f"{g}, channels of 100", pts))
    for g, pts in series(data, "one-channel", "rss_kib", mib).items():
        rss.append((f"{g}, one channel", pts))
    for g, pts in series(data, "one-channel", "late_rss_kib", mib).items():
        rss.append((f"{g}, one channel, 30 s later", pts))
    made = []
    if plot(out, "irc-rss", "IRC gateway RSS (every user has their own IRC connection)", "users", "RSS (MiB)", rss):
        made.append("irc-rss")
    p95 = [(f"{g}, round trip p95", pts) for g, pts in series(data, "scale", "rtt_p95_ms").items()]
    p95 += [(f"{g}, IRC to XMPP delivery p95", pts) for g, pts in series(data, "scale", "fanout_p95_ms").items()]
    p95 += [(f"{g}, round trip p95, idle gateway", pts) for g, pts in series(data, "rtt@20ms", "rtt_p95_ms").items()]
    p95 += [(f"{g}, round trip p95 at 10 msg/s", pts) for g, pts in series(data, "scale@10/s", "rtt_p95_ms").items()]
    p95 += [(f"{g}, IRC to XMPP delivery p95 at 10 msg/s", pts)
            for g, pts in series(data, "scale@10/s", "fanout_p95_ms").items()]
    if plot(out, "irc-p95", "IRC latency p95 (at 500 and 1,000 users: 100 channel messages/s in all)",
            "users (channels of 100)", "ms (log scale)", p95, logy=True, key="below"):
        made.append("irc-p95")
    mx = [(g, pts) for g, pts in series(data, "sessions", "rss_kib", mib).items()]
    mx += [(f"{g}, idle", pts) for g, pts in series(data, "sessions-idle", "rss_kib", mib).items()]
    if plot(out, "matrix-rss", "Matrix bridge RSS (logged-in, synced accounts)", "accounts", "RSS (MiB)", mx):
        made.append("matrix-rss")
    print("wrote " + ", ".join(f"{out}/{m}.svg/.png" for m in made) if made else "nothing to draw")


if __name__ == "__main__":
    main()
