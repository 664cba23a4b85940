"""Every script of tools/ and tools_jss/, run as a user runs it: --help, a bad argument, Ctrl-C
while it is still importing, and the checkout it imports from."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.tools.conftest import REPO

SCRIPTS = sorted(
    str(p.relative_to(REPO))
    for folder in ("tools", "tools_jss")
    for p in (REPO / folder).glob("*.py")
    if p.name not in ("__init__.py", "cli.py", "_checkout.py")
)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_the_walk_finds_every_script():
    assert {"tools/predict.py", "tools/demo.py", "tools/gpu_smoke.py",
            "tools_jss/json2lableImg_jss.py", "tools_jss/make_lists.py"} <= set(SCRIPTS)
    for script in SCRIPTS:  # each one loads tools/_checkout.py first when run as a script
        assert "import _checkout" in (REPO / script).read_text(), script


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_and_a_bad_argument(script):
    run = subprocess.run([sys.executable, script, "--help"], cwd=REPO, env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.startswith("usage:"), run.stderr[-2000:]
    bad = subprocess.run([sys.executable, script, "--no-such-option"], cwd=REPO, env=ENV,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    # argparse's usage and one error line (a missing required option may be named first)
    assert bad.stderr.splitlines()[-1].startswith(f"{Path(script).name}: error: ")


@pytest.mark.parametrize("script", SCRIPTS)
def test_ctrl_c_while_importing_is_one_line_and_status_130(script):
    # -X importtime reports each import as it completes: once _checkout is in, the script is
    # still loading torch and the rest (a second or more), and Ctrl-C lands there
    proc = subprocess.Popen([sys.executable, "-X", "importtime", script, "--help"], cwd=REPO,
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.rstrip().endswith("| _checkout"):
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, rest[-2000:]
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest
    assert "interrupted" in [line for line in rest.splitlines() if "import time:" not in line]


def test_a_script_imports_the_checkout_it_stands_in(tmp_path):
    """With an editable install of this checkout, a second checkout's script still runs its
    own lib/ (here a stand-in lib that says where it is)."""
    other = tmp_path / "other_checkout"
    (other / "tools").mkdir(parents=True)
    (other / "lib").mkdir()
    (other / "lib" / "__init__.py").write_text("")
    shutil.copy(REPO / "tools" / "_checkout.py", other / "tools" / "_checkout.py")
    probe = textwrap.dedent(
        """
        if __name__ == "__main__" and not __package__:
            import _checkout  # noqa: F401
        import lib
        print(lib.__file__)
        """
    )
    (other / "tools" / "probe.py").write_text(probe)
    run = subprocess.run([sys.executable, str(other / "tools" / "probe.py")], cwd=tmp_path,
                         env={**ENV, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.strip()) == other / "lib" / "__init__.py"
