"""The running peers, as described by the peers.env that
contrib/peers/start-peers.sh wrote (found through $PEERS_DIR, default
/tmp/ferry-peers), and control over them (restart one, stop, start).

    peers.c2s_port, peers.component_port, peers.domain ("localhost")
    peers.password("alice") -> "alicepw";  peers.jid("alice") -> "alice@localhost"
    peers.secret("test.localhost") -> its component secret
    peers.privileged / peers.unprivileged   component domains
    peers.irc_port, peers.ngircd_port, peers.matrix_url, peers.upload_jid
    peers.restart("prosody", downtime=2);  peers.stop("inspircd"); peers.start("inspircd")
"""
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PEER_SCRIPTS = REPO / "contrib" / "peers"


class PeersNotRunning(RuntimeError):
    pass


def _read_env(path: Path) -> dict:
    """The variables a shell gets from `source peers.env`."""
    out = subprocess.run(["bash", "-c", 'set -a; source "$1" >/dev/null; env -0', "_", str(path)],
                         capture_output=True, check=True)
    env = {}
    for item in out.stdout.split(b"\0"):
        if b"=" in item:
            k, v = item.split(b"=", 1)
            env[k.decode()] = v.decode()
    return env


class Peers:
    def __init__(self, env: dict):
        self.env = env
        self.dir = Path(env["PEERS_DIR"])
        self.running = env.get("PEERS_RUNNING", "").split()
        self.host = env.get("XMPP_HOST", "127.0.0.1")
        self.domain = env.get("XMPP_DOMAIN", "localhost")
        self.c2s_port = int(env.get("XMPP_C2S_PORT", 0) or 0)
        self.component_port = int(env.get("XMPP_COMPONENT_PORT", 0) or 0)
        self.server = env.get("XMPP_SERVER", "prosody")
        self.users = dict(u.split(":", 1) for u in env.get("XMPP_USERS", "").split())
        self.privileged = env.get("XMPP_PRIVILEGED_COMPONENTS", "").split()
        self.unprivileged = env.get("XMPP_UNPRIVILEGED_COMPONENTS", "").split()
        self.upload_jid = env.get("XMPP_UPLOAD_JID") or None
        self.muc = env.get("XMPP_MUC")
        self.irc_host = env.get("IRC_HOST", "127.0.0.1")
        self.irc_port = int(env.get("IRC_PORT", 0) or 0)
        self.ngircd_port = int(env.get("NGIRCD_PORT", 0) or 0)
        self.irc_oper = (env.get("IRC_OPER_NAME"), env.get("IRC_OPER_PASSWORD"))
        self.matrix_url = env.get("MATRIX_URL")
        self.matrix_port = int(env.get("MATRIX_PORT", 0) or 0)
        self.matrix_users = dict(u.split(":", 1) for u in env.get("MATRIX_USERS", "").split())
        self.ej_c2s_port = int(env.get("EJ_C2S_PORT", 0) or 0)
        self.ej_component_port = int(env.get("EJ_COMPONENT_PORT", 0) or 0)

    @classmethod
    def load(cls) -> "Peers":
        d = Path(os.environ.get("PEERS_DIR", "/tmp/ferry-peers"))
        f = d / "peers.env"
        if not f.is_file():
            raise PeersNotRunning(
                f"no {f}: the real servers are not running. Start them with "
                f"contrib/peers/start-peers.sh {d} (or run the whole suite with tests/run.sh)")
        return cls(_read_env(f))

    # -- accounts and components -------------------------------------------

    def jid(self, user: str) -> str:
        return f"{user}@{self.domain}"

    def password(self, user: str) -> str:
        return self.users[user]

    def secret(self, component: str) -> str:
        key = component.split(".", 1)[0].upper() + "_COMPONENT_SECRET"
        if key not in self.env:
            raise KeyError(f"no component {component} in peers.env ({key})")
        return self.env[key]

    def is_running(self, name: str) -> bool:
        """Whether start-peers.sh started it (it may be stopped by a test)."""
        return name in self.running

    def require(self, *names):
        """Raises PeersNotRunning if one of these peers was not started."""
        missing = [n for n in names if not self.is_running(n)]
        if missing:
            raise PeersNotRunning(f"{', '.join(missing)} not running (started: {', '.join(self.running) or 'none'}); "
                                  f"start them with PEERS=... contrib/peers/start-peers.sh {self.dir}")

    # -- control -----------------------------------------------------------

    def _peer(self, name: str, mode: str):
        r = subprocess.run([str(PEER_SCRIPTS / "restart-peer.sh"), str(self.dir), name, mode],
                           capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise RuntimeError(f"restart-peer.sh {name} {mode} failed:\n{r.stdout}{r.stderr}")
        return r.stdout

    def restart(self, name: str, downtime: float = 1.0):
        """Stops the peer, waits `downtime` seconds, starts it, waits until ready."""
        return self._peer(name, str(downtime))

    def stop(self, name: str):
        return self._peer(name, "stop")

    def start(self, name: str):
        """Starts a peer stopped with stop(); returns when it is ready."""
        return self._peer(name, "start")
