"""The prepared GPU check still runs: its CPU smoke mode (tiny model, small counts) end to end."""

from __future__ import annotations

import json
import sys

import pytest

from ssviz.paths import SOURCE_ROOT


@pytest.mark.slow
def test_gpu_check_smoke_runs_on_cpu(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(SOURCE_ROOT / "bench"))
    monkeypatch.setenv("OUT", str(tmp_path))
    sys.modules.pop("gpu_check", None)
    import gpu_check
    report = gpu_check.main(["--smoke", "--device", "cpu"])
    assert report["float32_equal"] and report["float32_max_diff_bits"] <= 1e-3
    assert report["exact_fillers"] == 1000 and report["exact_rank"] >= 1
    assert report["sharded_slice_fillers"] > 0 and report["projected_1e9_seconds"] > report["projected_1e8_seconds"]
    assert json.loads((tmp_path / "gpu_check.json").read_text())["smoke"] is True
    assert "projected 10^9" in capsys.readouterr().out
