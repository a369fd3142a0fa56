"""A defense results file edited by hand: impossible numbers are refused naming the record and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssviz.defenses.compare import load_results
from ssviz.errors import InvalidValueError

BUNDLED = Path(__file__).resolve().parents[2] / "models" / "defenses" / "demo-results.json"


def _records() -> list:
    return json.loads(BUNDLED.read_text(encoding="utf-8"))


def test_the_bundled_results_read_back():
    assert load_results(BUNDLED)


@pytest.mark.parametrize("key, value", [
    ("exposure", float("nan")), ("exposure", float("inf")), ("exposure", -5.0), ("test_loss", -1.0),
    ("test_loss", float("nan")), ("seconds", -3.0), ("epsilon", -2.0), ("epsilon", float("inf")),
])
def test_an_impossible_number_in_a_record_is_one_line(tmp_path, key, value):
    records = _records()
    records[0][key] = value
    path = tmp_path / "r.json"
    path.write_text(json.dumps(records))  # json writes NaN and Infinity, and Python reads them back
    with pytest.raises(InvalidValueError, match=rf"record 0: '{key}' must be a finite number") as info:
        load_results(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("key, value", [
    ("train_loss", float("nan")), ("val_loss", -0.5), ("exposure", float("-inf")), ("rank", 0), ("epoch", -1),
    ("seconds", float("nan")), ("epsilon", float("-inf")), ("log_perplexity", -10.0),
])
def test_an_impossible_number_in_an_epoch_is_one_line(tmp_path, key, value):
    records = _records()
    target = next(i for i, r in enumerate(records) if r["epochs"])
    records[target]["epochs"][0][key] = value
    path = tmp_path / "r.json"
    path.write_text(json.dumps(records))
    with pytest.raises(InvalidValueError, match=rf"record {target}: epoch 0: '{key}'"):
        load_results(path)


def test_an_epoch_epsilon_of_infinity_still_means_no_promise(tmp_path):
    records = _records()
    target = next(i for i, r in enumerate(records) if r["epochs"])
    records[target]["epochs"][0]["epsilon"] = float("inf")
    path = tmp_path / "r.json"
    path.write_text(json.dumps(records))
    assert load_results(path)[target].epochs[0].epsilon == float("inf")
