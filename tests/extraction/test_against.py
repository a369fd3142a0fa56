"""Where a secret stands among an extraction's results, for a search that did not put it first."""

from __future__ import annotations

import json

from ssviz.cli import main
from ssviz.extraction import ExtractionResult


def result(*fillers: str) -> ExtractionResult:
    return ExtractionResult("dijkstra", fillers[0] if fillers else None, None,
                            [{"filler": f, "log_perplexity": float(i)} for i, f in enumerate(fillers)], 0, 0, 0.0)


def test_rank_among_the_results_and_the_longest_shared_prefix():
    assert result("1234", "5678", "4821").against("4821") == {"secret_rank": 3, "shared_prefix": 4,
                                                               "closest": "4821"}
    assert result("1234", "4829", "4800").against("4821") == {"secret_rank": None, "shared_prefix": 3,
                                                               "closest": "4829"}
    assert result().against("4821") == {"secret_rank": None, "shared_prefix": 0, "closest": None}


def test_the_cli_reports_it_and_takes_a_memory_budget(tiny_model, tmp_path, capsys):
    from ssviz.models import save_checkpoint
    ckpt = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    assert main(["extract", "--checkpoint", str(ckpt), "--template", "My PIN is {d:3}", "--top", "1000",
                 "--secret", "123", "--max-memory", "64", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["secret"]["secret_rank"] == 1 + [t["filler"] for t in payload["top"]].index("123")
    assert main(["extract", "--checkpoint", str(ckpt), "--template", "My PIN is {d:3}", "--max-nodes", "100000",
                 "--max-memory", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "MB reached (raise it with --max-memory" in out and "[partial: memory budget" in out
