"""Each attack's score equals its formula computed directly from the model's log-distributions, on a
character model and both transformer kinds; the driver's files and JSON keep their contract."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import torch

from ssviz.errors import SsvizError
from ssviz.membership.run import MIA_JSON, SCORES_CSV, load_mia, run_mia, save_mia, text_view

from tests.conftest import TINY_VOCAB

MEMBERS = ["my pin is 4821 and it is secret", "Send 12 apples to Sam", "a b c d e f g h", "Paul is 33 years",
           "the code 999-111 works", "Ian met Nina in May"]
NONMEMBERS = ["no one knows the 77 keys", "Yes said Paul", "zz top plays at 9", "the end is near.",
              "some other words here", "Sue has 5 cats"]
K = 0.3


def direct(model, text: str, k: float) -> dict:
    """The formulas on one text, from the model's log-distributions in float64 (nothing shared with the library)."""
    def dist(t: str):
        ids = torch.tensor([model.encode(t)])
        with torch.inference_mode():
            lp, _ = model.run(ids[:, :-1], model.initial_state(1))
        lp = lp[0].double().log_softmax(-1)
        return lp, ids[0, 1:]

    lp, target = dist(text)
    logp = lp.gather(1, target[:, None])[:, 0].numpy()
    p = lp.exp()
    mu = (p * lp).sum(1).numpy()
    sigma = np.sqrt((p * lp ** 2).sum(1).numpy() - mu ** 2)
    z = (logp - mu) / sigma
    n = int(len(logp) * k)
    ll = logp.mean()
    lower_lp, lower_target = dist(text.lower())
    ll_lower = lower_lp.gather(1, lower_target[:, None])[:, 0].numpy().mean()
    return {"loss": ll, "zlib": ll / len(zlib.compress(text.encode("utf-8"))), "lowercase": ll_lower / ll,
            "mink": np.sort(logp)[:n].mean(), "minkpp": np.sort(z)[:n].mean()}


@pytest.fixture(scope="module", params=["lstm", "llama", "gpt2"])
def pair(request):
    """(target, reference) of one kind, tiny, seeded."""
    if request.param == "lstm":
        from ssviz.models import CharRNN
        torch.manual_seed(5)
        a = CharRNN(TINY_VOCAB, arch="lstm", embedding_dim=8, hidden_size=16, num_layers=1).eval()
        torch.manual_seed(6)
        return a, CharRNN(TINY_VOCAB, arch="gru", embedding_dim=8, hidden_size=16, num_layers=1).eval()
    from ssviz.models.hf import HFLanguageModel
    tok = request.getfixturevalue("digit_tokenizer" if request.param == "llama" else "merge_tokenizer")
    build = lambda seed: HFLanguageModel.build(request.param, tok, layers=1, heads=2, hidden=16,  # noqa: E731
                                                context=64, seed=seed, init_range=0.3)
    return build(3), build(4)


@pytest.mark.slow
def test_every_attack_equals_its_formula(pair):
    model, ref = pair
    res = run_mia(model, MEMBERS, NONMEMBERS, attacks="loss,zlib,lowercase,mink,minkpp,ref", k=K, reference=ref)
    assert res.texts == MEMBERS + NONMEMBERS and res.member.tolist() == [True] * 6 + [False] * 6
    for j, text in enumerate(res.texts):
        want = direct(model, text, K)
        want["ref"] = want["loss"] - direct(ref, text, K)["loss"]
        for name, value in want.items():
            assert res.scores[name][j] == pytest.approx(value, rel=1e-4, abs=1e-5), (name, text)
    # the metrics are the audit's, on these scores
    from ssviz.audit.metrics import summary
    want = summary(res.scores["mink"], res.member, seed=0)
    got = res.attacks["mink"]
    assert got["auc"] == want["auc"] and got["auc_ci"] == want["auc_ci"] and got["tpr_ci"] == want["tpr_ci"]
    assert set(got["tpr_at_fpr"]) == {"0.001", "0.01", "0.1"}


def test_a_text_shorter_than_one_over_k_is_scored_by_its_smallest_unit(tiny_model):
    res = run_mia(tiny_model, ["abcd", "efgh"], ["ijkl", "mnop"], attacks="mink", k=0.2, seed=1)
    view = text_view(tiny_model, "abcd")
    assert res.scores["mink"][0] == pytest.approx(min(view["logp"][1:]), abs=1e-9)
    assert view["units"] == list("abcd") and view["logp"][0] is None and len(view["z"]) == 4


@pytest.mark.slow
def test_files_and_json_keep_their_contract(tiny_model, tmp_path):
    res = run_mia(tiny_model, [(3, "my pin is 12"), (7, "Sam is here"), (9, "x")],
                  [(0, "the end is near"), (4, "no one"), (5, "yes it is")], attacks="loss,minkpp")
    assert res.skipped == [{"member": True, "index": 9}]  # one character: nothing predicted
    save_mia(res, tmp_path)
    lines = (tmp_path / SCORES_CSV).read_text().splitlines()
    assert lines[0] == "index,member,loss,minkpp"
    assert [ln.split(",")[:2] for ln in lines[1:]] == [["3", "True"], ["7", "True"], ["0", "False"], ["4", "False"],
                                                      ["5", "False"]]
    doc = json.loads((tmp_path / MIA_JSON).read_text())
    assert {"attacks", "blind", "shift_warning"} <= set(doc) and isinstance(doc["shift_warning"], bool)
    for entry in (*doc["attacks"].values(), doc["blind"]):
        assert set(entry["tpr_at_fpr"]) == set(entry["tpr_ci"]) == {"0.001", "0.01", "0.1"}
        assert len(entry["auc_ci"]) == 2 and entry["auc_ci"][0] <= entry["auc"] <= entry["auc_ci"][1]
    back = load_mia(tmp_path)
    assert back.texts == res.texts and np.allclose(back.scores["loss"], res.scores["loss"])
    assert back.ranks(0)["loss"] == res.ranks(0)["loss"] and 1 <= res.ranks(0)["loss"] <= 5


def test_a_text_outside_a_character_models_vocabulary_is_named_by_its_line(tiny_model):
    with pytest.raises(SsvizError, match="non-member text on line 4 cannot be read by the model"):
        run_mia(tiny_model, MEMBERS, [(0, "abc"), (4, "caf\u00e9 au lait")], attacks="loss")


@pytest.mark.parametrize("kw, message", [({"attacks": "loss,nope"}, "unknown attack"),
                                         ({"attacks": "ref"}, "reference model"),
                                         ({"attacks": "lira"}, "pool"), ({"k": 0}, "k must be")])
def test_bad_settings_are_one_clear_error(tiny_model, kw, message):
    with pytest.raises(SsvizError, match=message):
        run_mia(tiny_model, MEMBERS, NONMEMBERS, **kw)


def test_minkpp_z_is_zero_where_the_distribution_is_one_hot():
    from ssviz.membership.attacks import minkpp_z
    from ssviz.scoring import Reading
    r = Reading(np.arange(3), np.array([0.0, -1.0]), np.zeros(2, bool), np.array([0.0, -2.0]), np.array([0.0, 1.0]))
    assert minkpp_z(r).tolist() == [0.0, 1.0]
