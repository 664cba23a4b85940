"""The documentation cannot rot silently: every command it shows must still be runnable as written.

For each shell block of README.md, readme_ori.md, pretrained_models/README.md and docs/*.md:
- every repository path a command names (tools/..., tools_jss/..., experiments/...) exists;
- every KEY VALUE override given after `--cfg <experiment>` is a valid key and value for it;
- every `--flag` given to a repository script appears in that script's `--help`.
Every relative markdown link points to an existing file. The settings docs/real_photos.md
says the real-photo recipe uses are the ones its yaml holds.
"""

from __future__ import annotations

import contextlib
import io
import re
import runpy
import shlex
import sys
import types
from functools import cache
from pathlib import Path

import pytest
import yaml

from lib.config import get_config

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted(
    p
    for p in [
        REPO / "README.md",
        REPO / "readme_ori.md",
        REPO / "pretrained_models" / "README.md",
        *(REPO / "docs").glob("*.md"),
    ]
    if p.is_file()
)
SHELL_LANGS = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^\s*```(\w*)\s*\n(.*?)^\s*```", re.S | re.M)
REPO_PATH = re.compile(r"(?<![\w/.-])((?:tools|tools_jss|experiments)/[\w./-]+\.(?:py|yaml))")
KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")
RECIPE = "experiments/daodixian_seg/seg_hrnet_ocr_w18_small_v1_real.yaml"  # the real-photo recipe
LINK = re.compile(r"\]\(([^)\s]+)\)")


def shell_blocks(doc: Path) -> list[str]:
    return [
        body for lang, body in FENCE.findall(doc.read_text(encoding="utf-8")) if lang in SHELL_LANGS
    ]


def commands(doc: Path) -> list[str]:
    """One string per command: continuations joined, comments dropped, split at && ; |."""
    out = []
    for block in shell_blocks(doc):
        text = re.sub(r"\\\n", " ", block)
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            out += [part.strip() for part in re.split(r"&&|;|\|", line) if part.strip()]
    return out


def script_and_args(command: str) -> tuple[str | None, list[str]]:
    """The repository script a command runs and the arguments after it."""
    tokens = shlex.split(command, comments=True)
    for i, token in enumerate(tokens):
        if REPO_PATH.fullmatch(token) and token.endswith(".py"):
            return token, tokens[i + 1 :]
    return None, []


ALL_COMMANDS = [(doc, cmd) for doc in DOCS for cmd in commands(doc)]
IDS = [f"{doc.relative_to(REPO)}: {cmd[:60]}" for doc, cmd in ALL_COMMANDS]


def test_docs_have_commands():
    assert (REPO / "README.md") in DOCS
    assert any(doc.name == "README.md" and doc.parent == REPO for doc, _ in ALL_COMMANDS)


def test_readme_shows_the_two_fresh_machine_commands():
    cmds = commands(REPO / "README.md")
    for wanted in (
        "pip install -r requirements.txt",
        "python tools/demo.py",
        "pip install -r requirements-dev.txt",
        "python -m pytest",
    ):
        assert wanted in cmds, f"README.md lost the command {wanted!r}"


@pytest.mark.parametrize("doc, command", ALL_COMMANDS, ids=IDS)
def test_paths_in_commands_exist(doc, command):
    for path in REPO_PATH.findall(command):
        assert (REPO / path).is_file(), (
            f"{doc.relative_to(REPO)}: {path} does not exist ({command})"
        )


@pytest.mark.parametrize("doc, command", ALL_COMMANDS, ids=IDS)
def test_config_overrides_in_commands_are_valid(doc, command):
    script, args = script_and_args(command)
    if script is None or "--cfg" not in args:
        return
    cfg_file = REPO / args[args.index("--cfg") + 1]
    if not cfg_file.is_file():
        return  # reported by test_paths_in_commands_exist
    opts = []
    for i, token in enumerate(args):
        if KEY.match(token):
            assert i + 1 < len(args), f"{doc.relative_to(REPO)}: {token} has no value ({command})"
            opts += [token, args[i + 1]]
    if opts:
        get_config(cfg_file, opts)  # raises ConfigError naming the bad key


