"""A `ferry` process under test: its generated configuration, its log, its
HTTP listener.

    cfg = FerryConfig(peers, data_dir, http_port=15780)
    cfg.bridge("test", always_on=False)              # [test] enabled, domain, secret + keys
    cfg.set("limits", "max_message_bytes", 4096)
    f = Ferry(binary, cfg, workdir).start()          # waits for /health = 200
    f.http("POST", "/bridge/test/say?to=alice&from=bob", b"hi")
    f.stop()                                         # SIGTERM, returns the exit code
    f.log()                                          # everything it printed

Tests normally get these from the `ferry_factory` fixture.

With FERRY_TEST_STORAGE_URL set (postgres://USER@HOST:PORT/DB of the
`postgres` peer), every config gets a fresh PostgreSQL database of its own
as `[storage] url`: the same suites then run against the PostgreSQL backend
(tests/run.sh core-pg). `stored_bytes()` is what the database holds, for
checks that a secret is not in it in the clear, whichever the backend.
"""
import itertools
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

# instances alive in the current test (their logs are attached to failures)
ACTIVE = []


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a TOML basic string is JSON-compatible
    if isinstance(v, Path):
        return json.dumps(str(v))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(sections: dict) -> str:
    """Top-level keys are sections; values inside are scalars, lists or
    inline tables."""
    out = []
    for name, keys in sections.items():
        out.append(f"[{name}]")
        for k, v in keys.items():
            if v is None:
                continue
            out.append(f"{k} = {toml_value(v)}")
        out.append("")
    return "\n".join(out)


_databases = itertools.count(1)


def _psql(url, *args):
    """Runs psql against the server of `url` (its maintenance database)."""
    m = re.match(r"postgres(?:ql)?://([^@/]+)@([^:/]+):(\d+)/(\w+)", url)
    if not m:
        raise ValueError(f"FERRY_TEST_STORAGE_URL: expected postgres://USER@HOST:PORT/DB, got {url!r}")
    user, host, port, _db = m.groups()
    return subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", port,
                           "-U", user, *args], check=True, capture_output=True, text=True).stdout


def database_name(url):
    """The database a postgres:// URL names (without its ?query)."""
    return url.partition("?")[0].rsplit("/", 1)[1]


def fresh_database(base_url):
    """Creates an empty database next to the one of `base_url`; its URL."""
    name = f"t{os.getpid()}_{next(_databases)}"
    _psql(base_url, "-d", "postgres", "-c", f'CREATE DATABASE "{name}"')
    base, _, query = base_url.partition("?")  # keeps sslmode=… and the like
    return base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")


class FerryConfig:
    """A ferry.toml for the running peers."""

    def __init__(self, peers, data_dir, http_port=None, log_level="debug"):
        self.peers = peers
        self.data_dir = Path(data_dir)
        self.sections = {
            "xmpp": {"host": peers.host, "port": peers.component_port},
            "storage": {"data_dir": str(data_dir)},
            "log": {"level": log_level},
        }
        base = os.environ.get("FERRY_TEST_STORAGE_URL")
        if base:
            self.sections["storage"]["url"] = fresh_database(base)
        if http_port:
            self.sections["http"] = {"listen": f"127.0.0.1:{http_port}",
                                     "public_url": f"http://127.0.0.1:{http_port}"}
        self.bridges = []

    @property
    def http_port(self):
        listen = self.sections.get("http", {}).get("listen")
        return int(listen.rsplit(":", 1)[1]) if listen else None

    def bridge(self, name, domain=None, secret=None, enabled=True, **keys):
        """Adds a bridge section: domain defaults to NAME.localhost, the secret
        to that component's secret in peers.env; `keys` are the bridge's own."""
        domain = domain or f"{name}.localhost"
        section = {"enabled": enabled, "domain": domain,
                   "secret": secret if secret is not None else self.peers.secret(domain)}
        section.update(keys)
        self.sections[name] = section
        if name not in self.bridges:
            self.bridges.append(name)
        return self

    def set(self, section, key, value):
        self.sections.setdefault(section, {})[key] = value
        return self

    def update(self, section, **keys):
        self.sections.setdefault(section, {}).update(keys)
        return self

    @property
    def storage_url(self):
        """The PostgreSQL URL, or None with SQLite files."""
        return self.sections["storage"].get("url")

    def stored_bytes(self, bridge="test") -> bytes:
        """Everything stored for a bridge: its SQLite file, or the secrets
        and values of its PostgreSQL schema."""
        url = self.storage_url
        if not url:
            return (self.data_dir / f"{bridge}.db").read_bytes()
        schema = f"ferry_{bridge}"
        out = _psql(url, "-d", database_name(url), "-c",
                    f"SELECT encode(secret, 'hex') FROM {schema}.users "
                    f"UNION ALL SELECT encode(value, 'hex') FROM {schema}.kv")
        return b"".join(bytes.fromhex(line) for line in out.split())

    def domain(self, bridge="test") -> str:
        return self.sections[bridge]["domain"]

    def text(self) -> str:
        return to_toml(self.sections)

    def write(self, path: Path) -> Path:
        path.write_text(self.text())
        return path


