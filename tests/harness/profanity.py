"""Profanity, the terminal XMPP client, driven in tmux: what a user types
(send-keys) and what the terminal shows (capture-pane). For the tests that
need a real client other than slixmpp to prove a form can be filled in.

    with Profanity(tmp_path) as p:
        p.connect("carol@localhost", "carolpw", "127.0.0.1", 15222)
        p.type("/cmd exec jabber:iq:register test.localhost")
        p.wait_for(r"\\[field1\\] User name")

Profanity's own files (config, logs) live in a directory of their own
(HOME is pointed there); its tmux server has a socket of its own, killed
on exit. Debian packages: profanity, tmux (tests/run.sh installs them)."""
import re
import shutil
import subprocess
import time
from pathlib import Path


class ProfanityError(AssertionError):
    pass


class Profanity:
    def __init__(self, workdir: Path, width=220, height=60):
        for tool in ("profanity", "tmux"):
            if shutil.which(tool) is None:
                raise ProfanityError(f"{tool} is not installed (apt-get install profanity tmux; "
                                     "tests/run.sh installs them)")
        self.home = Path(workdir) / "profanity-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.socket = str(Path(workdir) / "tmux.sock")
        self.size = (width, height)

    def _tmux(self, *args, check=True):
        return subprocess.run(["tmux", "-S", self.socket, *args], check=check,
                              capture_output=True, text=True, timeout=10)

    def start(self):
        env = (f"env HOME={self.home} XDG_CONFIG_HOME={self.home}/.config "
               f"XDG_DATA_HOME={self.home}/.local/share TERM=xterm-256color LANG=C.UTF-8")
        self._tmux("new-session", "-d", "-s", "prof", "-x", str(self.size[0]), "-y", str(self.size[1]),
                   f"{env} profanity")
        self.wait_for(r"\[\d\d:\d\d\]", what="profanity's status bar")
        return self

    def stop(self):
        self._tmux("kill-server", check=False)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def type(self, text: str):
        """Types a line and presses Enter."""
        self._tmux("send-keys", "-t", "prof", "-l", text)
        self._tmux("send-keys", "-t", "prof", "Enter")

    def screen(self) -> str:
        """The current window, with its scrollback."""
        return self._tmux("capture-pane", "-p", "-J", "-S", "-500", "-t", "prof").stdout

    def wait_for(self, pattern, timeout=20, what=None) -> re.Match:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            screen = self.screen()
            m = rx.search(screen)
            if m:
                return m
            if time.monotonic() > deadline:
                shown = "\n".join(line for line in screen.splitlines() if line.strip())
                raise ProfanityError(f"profanity never showed {what or pattern!r}; the screen:\n{shown}")
            time.sleep(0.2)

    def connect(self, jid, password, host, port):
        self.type(f"/connect {jid} server {host} port {port} tls disable")
        self.wait_for(r"[Pp]assword", what="the password prompt")
        self.type(password)
        self.wait_for(re.escape(jid) + r"/\S+ ", what=f"{jid} connected")
