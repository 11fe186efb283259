"""Fixtures of the forms suite: what real clients make of Ferry's data
forms. It uses every server (XMPP, IRC, Matrix): the IRC and Matrix
helpers come from their suites."""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for suite in ("irc", "matrix"):
    sys.path.insert(0, str(HERE.parent / suite))
