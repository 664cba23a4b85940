"""tools/demo.py's stages: a failed one ends the demo with one line naming its command, exit 2
when nothing was made yet and 1 after (the earlier stages' files stay)."""

from __future__ import annotations

import pytest

from tools import cli, demo


@pytest.mark.parametrize("stage, code", [("1/5 generate", cli.NOTHING), ("3/5 train", cli.PARTLY)])
def test_a_failed_stage_names_its_command_and_exits_by_the_rule(stage, code, capsys):
    with pytest.raises(SystemExit) as caught:
        demo.run(stage, ["-c", "import sys; sys.exit(5)"])
    assert caught.value.code == code
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: demo stage '{stage}' failed (exit 5); its command: "
                   "python -c 'import sys; sys.exit(5)'"]


def test_a_stage_that_works_returns_its_seconds(capsys):
    assert demo.run("1/5 ok", ["-c", "pass"]) >= 0
    assert "$ python -c pass" in capsys.readouterr().out
