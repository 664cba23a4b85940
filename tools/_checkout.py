"""Imported first by every script of tools/ and tools_jss/ when it runs as a script.

1. The checkout the script stands in comes first on sys.path. An editable install
   (`pip install -e .`, as requirements.txt does) maps `lib`, `tools` and `tools_jss` to the
   checkout it was made from, so without this `python tools/X.py` run from a second checkout
   would import the first checkout's code.
2. Ctrl-C while the imports are still loading (torch takes a second or two) exits with status
   130 and one line instead of a traceback; `tools.cli.run` hands Ctrl-C back to the tool once
   its work starts.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if sys.path[:1] != [ROOT]:
    sys.path.insert(0, ROOT)


def _interrupted_while_loading(signum, frame) -> None:
    print("interrupted", file=sys.stderr, flush=True)
    raise SystemExit(130)


signal.signal(signal.SIGINT, _interrupted_while_loading)