class HttpResponse:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"HttpResponse({self.status}, {self.text[:200]!r})"


class FerryFailed(AssertionError):
    pass


class Ferry:
    def __init__(self, binary, config: FerryConfig, workdir: Path, name="ferry", env=None):
        self.binary = str(binary)
        self.config = config
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.config_path = self.workdir / "ferry.toml"
        self.log_path = self.workdir / "ferry.log"
        self.extra_env = dict(env or {})
        self.proc = None
        self.starts = 0

    # -- process -----------------------------------------------------------

    def start(self, wait=True, timeout=30):
        """Writes the config and starts ferry; with `wait`, returns once
        /health answers 200 (every component connected) or, without HTTP,
        once it ran for half a second."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.config.write(self.config_path)
        env = dict(os.environ)
        env.update({"RUST_BACKTRACE": "1", "NO_COLOR": "1"})
        env.update(self.extra_env)
        log = open(self.log_path, "ab")
        log.write(f"\n===== start #{self.starts + 1} of {self.name} at {time.strftime('%H:%M:%S')} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen([self.binary, "--config", str(self.config_path)], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.workdir, env=env, start_new_session=True)
        log.close()
        self.starts += 1
        pidfile = os.environ.get("FERRY_TEST_PIDFILE")
        if pidfile:  # tests/run.sh kills what a killed pytest left behind
            with open(pidfile, "a") as pf:
                pf.write(f"{self.proc.pid}\n")
        if self not in ACTIVE:
            ACTIVE.append(self)
        if wait:
            self.wait_ready(timeout)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if not self.running:
                raise FerryFailed(f"{self.name} exited with {self.proc.returncode} while starting:\n{self.log_tail(80)}")
            if self.config.http_port is None:
                time.sleep(0.5)
                if self.running:
                    return self
                continue
            try:
                r = self.http("GET", "/health", timeout=2)
                if r.status == 200:
                    return self
                last = r
            except OSError as e:
                last = e
            time.sleep(0.1)
        raise FerryFailed(f"{self.name} not ready within {timeout} s (last /health: {last!r}):\n{self.log_tail(80)}")

    def stop(self, timeout=20, sig=signal.SIGTERM) -> int:
        """Signals ferry (SIGTERM) and waits; SIGKILL after `timeout` (and
        then raises). Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise FerryFailed(f"{self.name} did not exit within {timeout} s of {sig!r}:\n{self.log_tail(60)}")
        return self.proc.returncode

    def kill(self):
        """SIGKILL (a crash, as far as ferry is concerned)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)

    def restart(self, timeout=30):
        self.stop()
        return self.start(timeout=timeout)

    # -- log ----------------------------------------------------------------

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=200) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_for_log(self, pattern, timeout=10, since=0):
        """Waits until the log (from character offset `since`) matches the
        regex; returns the re.Match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log(), since)
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no log line matching {pattern!r} within {timeout} s:\n"
                                     f"{self.log_tail(60)}")
            time.sleep(0.1)

    # -- HTTP ---------------------------------------------------------------

    def url(self, path: str) -> str:
        if self.config.http_port is None:
            raise RuntimeError("this ferry has no [http] listen")
        return f"http://127.0.0.1:{self.config.http_port}{path}"

    def http(self, method, path, body=b"", headers=None, timeout=10) -> HttpResponse:
        """An HTTP request to ferry's listener; any status is returned."""
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(self.url(path), data=data if method not in ("GET", "HEAD") else None,
                                     method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return HttpResponse(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as e:
            return HttpResponse(e.code, dict(e.headers), e.read())

    def health(self) -> dict:
        return self.http("GET", "/health").json()

    def run(self, *args, timeout=30) -> subprocess.CompletedProcess:
        """Runs the ferry binary with other arguments (`check`, `--version` …)."""
        return subprocess.run([self.binary, *args], capture_output=True, text=True, timeout=timeout,
                              cwd=self.workdir)

    def check(self) -> subprocess.CompletedProcess:
        """`ferry check --config` on the current configuration."""
        self.config.write(self.config_path)
        return self.run("check", "--config", str(self.config_path))
