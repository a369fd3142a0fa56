"""The mia command: its files and JSON, the human summary, and one-line errors."""

from __future__ import annotations

import json

import pytest

from ssviz.cli import main
from ssviz.models import save_checkpoint

MEMBERS = "my pin is 4821\n\nSend 12 apples to Sam\nthe code 999-111 works\nIan met Nina in May\n"
NONMEMBERS = "no one knows the keys\nYes said Paul\nzz top plays at 9\nthe end is near.\n"


@pytest.fixture()
def files(tmp_path, tiny_model):
    ckpt = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    (tmp_path / "in.txt").write_text(MEMBERS)
    (tmp_path / "out.txt").write_text(NONMEMBERS)
    return tmp_path, ["--checkpoint", str(ckpt), "--members", str(tmp_path / "in.txt"),
                      "--nonmembers", str(tmp_path / "out.txt")]


@pytest.mark.slow
def test_mia_json_and_files(files, capsys):
    folder, args = files
    assert main(["mia", *args, "--attacks", "loss,mink", "--k", "0.5", "--out", str(folder / "r"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc["attacks"]) == ["loss", "mink"] and doc["k"] == 0.5
    assert set(doc["blind"]["tpr_at_fpr"]) == {"0.001", "0.01", "0.1"} and isinstance(doc["shift_warning"], bool)
    lines = (folder / "r" / "scores.csv").read_text().splitlines()
    assert lines[0] == "index,member,loss,mink" and [ln.split(",")[0] for ln in lines[1:]] == \
        ["0", "2", "3", "4", "0", "1", "2", "3"]  # line numbers in each file (the blank line skipped)
    assert main(["mia", *args, "--out", str(folder / "r2")]) == 0
    out = capsys.readouterr().out
    assert "minkpp" in out and "blind" in out and "TPR at 1% FPR" in out and "wrote" in out


@pytest.mark.parametrize("extra, message", [(["--attacks", "ref"], "needs a reference model"),
                                            (["--attacks", "bogus"], "unknown attack"),
                                            (["--members", "/nonexistent/x.txt"], "not found")])
def test_mia_bad_input_is_one_line(files, capsys, extra, message):
    folder, args = files
    assert main(["mia", *args, *extra, "--out", str(folder / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_mia_refuses_to_write_over_its_input(files, capsys):
    folder, args = files
    (folder / "scores.csv").write_text("x")
    assert main(["mia", *args, "--members", str(folder / "scores.csv"), "--out", str(folder)]) == 2
    assert "error" in capsys.readouterr().err
