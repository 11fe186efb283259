"""contrib/demo.sh, as a new user runs it: it starts the servers and ferry,
and however it ends it stops everything it started. Here it ends the way
it did in the field: Ctrl-C on `contrib/demo.sh | tee log`, which ends tee
as well (a cleanup that writes to the closed pipe dies before stopping
anything). The demo runs on ports of its own (free ones), IRC only."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PORTS = ["XMPP_C2S_PORT", "XMPP_COMPONENT_PORT", "XMPP_HTTP_PORT", "IRC_PORT", "IRC_TLS_PORT",
         "NGIRCD_PORT", "DEMO_HTTP_PORT"]


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout} s")
        time.sleep(0.2)


@pytest.fixture
def demo_dir():
    # The servers drop privileges (InspIRCd runs as irc): their state must
    # be reachable, unlike pytest's private temporary directories.
    d = Path(tempfile.mkdtemp(prefix="ferry-demo-test-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_the_demo_stops_everything_when_its_pipeline_is_interrupted(demo_dir):
    ports = dict(zip(PORTS, free_ports(len(PORTS))))
    env = dict(os.environ, DEMO_DIR=str(demo_dir), DEMO_BRIDGES="irc", WITH_EJABBERD="0",
               **{k: str(v) for k, v in ports.items()})
    out, err = demo_dir / "demo.log", demo_dir / "demo.err"
    with open(err, "wb") as errf:
        demo = subprocess.Popen(["bash", "-c", f"'{REPO}/contrib/demo.sh' | tee '{out}'"], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf,
                                start_new_session=True)
    pids_dir = demo_dir / "peers" / "pids"
    try:
        def running():
            if demo.poll() is not None:
                raise AssertionError(f"the demo exited with {demo.returncode}:\n{err.read_text()}")
            return out.exists() and "Ferry is running" in out.read_text(errors="replace")
        wait_until(running, 240, f"running (demo log: {out}, {err})")
        servers = {f.stem: int(f.read_text().split()[0]) for f in pids_dir.glob("*.pid")}
        assert {"prosody", "inspircd", "ngircd"} <= set(servers), servers
        assert all(alive(pid) for pid in servers.values()), servers
        assert listening(ports["DEMO_HTTP_PORT"]), "ferry's HTTP listener"
        # Ctrl-C: SIGINT to the whole foreground pipeline (bash, demo.sh,
        # tee, ferry, …); the servers run in sessions of their own.
        os.killpg(demo.pid, signal.SIGINT)
        demo.wait(60)
        wait_until(lambda: not any(alive(pid) for pid in servers.values()), 30, "every server stopped")
        for name, port in ports.items():
            assert not listening(port), f"{name} {port} still open"
        assert "stopped; logs and data are in" in err.read_text(errors="replace")
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
        # whatever the demo left running (by the pids it recorded)
        subprocess.run([str(REPO / "contrib/peers/stop-peers.sh"), str(demo_dir / "peers")],
                       capture_output=True, timeout=60)
