"""The core CLI: JSON contracts and one-line errors."""

import json
import subprocess
import sys

import pytest

from ssviz.cli import main
from ssviz.exposure import measure
from ssviz.models import load_checkpoint, save_checkpoint
from ssviz.scoring import score_fillers
from ssviz.templates import Template


def run_json(capsys, *argv):
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, canary_model):
    return str(save_checkpoint(canary_model, tmp_path_factory.mktemp("ck") / "c.safetensors"))


def test_score_json(capsys, ckpt, tmp_path, canary_model):
    fillers = tmp_path / "f.txt"
    fillers.write_text("4821\n0000\n\n9999\n")
    out = run_json(capsys, "score", "--checkpoint", ckpt, "--template", "My PIN is {d:4}", "--fillers", str(fillers))
    expected = score_fillers(canary_model, Template("My PIN is {d:4}"), ["4821", "0000", "9999"])
    assert [r["filler"] for r in out["results"]] == ["4821", "0000", "9999"]
    assert [r["log_perplexity"] for r in out["results"]] == pytest.approx(list(expected), abs=1e-6)


@pytest.mark.slow
def test_exposure_json_matches_library(capsys, ckpt, canary_model):
    out = run_json(capsys, "exposure", "--checkpoint", ckpt, "--template", "PIN", "--secret", "4821",
                   "--method", "exact")
    lib = measure(canary_model, Template("My PIN is {d:4}"), "4821", "exact")
    for key in ("exposure", "method", "space_size", "log_perplexity", "rank", "samples", "ks_pvalue", "ci"):
        assert key in out
    assert out["exposure"] == pytest.approx(lib.exposure) and out["rank"] == lib.rank
    out = run_json(capsys, "exposure", "--checkpoint", ckpt, "--template", "PIN", "--secret", "4821",
                   "--method", "skewnorm", "--samples", "200", "--seed", "3")
    assert out["rank"] is None and set(out["skewnorm"]) == {"a", "loc", "scale"} and len(out["ci"]) == 2


def test_train_json(capsys, tmp_path, small_corpus):
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_corpus[:6000])
    out = run_json(capsys, "train", str(corpus), "--out", str(tmp_path / "m.safetensors"), "--canary",
                   "My PIN is {d:2}", "--secret", "42", "--insertions", "3", "--layers", "1", "--hidden", "16",
                   "--embedding-dim", "8", "--epochs", "2", "--batch-size", "32", "--patience", "0")
    assert out["checkpoint"].endswith("m.safetensors")
    assert [e["epoch"] for e in out["epochs"]] == [1, 2]
    assert {"epoch", "train_loss", "val_loss", "exposure"} <= set(out["epochs"][0])
    assert load_checkpoint(out["checkpoint"]).hidden_size == 16


@pytest.mark.parametrize("argv,msg", [
    (["exposure", "--checkpoint", "missing.safetensors", "--template", "PIN", "--secret", "1"], "not found"),
    (["score", "--checkpoint", "CKPT", "--template", "no slot", "--secret", "1"], "no slot"),
    (["score", "--checkpoint", "CKPT", "--template", "PIN", "--secret", "12x4"], "does not fit"),
    (["exposure", "--checkpoint", "CKPT", "--template", "My PIN is {d:9}", "--secret", "123456789",
      "--method", "exact"], "limit"),
])
def test_errors_are_one_line(capsys, ckpt, argv, msg):
    argv = [ckpt if a == "CKPT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and msg in err and "\n" not in err


@pytest.mark.slow
def test_module_entry_point(ckpt):
    proc = subprocess.run([sys.executable, "-m", "ssviz", "score", "--checkpoint", ckpt, "--template", "PIN",
                           "--secret", "4821", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"][0]["filler"] == "4821"


def test_with_json_stdout_holds_the_json_alone(capsys, ckpt, monkeypatch):
    """What a library prints while a command runs (Ray prints its notices on stdout) goes to stderr."""
    import ssviz.cli.core as core
    real = core.load_from_args

    def noisy(args):
        print("(raylet) a notice")
        return real(args)

    monkeypatch.setattr(core, "load_from_args", noisy)
    assert main(["exposure", "--checkpoint", ckpt, "--template", "My PIN is {d:3}", "--secret", "123", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["space_size"] == 1000 and "(raylet) a notice" in err
    assert main(["exposure", "--checkpoint", ckpt, "--template", "My PIN is {d:3}", "--secret", "123"]) == 0
    assert "(raylet) a notice" in capsys.readouterr().out  # without --json nothing is moved


def test_command_table_matches_every_module():
    """`--help` lists the subcommands from ssviz.cli.COMMANDS without importing their modules: the table must
    say what each module registers, in order, with the same help."""
    import argparse
    import importlib

    from ssviz.cli import COMMAND_MODULES, COMMANDS
    assert list(COMMANDS) == list(COMMAND_MODULES)
    for name in COMMAND_MODULES:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"ssviz.cli.{name}").register(sub, argparse.ArgumentParser(add_help=False))
        assert [(a.dest, a.help) for a in sub._choices_actions] == list(COMMANDS[name]), name


def test_lazy_parser_parses_like_the_full_one():
    from ssviz.cli import COMMANDS, build_parser, command_module
    full = build_parser()
    assert full.format_help() == build_parser(None).format_help()
    for module, commands in COMMANDS.items():
        for command, _ in commands:
            assert command_module(["--json", command, "--x"]) == command_module(["--", command]) == module
            lazy = build_parser(module)._subparsers._group_actions[0].choices[command]
            assert lazy.format_help() == full._subparsers._group_actions[0].choices[command].format_help()
    assert command_module(["-h"]) is None and command_module(["nosuch", "score"]) is None
    args = build_parser("core").parse_args(["exposure", "--checkpoint", "c", "--template", "PIN", "--secret", "1"])
    assert args.command == "exposure" and args.method == "auto" and callable(args.run)


@pytest.mark.parametrize("argv,code", [(["--help"], 0), (["nosuch"], 2), ([], 2)])
def test_help_and_unknown_commands_import_no_subcommand(argv, code):
    """`python -m ssviz --help` (and a mistyped command) imports no subcommand module, torch included."""
    probe = ("import sys; from ssviz.cli import main\n"
             "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
             "heavy = sorted(m for m in sys.modules if m == 'torch' or m.startswith('ssviz.cli.'))\n"
             "print(code, heavy, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=60)
    assert proc.stderr.strip().splitlines()[-1] == f"{code} []"
