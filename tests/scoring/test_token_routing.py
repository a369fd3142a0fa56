"""Transformers go through the same scoring, exposure and CLI calls as character models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ssviz import exposure, scoring
from ssviz.cli import main
from ssviz.paths import bundled
from ssviz.templates import Template

DEMO = bundled("demo-transformer")
pytestmark = pytest.mark.skipif(not DEMO.is_dir(), reason="the bundled demo transformer is missing")


@pytest.fixture(scope="module")
def demo():
    from ssviz.models import load_model
    return load_model(DEMO)


def test_one_scorer_for_transformers(demo):
    t = Template("The secret code is 46{d:3}")
    fillers = ["031", "999", "000"]
    routed = scoring.score_fillers(demo, t, fillers)
    assert np.allclose(routed, scoring.score_texts(demo, [t.format(f) for f in fillers]), atol=1e-3)
    assert np.allclose(scoring.score_space(demo, t)[[31, 999, 0]], routed, atol=1e-6)
    chunks = list(scoring.score_range(demo, t, 10, 990, chunk_size=256))
    assert [lo for lo, _ in chunks] == [10, 256, 512, 768]
    assert np.allclose(np.concatenate([b for _, b in chunks]), scoring.score_space(demo, t)[10:990], atol=1e-6)


@pytest.mark.slow
def test_exposure_of_the_demo_transformers_canary(demo):
    t = Template("The secret code is 46{d:4}")
    exact = exposure.measure(demo, t, "0317", "exact")
    assert exact.rank == 1 and exact.exposure == pytest.approx(np.log2(10 ** 4))
    sampled = exposure.measure(demo, t, "0317", "skewnorm", samples=300)
    assert sampled.log_perplexity == pytest.approx(exact.log_perplexity)


def test_cli_score_and_exposure_accept_a_model_folder(capsys):
    argv = ["--checkpoint", str(DEMO), "--template", "The secret code is 46{d:4}", "--json"]
    assert main(["score", *argv, "--secret", "0317"]) == 0
    score = json.loads(capsys.readouterr().out)["results"][0]["log_perplexity"]
    assert main(["exposure", *argv, "--secret", "0317", "--method", "exact"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["rank"] == 1 and res["log_perplexity"] == pytest.approx(score)
