"""Command lines as users type them (issue 14, item 11): ``key=value`` overrides after the
options, and every ``personkit`` command line in the README and docs parses."""

from __future__ import annotations

import json
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
    ["eval", "--model", "run", "train.lr=1"],  # eval takes no overrides
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
    device is auto everywhere, flip averaging on wherever embeddings are made), except the
    documented OWN_DEFAULTS (eval's engine is torch, the protocols' reference)."""
    import personkit.cli  # noqa: F401 - registers the subcommands
    from personkit.cli_options import COMMANDS, OWN_DEFAULTS, SHARED

    seen: dict[str, set] = {}
    for command in COMMANDS:
        for flag, action in _options(command).items():
            if command in OWN_DEFAULTS.get(flag, {}):
                assert action.default == OWN_DEFAULTS[flag][command]["default"], (flag, command)
            elif flag in SHARED or flag.removeprefix("--no-") in {f[2:] for f in SHARED}:
                seen.setdefault(flag, set()).add(
                    (repr(action.default), getattr(action.type, "__name__", None),
                     tuple(action.choices or ())))
    assert {flag: len(kinds) for flag, kinds in seen.items() if len(kinds) > 1} == {}
    assert parse_args(["predict", "--model", "r", "in", "--out", "o"]).flip is True
    assert parse_args(["track", "--model", "r", "seq", "--out", "o"]).flip is True
    assert parse_args(["eval", "r"]).flip is True
    for command in ("predict", "track", "eval", "annotate", "bench"):
        assert _options(command)["--device"].default == "auto", command
    for command in ("predict", "track", "index", "serve", "search"):  # issue 38
        assert _options(command)["--engine"].default == "auto", command
    assert _options("eval")["--engine"].default == "torch"
    assert "--engine" in _options("track") and "--heads" in _options("track")


def test_old_spellings_work_and_say_what_to_write(capsys):
    args = parse_args(["predict", "--model", "r", "in", "--out", "o", "--flip-tta"])
    assert args.flip is True and "--flip-tta is deprecated" in capsys.readouterr().err
    assert parse_args(["eval", "--model", "r", "--no-flip"]).flip is False
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


# ------------------------------------------------------------ one vocabulary, second round (#35)

#: The subcommands that run the person network (docs/cli.md, "The network's options").
NETWORK = ("predict", "track", "eval", "index", "search", "serve")
#: The subcommands that run a model, each naming it -m/--model.
MODEL = ("eval", "predict", "export", "bench", "track", "annotate", "index", "search", "serve")


def _parser(command: str):
    from personkit.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices[command]


def test_every_subcommand_names_the_model_one_way():
    from personkit.cli_options import COMMANDS

    for command in COMMANDS:
        options = _options(command)
        positional = {a.dest for a in _parser(command)._actions if not a.option_strings}
        assert not positional & {"checkpoint", "run", "model"}, command
        if command in MODEL:
            assert options["-m"] is options["--model"], command
            assert options["--model"].metavar == "MODEL", command
        else:
            assert "--model" not in options, command
    for command in ("index", "search", "serve", "bench", "annotate"):  # found elsewhere
        assert not _options(command)["--model"].required, command
    for command in ("predict", "track", "eval", "export"):
        assert _options(command)["--model"].required, command


def test_the_network_options_are_on_every_command_that_runs_the_network():
    for command in NETWORK:
        options = _options(command)
        for flag in ("--device", "--engine", "--threads", "--precision", "--batch-size",
                     "--flip", "--no-flip"):
            assert flag in options, (command, flag)


def test_every_command_with_an_output_folder_has_overwrite():
    """The one rule for output folders: refused unless --overwrite (``study`` continues its
    folder instead, docs/cli.md)."""
    from personkit.cli_options import COMMANDS

    with_out = [c for c in COMMANDS if "--out" in _options(c)]
    assert len(with_out) >= 12
    for command in with_out:
        if command != "study":
            assert "--overwrite" in _options(command), command
    assert "--force" not in [a.help for a in _parser("annotate")._actions]


def test_the_docs_table_is_the_parsers():
    from personkit.cli_options import vocabulary_table

    table = vocabulary_table()
    assert "| `-m`, `--model` |" in table and "| `--overwrite` |" in table
    assert table in (ROOT / "docs" / "cli.md").read_text(encoding="utf-8"), (
        "docs/cli.md's table differs from the parsers: paste personkit.cli_options."
        "vocabulary_table()")


@pytest.mark.parametrize(("argv", "model", "rest"), [
    (["predict", "r", "in", "--out", "o"], "r", {"input": "in"}),
    (["predict", "r", "--out", "o", "in"], "r", {"input": "in"}),
    (["track", "r", "seq", "--out", "o", "--tracker", "bytetrack"], "r", {"source": "seq"}),
    (["eval", "r", "--model", "x.onnx"], "r", {"export": "x.onnx"}),
    (["bench", "r", "a.b=1"], "r", {"overrides": ["a.b=1"]}),
    (["serve", "r", "--index", "i"], "r", {"index": "i"}),
])
def test_the_old_positional_model_still_works_and_says_what_to_write(argv, model, rest, capsys):
    args = parse_args(argv)
    assert args.model == model and {k: getattr(args, k) for k in rest} == rest
    err = capsys.readouterr().err
    assert "is deprecated" in err and f"--model {model}" in err


@pytest.mark.parametrize("argv", [
    ["predict", "--model", "r", "in", "--out", "o"],
    ["track", "-m", "r", "seq", "--out", "o"],
    ["eval", "--model=r"],
    ["bench", "a.b=1"],
    ["serve", "--index", "i"],
])
def test_the_new_spelling_is_not_rewritten(argv, capsys):
    args = parse_args(argv)
    assert args.model == (None if argv[0] in ("bench", "serve") else "r")
    assert capsys.readouterr().err == ""


def test_the_model_comes_from_the_index(tmp_path):
    from personkit.cli_objects import index_model

    (tmp_path / "idx").mkdir()
    (tmp_path / "idx" / "index.json").write_text(json.dumps(
        {"model": "abc", "dim": 4, "attributes": {}, "model_path": "runs/m"}))
    assert index_model(None, str(tmp_path / "idx")) == "runs/m"
    assert index_model("other", str(tmp_path / "idx")) == "other"
    with pytest.raises(ValueError, match="--model"):
        index_model(None, str(tmp_path / "new"))
    with pytest.raises(ValueError, match="no --index"):
        index_model(None, None)


def test_an_earlier_output_is_refused_then_replaced(tmp_path, capsys):
    from personkit.outputs import claim_outputs

    (tmp_path / "metrics.json").write_text("{}")
    (tmp_path / "vis").mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite") as e:
        claim_outputs(tmp_path, ["metrics.json", "vis", "other.json"], False, "eval")
    assert "metrics.json and 1 more" in str(e.value) and (tmp_path / "vis").is_dir()
    removed = claim_outputs(tmp_path, ["metrics.json", "vis", "other.json"], True, "eval")
    assert sorted(p.name for p in removed) == ["metrics.json", "vis"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert "eval: replaced an earlier run's results" in capsys.readouterr().err
    assert claim_outputs(tmp_path, ["metrics.json"], False, "eval") == []


def test_score_annotations_refuses_an_earlier_scores_file(tmp_path, capsys):
    from personkit.cli import main

    (tmp_path / "scores.json").write_text("{}")
    assert main(["score-annotations", "a", "b", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "scores.json" in err and "--overwrite" in err
    assert (tmp_path / "scores.json").read_text() == "{}"


def test_the_top_level_help_is_for_users(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    examples = [line for line in text.splitlines() if line.startswith("  personkit ")]
    assert len(examples) >= 3 and "docs/cli.md" in text and "``" not in text
    for line in examples:  # each example parses
        parse_args(shlex.split(line.split("#")[0])[1:])
    with pytest.raises(SystemExit):
        parse_args(["track", "--help"])
    detector = " ".join(capsys.readouterr().out.split())
    assert "torchvision detector name" in detector and "ONNX detector file" in detector
    assert "personkit detector run" in detector and "(default: False)" not in detector


def test_every_reported_error_type_exists_and_maps_to_its_code():
    import importlib

    from personkit.cli import EXIT_CODES, exit_code

    for module, name, code in EXIT_CODES:
        kind = getattr(importlib.import_module(module), name)
        assert isinstance(kind, type) and issubclass(kind, BaseException), name
        assert exit_code(kind.__new__(kind)) == code, name
    assert exit_code(FileNotFoundError("x")) == 2 and exit_code(KeyError("x")) is None


@pytest.mark.parametrize("argv, threads", [
    ("track --model m.safetensors seq --out o --detector d.onnx", "half"),
    ("index idx seq --model m.safetensors --detector d.onnx", "half"),
    ("track --model m.safetensors seq --out o --detector d.onnx --threads 3", None),
    ("track --model m.safetensors seq --out o", None),
])
def test_a_pipeline_with_a_detector_splits_the_cores_between_its_two_stages(argv, threads):
    """Issue 38: the detector (in the frame-reading thread) and the person network run side
    by side, so without --threads each gets half the cores; --threads, or no detector (one
    stage), leaves the engines' own counts."""
    from personkit.cli_objects import pipeline_threads
    from personkit.runtime import cpu_count

    want = {"threads": max(1, cpu_count() // 2)} if threads == "half" else {}
    assert pipeline_threads(parse_args(shlex.split(argv))) == want
