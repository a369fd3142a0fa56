"""The stakeholder report: one offline HTML file, secrets redacted unless revealed, numbers equal the library's."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from ssviz import exposure
from ssviz.cli import main
from ssviz.models import save_checkpoint
from ssviz.paths import bundled
from ssviz.redaction import redact
from ssviz.report import EXPOSED_BITS, Report, measure, model_summary, render
from ssviz.templates import Template
from tests.conftest import CANARY_SECRET, CANARY_TEMPLATE

CONTROL = "7395"
CHROMIUM = Path("/usr/bin/chromium")


def embedded(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="ssviz-data">(.*?)</script>', html, re.DOTALL)
    return json.loads(m.group(1).replace("<\\/", "</"))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, canary_model):
    return save_checkpoint(canary_model, tmp_path_factory.mktemp("report") / "canary.safetensors")


@pytest.fixture(scope="module")
def built(tmp_path_factory, ckpt):
    out = tmp_path_factory.mktemp("out") / "report.html"
    code = main(["report", "--checkpoint", str(ckpt), "--template", CANARY_TEMPLATE, "--secret", CANARY_SECRET,
                 "--secret", CONTROL, "--study", str(bundled("study/enron-demo.duckdb")),
                 "--defenses", str(bundled("defenses/demo-results.json")), "--out", str(out), "--json"])
    assert code == 0
    return out


@pytest.mark.slow
def test_the_redacted_report_never_holds_a_raw_secret(tmp_path, ckpt):
    """Grep the file's bytes for long secrets (a 4-digit string occurs by chance in any page of numbers)."""
    secrets, template = ["48217395", "10396452"], "My PIN is {d:8}"
    out = tmp_path / "r.html"
    argv = ["report", "--checkpoint", str(ckpt), "--template", template, "--method", "skewnorm", "--samples", "300",
            "--max-nodes", "2000", "--out", str(out)]
    for secret in secrets:
        argv += ["--secret", secret]
    assert main(argv) == 0
    data = out.read_bytes()
    for secret in secrets:
        assert secret.encode() not in data
        assert Template(template).format(secret).encode() not in data
        assert redact(secret).encode() in data
    assert b"Secrets are redacted" in data[:data.index(b"<header>")]


def test_the_numbers_equal_the_librarys(built, canary_model):
    data = embedded(built.read_text(encoding="utf-8"))
    t = Template(CANARY_TEMPLATE)
    for row, secret in zip(data["secrets"], (CANARY_SECRET, CONTROL)):
        ref = exposure.measure(canary_model, t, secret, "auto")
        assert row["exposure"] == pytest.approx(ref.exposure, abs=1e-9)
        assert row["rank"] == ref.rank
        assert row["log_perplexity"] == pytest.approx(ref.log_perplexity, abs=1e-9)
        assert row["secret"] == redact(secret)
    assert data["secrets"][0]["verdict"] == "extractable" and data["secrets"][0]["extracted"]
    assert data["secrets"][1]["verdict"] in ("exposed", "indistinguishable from chance")
    assert data["study_rows"] > 0 and data["defenses"] > 0


def test_sections_come_in_the_promised_order(built):
    html = built.read_text(encoding="utf-8")
    order = [html.index(f'<section id="{s}"') for s in ("verdict", "model", "exposure", "extraction", "study",
                                                          "defenses", "methods")]
    assert order == sorted(order)
    sha = embedded(html)["model"]["sha256"]
    assert re.fullmatch(r"[0-9a-f]{64}", sha) and sha in html


def test_the_defenses_section_shows_the_bundled_records(built):
    from ssviz.defenses.compare import load_results
    html = built.read_text(encoding="utf-8")
    section = html[html.index('<section id="defenses"'):html.index('<section id="methods"')]
    records = load_results(bundled("defenses/demo-results.json"))
    assert embedded(html)["defenses"] == len(records) and 'id="fig-defenses"' in section
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td><td>(.*?)</td></tr>", section)
    from ssviz.records import DEFENSE_LABELS
    assert rows == [(DEFENSE_LABELS[r.defense], r.strength, f"{r.exposure:,.2f}", f"{r.test_loss:,.4f}",
                     "n/a" if r.epsilon is None else f"{r.epsilon:,.2f}") for r in records]  # readable names


def test_the_defenses_section_is_the_same_from_records_read_back_from_their_json(canary_model):
    """The Report page reads the Defenses page's runs back from their JSON: the same section either way."""
    from ssviz.defenses.compare import load_results
    from ssviz.records import DefenseResult
    records = load_results(bundled("defenses/demo-results.json"))[:3]
    model, findings = model_summary(canary_model), measure(canary_model, Template(CANARY_TEMPLATE), [CONTROL])
    as_records = render(Report(model, findings, defenses=records, created="t"))
    as_json = render(Report(model, findings, defenses=[DefenseResult.from_json(r.to_json()) for r in records],
                            created="t"))
    assert as_records == as_json and as_records.count("<td>8-bit quantization</td>") == 1


