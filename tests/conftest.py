"""pytest configuration of Ferry's end-to-end tests: loads the harness
fixtures (tests/harness, documented in tests/README.md) and attaches the
log of every running ferry and the last stanzas of every XMPP client to the
report of a failed test."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
pytest.register_assert_rewrite("harness")

from harness import ferry as _ferry  # noqa: E402
from harness import fixtures as _fixtures  # noqa: E402
from harness.stanza import to_string  # noqa: E402

pytest_plugins = ["harness.fixtures"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    for f in list(_ferry.ACTIVE):
        state = "running" if f.running else f"exited {f.proc.returncode if f.proc else '-'}"
        rep.sections.append((f"{f.name} log ({state}, {f.log_path})", f.log_tail(300)))
    for c in list(_fixtures.ACTIVE_CLIENTS):
        last = c.stanzas[-40:]
        first = len(c.stanzas) - len(last)
        lines = [f"[{first + i}] {to_string(s)[:800]}" for i, s in enumerate(last)]
        rep.sections.append((f"stanzas received by {c.name} (last {len(last)} of {len(c.stanzas)})",
                             "\n".join(lines) or "(none)"))
