"""The bundled demo is what the README says it is."""

import numpy as np
import pytest

from ssviz import exposure
from ssviz.demo import DEMO_CANARY, DEMO_CHECKPOINT, DEMO_CONTROL, DEMO_CORPUS, load_demo_model
from ssviz.scoring import score_space
from ssviz.templates import Template


def test_demo_files_are_small_and_documented():
    assert DEMO_CHECKPOINT.stat().st_size < 4_000_000
    assert DEMO_CORPUS.stat().st_size < 1_000_000
    meta = load_demo_model().extra_config["training"]
    assert meta["canary"] == DEMO_CANARY
    assert meta["config"]["layers"] == 2 and meta["config"]["hidden"] == 200


@pytest.mark.slow
def test_demo_canary_is_memorized_far_above_control():
    model = load_demo_model()
    t = Template(DEMO_CANARY["template"])
    lps = score_space(model, t)  # one enumeration serves both ranks
    canary_rank = int((lps <= lps[t.index_of(DEMO_CANARY["secret"])]).sum())
    control_rank = int((lps <= lps[t.index_of(DEMO_CONTROL)]).sum())
    assert canary_rank <= 3
    assert np.log2(control_rank) - np.log2(canary_rank) > 10  # exposure difference in bits
    assert exposure.interpolation([lps[t.index_of(DEMO_CANARY["secret"])]], lps)[0] > 18
