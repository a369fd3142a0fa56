"""``auto`` never reports a number its own checks reject, and chooses exact enumeration by its cost here."""

from __future__ import annotations

import json
import time

import pytest
import torch

from ssviz import exposure
from ssviz.cli import main
from ssviz.exposure.methods import EXACT_BUDGET_SECONDS as EXACT_BUDGET
from ssviz.models import LanguageModel, Vocab
from ssviz.templates import Template

TEMPLATE = Template("id {d:8}")  # 10^8 fillers: far too many to enumerate in a test
SECRET = "31415926"


class Memorizer(LanguageModel):
    """A constructed character model: it knows ``SECRET`` (each of its digits has probability 0.999 while
    the filler so far matches it), and spreads the other digits over two levels (0-4 likely, 5-9 not).

    Random fillers' log-perplexities then take only 9 values (a binomial count of unlikely digits): a
    skew-normal fit fails its test, and the secret lies far beyond every sampled filler.
    """

    def __init__(self, delay: float = 0.0):
        self.vocab = Vocab(list("id 0123456789"))
        self.digits = [self.vocab.index[c] for c in "0123456789"]
        self.delay = delay

    def initial_state(self, batch_size: int):
        return torch.zeros(batch_size, 2)  # [position among the digits, still on the secret (1/0)]

    def step(self, tokens, state):
        if self.delay:
            time.sleep(self.delay)
        pos, on = state[:, 0].clone(), state[:, 1].clone()
        is_digit = torch.isin(tokens, torch.tensor(self.digits))
        want = torch.tensor([self.vocab.index[c] for c in SECRET] + [0])
        slot = pos.long().clamp(0, len(SECRET))
        on = torch.where(is_digit, on * (tokens == want[slot]).float(), torch.ones_like(on))
        pos = torch.where(is_digit, pos + 1, torch.zeros_like(pos))
        probs = torch.full((len(tokens), len(self.vocab)), 1e-6)
        probs[:, self.digits[:5]] = 0.16
        probs[:, self.digits[5:]] = 0.04
        nxt = want[pos.long().clamp(0, len(SECRET))]
        follow = (on > 0) & (pos < len(SECRET))
        probs[follow] = 1e-6
        probs[follow, nxt[follow]] = 0.999
        probs[:, self.vocab.index[" "]] += 0.01
        lp = torch.log(probs / probs.sum(1, keepdim=True))
        return lp, torch.stack([pos, on], 1)

    def select_state(self, state, index):
        return state.index_select(0, index)


@pytest.mark.slow
def test_a_rejected_fit_gives_way_to_the_certified_search_rank():
    model = Memorizer()
    estimate = exposure.measure(model, TEMPLATE, SECRET, "skewnorm", samples=2_000)
    assert estimate.fit_ok is False and "goodness-of-fit" in estimate.warning and "extrapolation" in estimate.warning
    res = exposure.measure(model, TEMPLATE, SECRET, "auto", samples=2_000)
    assert res.plan["method"] == "skewnorm"
    assert res.method == "search" and res.rank == 1 and res.fit_ok is False
    assert res.exposure == pytest.approx(TEMPLATE.space_size.bit_length() - 1 + 0.575, abs=0.01)  # log2 10^8
    assert res.estimate["method"] == "skewnorm" and res.estimate["exposure"] == pytest.approx(estimate.exposure)
    assert "rejected" in res.warning and "certified" in res.quality()


@pytest.mark.slow
def test_a_search_out_of_budget_still_gives_a_certified_bound(monkeypatch):
    from ssviz.exposure import methods
    monkeypatch.setattr(methods, "FALLBACK_NODES", 1)
    res = exposure.measure(Memorizer(), TEMPLATE, SECRET, "auto", samples=2_000)
    assert res.method == "search-bound" and res.rank is None and res.rank_lower_bound >= 1
    assert res.exposure <= 26.58 and "at most" in res.warning and res.fit_ok is False


@pytest.mark.slow
def test_auto_chooses_exact_for_a_fast_model_and_skewnorm_for_a_slow_one(tiny_model):
    template = Template("My PIN is {d:5}")  # 10^5 fillers
    fast = exposure.plan(tiny_model, template)
    assert fast.method == "exact" and fast.exact_seconds < EXACT_BUDGET
    slow = exposure.plan(Memorizer(delay=0.05), Template("id {d:5}"), budget=1.0)
    assert slow.method == "skewnorm" and slow.exact_seconds > 1.0 and "over the budget" in slow.reason
    assert exposure.plan(tiny_model, Template("My PIN is {d:8}")).method == "skewnorm"  # beyond memory


@pytest.mark.slow
def test_the_cli_says_what_auto_chose_and_why_the_number_holds(tmp_path, capsys, monkeypatch):
    from ssviz.cli import core
    monkeypatch.setattr(core, "load_from_args", lambda _: Memorizer())
    assert main(["exposure", "--checkpoint", "x", "--template", TEMPLATE.text, "--secret", SECRET,
                 "--samples", "2000"]) == 0
    out = capsys.readouterr()
    assert out.err.startswith("auto: skewnorm, because")
    assert "certified: rank 1 of 100,000,000 (search)" in out.out and "warning: the skew-normal estimate" in out.out
    assert main(["exposure", "--checkpoint", "x", "--template", TEMPLATE.text, "--secret", SECRET,
                 "--samples", "2000", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["fit_ok"] is False and payload["method"] == "search" and payload["rank"] == 1
    assert payload["plan"]["method"] == "skewnorm" and payload["estimate"]["method"] == "skewnorm"


@pytest.mark.slow
def test_the_report_uses_the_certified_number_and_says_how_it_was_obtained():
    from ssviz.report import Report, measure, model_summary, render
    model = Memorizer()
    findings = measure(model, TEMPLATE, [SECRET], method="auto", samples=2_000, max_nodes=2_000)
    e = findings[0].exposure
    assert e.method == "search" and e.rank == 1 and e.fit_ok is False
    html = render(Report(model_summary(model), findings))
    assert "certified: rank 1 of 100,000,000 (search)" in html
    assert "<strong>Warning:</strong> the skew-normal estimate" in html and "was rejected" in html
    assert SECRET not in html  # the report stays redacted
