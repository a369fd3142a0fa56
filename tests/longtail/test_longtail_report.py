"""The report's long-tail section: the pool's numbers, recomputed, with secrets in texts redacted."""

from __future__ import annotations

import json
import re
import shutil

import pandas as pd
import pytest

from ssviz.longtail import demo
from ssviz.longtail.counterfactual import load_pool, memorization_table
from ssviz.report.findings import ModelSummary
from ssviz.report.html import Report, render
from ssviz.report.longtail import longtail_summary


@pytest.mark.slow
def test_the_long_tail_section_shows_the_pool_with_secrets_redacted(tmp_path):
    pool = tmp_path / "pool"
    shutil.copytree(demo.DEMO_DIR, pool, ignore=shutil.ignore_patterns("models"))
    mem = pd.read_csv(pool / "memorization.csv")
    top = mem["mem_accuracy"].idxmax()
    mem.loc[top, "text"] = "card 4111 1111 1111 1111 here"
    mem.to_csv(pool / "memorization.csv", index=False)
    summary = longtail_summary(pool)
    expected = memorization_table(load_pool(pool))
    assert summary["models"] == demo.MODELS and summary["top"][0]["example"] == int(expected.loc[top, "example"])
    assert summary["top"][0]["text"] == "card •••••1111 here"
    assert summary["by_role"]["novel"] > summary["by_role"]["duplicated"]
    model = ModelSummary(name="m", description={}, parameters=1)
    page = render(Report(model, [], scan=[], longtail=summary))
    assert '<section id="longtail">' in page and "4111 1111 1111 1111" not in page
    data = json.loads(re.search(r'id="ssviz-data">(.*?)</script>', page, re.S).group(1))
    assert data["longtail"]["models"] == demo.MODELS
    assert render(Report(model, [], scan=[])).count('id="longtail"') == 0