def test_nothing_in_the_file_can_reach_the_network(built):
    html = built.read_text(encoding="utf-8")
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    for tag in re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", html):
        assert not re.search(r"\b(src|href)\s*=", tag), tag


def test_reveal_says_so_on_the_first_line(tmp_path, ckpt):
    out = tmp_path / "revealed.html"
    assert main(["report", "--checkpoint", str(ckpt), "--template", CANARY_TEMPLATE, "--secret", CANARY_SECRET,
                 "--out", str(out), "--reveal"]) == 0
    html = out.read_text(encoding="utf-8")
    first = re.search(r'<p id="disclosure"[^>]*>(.*?)</p>', html).group(1)
    assert "secrets in full" in first and html.index('id="disclosure"') < html.index("<header>")
    assert embedded(html)["secrets"][0]["secret"] == CANARY_SECRET


def test_verdict_words_follow_the_numbers(canary_model):
    t = Template(CANARY_TEMPLATE)
    findings = measure(canary_model, t, [CANARY_SECRET, CONTROL])
    for f in findings:
        if f.extracted:
            assert f.verdict == "extractable" and f.extraction.found == f.secret
        elif f.exposure.exposure >= EXPOSED_BITS:
            assert f.verdict == "exposed"
        else:
            assert f.verdict == "indistinguishable from chance"
    html = render(Report(model_summary(canary_model), findings))
    assert html.count("<li>") >= 2


def test_bad_inputs_fail_before_measuring(tmp_path, ckpt, capsys, monkeypatch):
    from ssviz import report
    monkeypatch.setattr(report, "measure", lambda *a, **k: pytest.fail("measured before checking inputs"))
    blocker = tmp_path / "f"
    blocker.write_text("x")
    malformed = tmp_path / "bad.json"
    malformed.write_text(json.dumps([{"defense": "none", "strength": "-", "epsilon": None, "exposure": "high"}]))
    cases = [["--out", str(blocker / "r.html"), "--secret", CANARY_SECRET],
             ["--out", str(tmp_path / "r.html"), "--secret", "12x4"],
             ["--out", str(tmp_path / "r.html"), "--secret", CANARY_SECRET, "--defenses", str(tmp_path / "none.json")],
             ["--out", str(tmp_path / "r.html"), "--secret", CANARY_SECRET, "--defenses", str(malformed)]]
    for extra in cases:
        code = main(["report", "--checkpoint", str(ckpt), "--template", CANARY_TEMPLATE, *extra])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err


def test_pdf_without_chromium_is_a_clear_message(tmp_path, ckpt, capsys, monkeypatch):
    monkeypatch.setenv("SSVIZ_CHROMIUM", str(tmp_path / "no-such-browser"))
    out = tmp_path / "r.html"
    code = main(["report", "--checkpoint", str(ckpt), "--template", CANARY_TEMPLATE, "--secret", CANARY_SECRET,
                 "--out", str(out), "--pdf"])
    assert code == 2 and "Chromium" in capsys.readouterr().err
    assert out.is_file()  # the HTML report is kept


@pytest.mark.browser
def test_the_report_renders_offline_in_chromium_with_every_figure(built, tmp_path):
    if not CHROMIUM.exists() and not os.environ.get("SSVIZ_REQUIRE_BROWSER"):
        pytest.skip("Debian chromium is not installed")
    from playwright.sync_api import sync_playwright
    requests = []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM),
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = b.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(built.as_uri())
            figures = page.locator("figure.plot")
            n = figures.count()
            assert n >= 4
            page.wait_for_function(f"document.querySelectorAll('figure.plot .main-svg').length >= {n}",
                                   timeout=30_000)
            for i in range(n):  # every figure drew its data, not an empty frame
                assert figures.nth(i).locator(".main-svg .trace").count() > 0
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
            pdf = tmp_path / "report.pdf"
            page.pdf(path=str(pdf))
            assert pdf.stat().st_size > 10_000
        finally:
            b.close()
    assert not errors, errors
    assert [u for u in requests if not u.startswith(("file:", "data:", "blob:"))] == []


def _audit_folder(path: Path) -> Path:
    """A finished audit as `python -m ssviz audit` writes it (synthetic scores: no training needed)."""
    import numpy as np
    rng = np.random.default_rng(0)
    path.mkdir()
    lines = ["filler,included,log_perplexity,score"]
    for i in range(200):
        inc = bool(rng.random() < 0.5)
        lp = 20 - (4 if inc else 0) + rng.normal()
        lines.append(f"{i:04d},{'true' if inc else 'false'},{lp},{13.2877 - lp}")
    (path / "canaries.csv").write_text("\n".join(lines) + "\n")
    (path / "audit.json").write_text(json.dumps({"settings": {"template": "My PIN is {d:4}", "delta": 1e-5,
                                                              "confidence": 0.95, "inclusion": 0.5},
                                                 "results": {"epsilon_claimed": 8.0}}))
    return path