@cache
def help_text(script: str) -> str:
    """`script --help`, run in this process (a subprocess per tool would re-import torch)."""
    out = io.StringIO()
    argv = sys.argv
    sys.argv = [str(REPO / script), "--help"]
    # tools/_checkout.py's work (this checkout first on sys.path) is done in this process
    # already; run in-process, it would also replace pytest's Ctrl-C handler
    stub = "_checkout" not in sys.modules
    sys.modules.setdefault("_checkout", types.ModuleType("_checkout"))
    try:
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(REPO / script), run_name="__main__")
    finally:
        sys.argv = argv
        if stub:
            del sys.modules["_checkout"]
    assert exit_info.value.code in (0, None), f"{script} --help exited with {exit_info.value.code}"
    return out.getvalue()


def test_flags_in_commands_are_known_to_the_scripts():
    used: dict[str, set[tuple[str, str]]] = {}
    for doc, command in ALL_COMMANDS:
        script, args = script_and_args(command)
        if script is None or not (REPO / script).is_file():
            continue
        for token in args:
            if token.startswith("--"):
                used.setdefault(script, set()).add(
                    (token.split("=")[0], str(doc.relative_to(REPO)))
                )
    helps = {script: help_text(script) for script in used}
    unknown = [
        f"{doc}: {script} {flag}"
        for script, flags in used.items()
        for flag, doc in sorted(flags)
        if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", helps[script])
    ]
    assert not unknown, "flags the scripts do not know: " + "; ".join(unknown)


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(REPO)) for d in DOCS])
def test_relative_links_resolve(doc):
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"^(https?:|mailto:|#)", target):
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{doc.relative_to(REPO)}: link to {target} points nowhere"


def test_the_recipe_settings_documented_are_the_yaml_s():
    """Each `KEY VALUE` in the first column of docs/real_photos.md's settings table (the
    setting, then the measurement that decided it) is what the recipe's yaml holds."""
    cfg = get_config(REPO / RECIPE)
    doc = (REPO / "docs" / "real_photos.md").read_text(encoding="utf-8")
    lines = doc[doc.index("| setting in the yaml |"):].splitlines()[2:]
    firsts = [line.split("|")[1].strip() for line in
              lines[:next(i for i, line in enumerate(lines) if not line.startswith("|"))]]
    settings = [m.groups() for cell in firsts if cell.startswith("`")
                for m in re.finditer(r"`([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)+) ([^`]+)`", cell)]
    assert {"TEST.SCALE_LIST", "TEST.SCALE_FUSE", "TRAIN.END_EPOCH"} <= {k for k, _ in settings}
    for key, text in settings:
        node = cfg
        for part in key.split("."):
            node = node[part]
        documented = yaml.safe_load(text)
        if isinstance(documented, list):
            assert list(node) == pytest.approx(documented), key
        else:
            assert node == (pytest.approx(documented) if isinstance(documented, float | int)
                            and not isinstance(documented, bool) else documented), key


def test_the_recipe_steps_train_what_cross_validation_measured():
    """README "Train on your own photos": step 2 (cross-validation) and step 3 (the model of
    every photo) fine-tune from the same start with the same training settings, and neither
    cuts the yaml's epochs: the budget fits as many of them as the machine allows."""
    steps = {}
    for command in commands(REPO / "README.md"):
        script, args = script_and_args(command)
        if script in ("tools/cross_validate.py", "tools/train_daodixian_seg.py") \
                and RECIPE in args and "MODEL.PRETRAINED" in args:
            steps[script] = {k: args[i + 1] for i, k in enumerate(args[:-1])
                             if KEY.match(k) and not k.startswith("DATASET.")}
    assert set(steps) == {"tools/cross_validate.py", "tools/train_daodixian_seg.py"}, steps
    assert steps["tools/cross_validate.py"] == steps["tools/train_daodixian_seg.py"]
    assert "TRAIN.END_EPOCH" not in steps["tools/train_daodixian_seg.py"]
    cfg = get_config(REPO / RECIPE)
    assert cfg.TRAIN.END_EPOCH == 300 and cfg.TRAIN.TIME_BUDGET > 0
