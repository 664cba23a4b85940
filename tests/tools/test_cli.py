"""tools/cli.py: the parser every tool shares, one-line errors and the one exit-code rule."""

from __future__ import annotations

import logging

import pytest

from lib.config import ConfigError
from lib.datasets.base import DatasetError
from tools import cli


def test_parser_takes_both_local_rank_spellings_and_overrides_anywhere():
    parser = cli.tool_parser(__doc__, distributed=True)
    for flag in (["--local_rank", "1"], ["--local-rank=1"]):
        args = cli.parse(parser, ["TRAIN.LR", "0.1", *flag, "--cfg", "x.yaml", "TEST.AMP", "bf16"])
        assert args.local_rank == 1 and args.cfg == "x.yaml"
        assert args.opts == ["TRAIN.LR", "0.1", "TEST.AMP", "bf16"]
    assert cli.parse(cli.tool_parser(__doc__, cfg="d.yaml"), []).cfg == "d.yaml"
    with pytest.raises(SystemExit) as info:  # --cfg missing: usage and exit 2 (nothing done)
        cli.parse(cli.tool_parser(__doc__), [])
    assert info.value.code == cli.NOTHING


def test_help_is_the_docstring(capsys):
    doc = """First line.

    python tools/x.py --cfg A \\\\
        --more

Exit status: 0 done.
"""
    with pytest.raises(SystemExit):
        cli.parse(cli.tool_parser(doc), ["--help"])
    out = capsys.readouterr().out
    assert "First line." in out and "    python tools/x.py --cfg A \\\\\n        --more" in out


def test_exit_codes_follow_one_rule(capsys):
    assert cli.run(lambda: None) == cli.DONE == 0
    assert cli.run(lambda: cli.PARTLY) == 1

    def bad():
        raise ConfigError("a.yaml: TRAIN.LR is 0.0; give a learning rate > 0")

    assert cli.run(bad) == cli.NOTHING == 2
    assert capsys.readouterr().err == "error: a.yaml: TRAIN.LR is 0.0; give a learning rate > 0\n"
    assert cli.run(bad, partly_done=lambda: True) == cli.PARTLY  # work was saved first
    capsys.readouterr()

    def interrupted():
        raise KeyboardInterrupt

    assert cli.run(interrupted, interrupted=lambda: "interrupted: epoch 3 saved") == 130
    assert capsys.readouterr().err == "interrupted: epoch 3 saved\n"

    def bug():
        raise KeyError("a programming error is not bad input")

    with pytest.raises(KeyError):  # a bug keeps its traceback
        cli.run(bug)


def test_the_error_line_also_goes_to_the_log_file(tmp_path, capsys):
    handler = logging.FileHandler(tmp_path / "run.log")
    logging.getLogger().addHandler(handler)
    try:
        cli.run(lambda: (_ for _ in ()).throw(DatasetError("train.lst:3: cannot read a.jpg")))
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    assert capsys.readouterr().err == "error: train.lst:3: cannot read a.jpg\n"
    assert (tmp_path / "run.log").read_text() == "error: train.lst:3: cannot read a.jpg\n"


def test_a_process_stopped_by_another_ones_failure_says_so(monkeypatch, capsys):
    monkeypatch.setattr(cli, "get_world_size", lambda: 2)
    monkeypatch.setattr(cli, "get_rank", lambda: 0)
    cli.report_error(RuntimeError("[gloo/transport/tcp/pair.cc:534] Connection closed by peer "
                                  "[127.0.0.1]:28331"))
    assert capsys.readouterr().err == (
        "error: [rank 0] stopped because another process of this run failed (its error line "
        "names the cause): [gloo/transport/tcp/pair.cc:534] Connection closed by peer "
        "[127.0.0.1]:28331\n"
    )
    # a rank's own NCCL failure or timeout is its own cause, printed as it is
    for own in ("NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled cuda error, NCCL version "
                "2.21.5", "[c10d] Socket Timeout: store get timed out after 1800000 ms"):
        cli.report_error(RuntimeError(own + "\nmore detail"))
        assert capsys.readouterr().err == f"error: [rank 0] {own}\n"
    monkeypatch.setattr(cli, "get_rank", lambda: 1)
    cli.report_error(DatasetError("train.lst:3: cannot read a.jpg"))
    assert capsys.readouterr().err == "error: [rank 1] train.lst:3: cannot read a.jpg\n"


def test_a_stage_prints_its_command_and_a_failed_one_names_it(tmp_path, capsys):
    seconds = cli.run_stage("1/2 say hi", ["-c", "print('hi')"], tmp_path)
    out = capsys.readouterr().out
    assert "=== 1/2 say hi" in out and "$ python -c 'print('\"'\"'hi'\"'\"')'" in out
    assert seconds >= 0
    with pytest.raises(cli.StageFailed) as caught:
        cli.run_stage("2/2 fail", ["-c", "import sys; sys.exit(3)"], tmp_path)
    err = caught.value
    assert (err.title, err.returncode) == ("2/2 fail", 3)
    assert err.command.startswith("python -c ")
    assert str(err) == f"stage '2/2 fail' failed (exit 3); its command: {err.command}"
    # a failed stage is bad input for cli.run: one line, exit 2
    assert cli.run(lambda: cli.run_stage("x", ["-c", "raise SystemExit(1)"], tmp_path)) == cli.NOTHING
    assert "error: stage 'x' failed (exit 1); its command: python -c" in capsys.readouterr().err


@pytest.mark.parametrize("name, hint", [
    ("hrnetv2_w48_imagenet_pretrained.pth", "image-classification release; pretrained_models/README"),
    ("hrnet_ocr_cs_8162_torch11.pth", "HRNet-OCR segmentation release"),
    ("x_generated_canopy.pth", "python tools/pretrain_on_generated.py makes it"),
    ("mine.pth", None),
])
def test_a_missing_weights_file_says_where_such_a_file_comes_from(tmp_path, name, hint):
    from lib.models.weights import WeightsError, read_state_dict

    with pytest.raises(WeightsError) as caught:
        read_state_dict(tmp_path / name)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / name}: weights file not found")
    if hint:
        assert hint in message
    else:
        assert message.endswith("weights file not found")
