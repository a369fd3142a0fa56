"""Hostile strings in every user-controlled field of a report: nothing injected, the embedded JSON intact,
and the command line a report records never spells a secret, however the option was written."""

from __future__ import annotations

import json
import os
import string
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
import torch

from ssviz.cli import main
from ssviz.models import CharRNN, save_checkpoint
from ssviz.report import ModelSummary, Report, measure, render
from ssviz.report.html import data, script_json
from ssviz.scan import ScanRow
from ssviz.templates import Template

CHROMIUM = Path("/usr/bin/chromium")
SECRET = "4821"
HOSTILE = [
    "<!--<script>",
    "</script><script>window.pwned=1</script>",
    "\"><img src=x onerror=\"window.pwned=1\">",
    "<svg onload=window.pwned=1>",
    "<!--",
    "]]></title></style><script>window.pwned=1</script>",
    "&lt;script&gt;window.pwned=1&lt;/script&gt; & \u2028",
    "<a href=\"javascript:window.pwned=1\">x</a>",
]
SECTIONS = ["disclosure", "verdict", "scan", "model", "exposure", "extraction", "study", "audit", "methods"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(5)
    vocab = sorted(set(string.printable + "\u2028") - set("\x0b\x0c"))
    return CharRNN(vocab, arch="lstm", embedding_dim=8, hidden_size=16, num_layers=1).eval()


def report(model, hostile: str) -> Report:
    """A report whose every user-controlled field (template, model folder/file name, architecture, user and
    corpus names, scan labels and templates, audit name, settings) holds ``hostile``."""
    template = Template(f"pin {hostile} is {{d:4}}")
    findings = measure(model, template, [SECRET], method="auto", samples=50, max_nodes=300)
    summary = ModelSummary(name=f"{hostile}/model {hostile}.safetensors", description={f"arch {hostile}": hostile},
                           parameters=123, sha256=None,
                           training={"config": {"epochs": hostile}, "corpus_chars": 10})
    scan = [ScanRow("ssn", f"SSN {hostile}", "120", 3, f"{hostile} {{d:3}}-{{d:2}}-{{d:4}}", 5.0, "exact", 2,
                    False),
            ScanRow("ccn", f"card {hostile}", "1111", 1, "", None, None, None, False, note=f"not measured: {hostile}",
                    left_out=True)]
    study = pd.DataFrame({"user": [hostile, "b" + hostile], "type": ["ssn", "ccn"], "last4": ["1111", "2222"],
                          "times_present": [1, 20], "exposure": [3.0, 30.0], "exposure_method": ["skewnorm", hostile],
                          "extracted": [False, True], "corpus_chars": [100, 500], "messages": [1, 2],
                          "run_id": [1, 1]})
    audit = {"name": hostile, "canaries": 10, "auc": 0.5, "epsilon_lower": 0.5, "confidence": 0.95,
             "epsilon_claimed": None}
    settings = {f"corpus {hostile}": f"{hostile}.txt", "command": f"python -m ssviz report --corpus '{hostile}.txt'"}
    return Report(summary, findings, scan=scan, study=study, audit=audit, settings=settings,
                  created="2026-01-01 00:00 UTC")


class Tags(HTMLParser):
    """Every element the HTML parser builds, and the text of the ``#ssviz-data`` block."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, tuple]] = []
        self.json: list[str] = []
        self._in_json = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, tuple(sorted(k for k, _ in attrs))))
        self._in_json = tag == "script" and ("id", "ssviz-data") in attrs

    def handle_endtag(self, tag):
        self._in_json = False

    def handle_data(self, d):
        if self._in_json:
            self.json.append(d)


def parse(page: str) -> Tags:
    p = Tags()
    p.feed(page)
    p.close()
    return p


@pytest.fixture(scope="module")
def baseline(model):
    return parse(render(report(model, "plain words")))


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_strings_inject_no_element_and_the_json_round_trips(model, baseline, hostile):
    r = report(model, hostile)
    page = render(r)
    parsed = parse(page)
    assert [t for t, _ in parsed.tags] == [t for t, _ in baseline.tags]  # the same elements, in the same order
    assert parsed.tags == baseline.tags                                  # with the same attributes
    assert len(parsed.json) == 1
    assert json.loads(parsed.json[0]) == json.loads(json.dumps(data(r)))
    block = page[page.index('id="ssviz-data">'):]
    block = block[:block.index("</script>")]
    assert "<" not in block[len('id="ssviz-data">'):] and "&" not in block
    for section in SECTIONS:
        assert f'id="{section}"' in page


@pytest.mark.parametrize("value", [*HOSTILE, "", "plain", {"k": ["<", ">", "&", "\u2028"]}, [1.5, None, True]])
def test_script_json_escapes_markup_and_parses_to_the_same_value(value):
    text = script_json(value)
    assert not set("<>&") & set(text) and "\u2028" not in text
    assert json.loads(text) == value


# --- the recorded command line --------------------------------------------------------------------
@pytest.mark.parametrize("spelling", [["--secret", SECRET], [f"--secret={SECRET}"], ["--sec", SECRET],
                                      [f"--secr={SECRET}"], ["--secr", SECRET], [f"--secre={SECRET}"],
                                      [f"--sec={SECRET}"]])
def test_the_report_command_line_never_spells_a_secret(tmp_path, model, monkeypatch, spelling):
    ckpt = save_checkpoint(model, tmp_path / "m.safetensors")
    out = tmp_path / "r.html"
    argv = ["report", "--checkpoint", str(ckpt), "--template", "pin {d:4}", *spelling, "--secret", "7395",
            "--out", str(out), "--samples", "50", "--max-nodes", "200"]
    monkeypatch.setattr(sys, "argv", ["ssviz", *argv])
    assert main(argv) == 0
    page = out.read_text(encoding="utf-8")
    command = page[page.index("<li>command: "):]
    command = command[:command.index("</li>")]
    for secret in (SECRET, "7395"):
        assert secret not in command and secret[1:] not in command
        assert all(secret not in s["secret"] + s["label"] for s in data_from(page)["secrets"])
    assert "report --checkpoint" in command


def data_from(page: str) -> dict:
    block = page[page.index('id="ssviz-data">') + len('id="ssviz-data">'):]
    return json.loads(block[:block.index("</script>")])


# --- one real browser ------------------------------------------------------------------------------
@pytest.mark.browser
@pytest.mark.slow
def test_a_hostile_report_runs_no_injected_script_in_a_real_browser(model, tmp_path):
    if not CHROMIUM.exists():
        if os.environ.get("SSVIZ_REQUIRE_BROWSER"):
            pytest.fail("Debian chromium is required (/usr/bin/chromium)")
        pytest.skip("Debian chromium is not installed (/usr/bin/chromium)")
    from playwright.sync_api import sync_playwright

    files = []
    for i, hostile in enumerate(["<!--<script>", "</script><script>window.pwned=1</script>",
                                 "\"><img src=x onerror=\"window.pwned=1\"><svg onload=window.pwned=1>"]):
        r = report(model, hostile)
        f = tmp_path / f"r{i}.html"
        f.write_text(render(r), encoding="utf-8")
        files.append((f, r))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            for f, r in files:
                page.goto(f.as_uri())
                page.wait_for_timeout(500)
                assert page.evaluate("typeof window.pwned") == "undefined"
                assert page.evaluate("document.querySelectorAll('[onerror], [onload], img').length") == 0
                for section in SECTIONS:
                    assert page.locator(f"#{section}").count() == 1, section
                shown = page.evaluate("JSON.parse(document.getElementById('ssviz-data').textContent)")
                assert shown == json.loads(json.dumps(data(r)))
                assert page.evaluate("document.querySelectorAll('.plotly-graph-div .main-svg').length") > 0
            assert not errors, errors
        finally:
            browser.close()


# --- what the scan puts in a redacted report ------------------------------------------------------
KEYS = ["AKIAZQWXJVKPLMQTRBNY", "ghp_" + "QzWxJvKpLmQtRbNyHgFdSaPoIuYtReWqZxCvBn"[:36], "sk_live_ZqWxJvKpLmQtRbNyHgFd"]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.slow
def test_a_key_before_a_secret_in_the_corpus_never_reaches_the_report(tmp_path, model, key):
    from plotly.offline import get_plotlyjs
    ckpt = save_checkpoint(model, tmp_path / "m.safetensors")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(f"creds {key} ssn 078-05-1120\n" * 2 + f"{key}, 219-09-9999\n" + "some other text\n" * 20,
                      encoding="utf-8")
    out = tmp_path / "r.html"
    assert main(["report", "--checkpoint", str(ckpt), "--template", "pin {d:4}", "--corpus", str(corpus),
                 "--out", str(out), "--samples", "50", "--max-nodes", "100", "--max-secrets", "3"]) == 0
    page = out.read_text(encoding="utf-8").replace(get_plotlyjs(), "")
    body = key.split("_")[-1][4:] if "_" in key else key[4:]
    for secret in (body, "078051120", "219099999"):
        for piece in (secret[i:i + 5] for i in range(len(secret) - 4)):
            assert piece not in page, piece
    templates = [r["template"] for r in data_from(out.read_text(encoding="utf-8"))["scan"]]
    assert "ssn {d:3}-{d:2}-{d:4}" in " ".join(templates)


def test_a_budgeted_scan_says_in_the_report_what_it_left_out(model, baseline):
    r = report(model, "plain")
    page = render(r)
    assert '<p class="left-out">1 of them were not measured' in page
    assert [x["left_out"] for x in data(r)["scan"]] == [False, True]
    r.scan = r.scan[:1]
    assert 'class="left-out"' not in render(r)