@pytest.mark.slow
def test_scan_and_audit_sections(tmp_path, ckpt, tiny_model):
    from ssviz.audit.run import load_audit
    corpus = tmp_path / "corpus.txt"
    secret = "078-05-1120"
    corpus.write_text(("my ssn is " + secret + " ok.\n") * 3 + "some other text\n" * 20, encoding="utf-8")
    audit = _audit_folder(tmp_path / "audit")
    out = tmp_path / "r.html"
    assert main(["report", "--checkpoint", str(ckpt), "--template", CANARY_TEMPLATE, "--corpus", str(corpus),
                 "--audit", str(audit), "--out", str(out), "--samples", "100", "--max-nodes", "500"]) == 0
    html = out.read_text(encoding="utf-8")
    assert html.index('id="verdict"') < html.index('id="scan"') < html.index('id="model"')
    assert "secret(s) found in the training data" in html
    data = embedded(html)
    assert [r["last4"] for r in data["scan"]] == ["120"] and "secret" not in data["scan"][0]
    assert secret not in html and "078051120" not in html
    ref = load_audit(audit)
    assert data["audit"]["epsilon_lower"] == pytest.approx(ref["epsilon_lower"])
    assert data["audit"]["auc"] == pytest.approx(ref["auc"]) and data["audit"]["epsilon_claimed"] == 8.0
    assert 'data-figure="audit-roc"' in html and 'data-figure="audit-epsilon"' in html


def test_a_report_needs_secrets_or_a_corpus(tmp_path, ckpt, capsys):
    assert main(["report", "--checkpoint", str(ckpt), "--template", CANARY_TEMPLATE, "--out",
                 str(tmp_path / "r.html")]) == 2
    assert "--corpus" in capsys.readouterr().err


def test_the_facts_of_a_transformer_folder(tmp_path):
    """Parameters and a content hash for a model folder, the same for a copy, another after a change."""
    import shutil

    from ssviz.models import load_model
    from ssviz.report.findings import content_sha256
    folder = bundled("demo-transformer")
    model = load_model(folder)
    summary = model_summary(model, folder)
    assert summary.parameters == model.parameter_count > 100_000
    copy = shutil.copytree(folder, tmp_path / "copy")
    assert summary.sha256 == content_sha256(copy) and len(summary.sha256) == 64
    (copy / "ssviz_training.json").write_text("{}")
    assert content_sha256(copy) != summary.sha256
    t = Template("The secret code is 46{d:2}")
    html = render(Report(summary, measure(model, t, ["03"], method="exact")))
    assert summary.sha256 in html and f"{model.parameter_count:,}" in html and "not from a file" not in html


def test_the_verdict_names_the_planted_secret_and_says_whether_the_data_was_scanned(canary_result, tmp_path):
    from ssviz.models import load_model
    ckpt = canary_result.save(tmp_path / "trained.safetensors")  # with its training record: the canary
    model = load_model(ckpt)
    findings = measure(model, Template(CANARY_TEMPLATE), [CANARY_SECRET, "0000"], method="exact")
    summary = model_summary(model, ckpt)
    html = render(Report(summary, findings))
    verdict = html[html.index('id="verdict"'):html.index("</section>", html.index('id="verdict"'))]
    assert verdict.count("the planted test secret") == 1  # the canary, not the control
    assert "was not scanned" in verdict and "Of <b>0</b>" not in verdict
    verdict = render(Report(summary, findings, scan=[]))
    assert "found no secret of the kinds it looks for" in verdict and "v-extractable'>0" not in verdict


def test_an_audit_is_presented_as_this_models_only_when_it_measured_this_model(ckpt, tmp_path):
    import shutil

    from ssviz.audit import demo
    from ssviz.audit.run import load_audit
    from ssviz.models import load_model
    model = load_model(ckpt)
    summary = model_summary(model, ckpt)
    findings = measure(model, Template(CANARY_TEMPLATE), [CANARY_SECRET], method="exact")
    audit = load_audit(demo.BUNDLED_DIR / "plain")
    other = render(Report(summary, findings, audit=audit))
    assert "a model the audit trained itself" in other and "not the model measured above" in other
    same = shutil.copy(ckpt, tmp_path / "audited.safetensors")  # the same weights, wherever they are
    mine = render(Report(summary, findings, audit={**audit, "checkpoint": str(same)}))
    assert f"the model measured above ({summary.name})" in mine and "trained itself" not in mine
