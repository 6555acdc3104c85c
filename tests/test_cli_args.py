"""Command lines as users type them (issue 14, item 11): ``key=value`` overrides after the
options, and every ``personkit`` command line in the README and docs parses."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from personkit.cli import parse_args
from personkit.config import load_config

ROOT = Path(__file__).parents[1]


def _documented_commands() -> list[str]:
    """``personkit ...`` lines in the code blocks of README.md and docs/*.md, without
    placeholders."""
    lines = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        in_code = False
        text = doc.read_text(encoding="utf-8").replace("\\\n", " ")  # continuation lines
        for line in text.splitlines():
            in_code ^= line.startswith("```")
            command = line.split("#")[0].strip()
            if not in_code or not line.startswith("personkit "):
                continue
            if not any(c in command for c in "[]|"):
                if not any(word.isupper() for word in command.split()):  # CONFIG, RUN_DIR
                    lines.append(command)
    return lines


def test_the_readme_has_the_override_example():
    assert any("train.lr=5e-4" in c for c in _documented_commands())


@pytest.mark.parametrize("command", _documented_commands())
def test_documented_command_lines_parse(command):
    args = parse_args(shlex.split(command)[1:])
    assert args.command == shlex.split(command)[1]
    for word in shlex.split(command)[2:]:
        if "=" in word and not word.startswith("-") and hasattr(args, "overrides"):
            assert word in args.overrides
    if args.command == "train":
        overrides = args.overrides
        cfg = load_config(ROOT / args.config, overrides)  # the overrides apply to the config
        for item in overrides:
            key, _, value = item.partition("=")
            node = cfg
            for part in key.split("."):
                node = node[int(part)] if part.isdigit() else getattr(node, part)
            assert str(node) == str(float(value) if "." in value or "e" in value else value)


def test_overrides_before_between_and_after_options_keep_their_order():
    args = parse_args(["train", "c.yaml", "a.b=1", "--out", "runs/x", "c.d=2",
                       "--resume", "auto", "e.f=[1, 2]"])
    assert (args.config, args.out, args.resume) == ("c.yaml", "runs/x", "auto")
    assert args.overrides == ["a.b=1", "c.d=2", "e.f=[1, 2]"]
    demo = parse_args(["demo", "--preset", "tiny", "train.iterations=5"])
    assert demo.overrides == ["train.iterations=5"] and demo.preset == "tiny"


@pytest.mark.parametrize("argv", [
    ["train", "c.yaml", "--out", "r", "--bogus"],
    ["train", "c.yaml", "--out", "r", "notanoverride"],
    ["eval", "run", "train.lr=1"],  # eval takes no overrides
])
def test_other_extra_arguments_are_still_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


# ----------------------------------------------------------------------- one vocabulary (#23)


def _options(command: str) -> dict[str, object]:
    """Option string -> its argparse action, for one subcommand."""
    from personkit.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {flag: action for action in sub.choices[command]._actions
            for flag in action.option_strings}


def test_a_shared_option_means_the_same_in_every_subcommand():
    """The same option has the same default, type and choices wherever it appears (the
    device is auto everywhere, flip averaging on wherever embeddings are made)."""
    import personkit.cli  # noqa: F401 - registers the subcommands
    from personkit.cli_options import COMMANDS, SHARED

    seen: dict[str, set] = {}
    for command in COMMANDS:
        for flag, action in _options(command).items():
            if flag in SHARED or flag.removeprefix("--no-") in {f[2:] for f in SHARED}:
                seen.setdefault(flag, set()).add(
                    (repr(action.default), getattr(action.type, "__name__", None),
                     tuple(action.choices or ())))
    assert {flag: len(kinds) for flag, kinds in seen.items() if len(kinds) > 1} == {}
    assert parse_args(["predict", "r", "in", "--out", "o"]).flip is True
    assert parse_args(["track", "r", "seq", "--out", "o"]).flip is True
    assert parse_args(["eval", "r"]).flip is True
    for command in ("predict", "track", "eval", "annotate", "bench"):
        assert _options(command)["--device"].default == "auto", command
    assert "--engine" in _options("track") and "--heads" in _options("track")


def test_old_spellings_work_and_say_what_to_write(capsys):
    args = parse_args(["predict", "r", "in", "--out", "o", "--flip-tta"])
    assert args.flip is True and "--flip-tta is deprecated" in capsys.readouterr().err
    assert parse_args(["eval", "r", "--no-flip"]).flip is False
    bench = parse_args(["bench", "--set", "model.input_size=[64,32]", "train.lr=1"])
    assert bench.set == ["model.input_size=[64,32]"] and bench.overrides == ["train.lr=1"]
    assert "--set is deprecated" in capsys.readouterr().err
    study = parse_args(["study", "s.yaml", "--out", "o", "train.iterations=5"])
    assert study.overrides == ["train.iterations=5"]  # every command with a config


def test_version_and_defaults_in_help(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--version"])
    assert capsys.readouterr().out.startswith("personkit ")
    with pytest.raises(SystemExit):
        parse_args(["track", "--help"])
    text = capsys.readouterr().out
    assert "(default: botsort)" in text and "{botsort," in text and "(default: auto)" in text
