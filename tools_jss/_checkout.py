"""The scripts of tools_jss/ run tools/_checkout.py first, as those of tools/ do: this
checkout's code on sys.path before an editable install's, and Ctrl-C while importing in one
line."""

import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).resolve().parents[1] / "tools" / "_checkout.py"))
