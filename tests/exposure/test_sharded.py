"""Sharded exact enumeration: shards add up to the plain enumeration, value for value; resume; limits.

Also the trie scorer's building blocks that sharding relies on (node starts
computed arithmetically, block-wise stepping, chunk alignment).
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssviz import exposure
from ssviz.cli import main
from ssviz.errors import CheckpointError, SettingsError, SpaceTooLargeError, SsvizError, StoppedError
from ssviz.exposure import Histogram, count_range, shard_plan
from ssviz.executor import LocalExecutor
from ssviz.models import save_checkpoint
from ssviz.scoring import TrieScorer, node_starts, score_range, score_space, score_texts
from ssviz.templates import Template

TEMPLATES = ["My PIN is {d:3}", "My SSN is {d:2}-{d:1}.", "a {[xyz]:2} b {d:2}", "PIN {[01]:3}{d:1} ok"]


# --- the scorer's pieces ------------------------------------------------------------------
def consecutive_rows(model, t: Template, lo: int, hi: int):
    """Unit rows of fillers lo..hi-1 in filler order, and the node starts the scorer derives without comparing."""
    comp = model.template_units(t).composition
    digits = t.digits_of_indices(np.arange(lo, hi))
    seen = {}

    class Spy(TrieScorer):
        def score_rows(self, units, lengths, new=None, head=()):
            seen["units"], seen["new"] = units, new
            return super().score_rows(units, lengths, new, head)

    Spy(model, t, chunk_size=max(64, hi - lo)).score_range(lo, hi)
    assert np.array_equal(seen["units"], comp.rows(digits, start=int(comp.slot_index[0])))
    return seen["units"], seen["new"]


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(TEMPLATES), st.data())
def test_node_starts_of_consecutive_fillers_need_no_comparison(tiny_model, text, data):
    t = Template(text)
    lo = data.draw(st.integers(0, t.space_size - 1))
    hi = data.draw(st.integers(lo + 1, t.space_size))
    units, new = consecutive_rows(tiny_model, t, lo, hi)
    assert np.array_equal(new, node_starts(units))


@pytest.mark.slow
@pytest.mark.parametrize("text", TEMPLATES)
@pytest.mark.parametrize("step_rows", [1, 3, 7, 1024])
def test_blockwise_stepping_equals_naive_scoring(tiny_model, text, step_rows):
    """Blocks of any size (including 1 row, and splits inside a fused tail) give the naive scores."""
    t = Template(text)
    scorer = TrieScorer(tiny_model, t, chunk_size=t.space_size)
    scorer.step_rows = step_rows
    digits = t.digits_of_indices(np.arange(t.space_size))
    with torch.inference_mode():
        got = scorer.score_range(0, t.space_size)
        same = scorer.score_digits(digits)  # node starts compared
    ref = score_texts(tiny_model, [t.format(t.filler_at(i)) for i in range(t.space_size)])
    assert np.abs(got - ref).max() < 1e-4 and np.array_equal(got, same)


def test_gru_blockwise(tiny_gru):
    t = Template("My PIN is {d:3}")
    ref = score_texts(tiny_gru, [t.format(t.filler_at(i)) for i in range(1000)])
    assert np.abs(score_space(tiny_gru, t, chunk_size=300) - ref).max() < 1e-4


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(st.integers(1, 1000), st.data())
def test_a_shard_scores_each_filler_exactly_as_the_whole_space(tiny_model, chunk, data):
    """Chunks are cut at multiples of the chunk size, so a filler's batch (and its float rounding) is the
    same in a shard of whole chunks as in the whole space; any other range agrees to rounding."""
    t = Template("My PIN is {d:3}")
    whole = score_space(tiny_model, t, chunk_size=chunk)
    cuts = sorted({0, 1000, *(min(c * chunk, 1000) for c in range(0, 1000 // chunk + 1))})
    i = data.draw(st.integers(0, len(cuts) - 2))
    j = data.draw(st.integers(i + 1, len(cuts) - 1))
    lo, hi = cuts[i], cuts[j]
    parts = list(score_range(tiny_model, t, lo, hi, chunk_size=chunk))
    assert parts[0][0] == lo and all(a % chunk == 0 for a, _ in parts)
    assert np.array_equal(np.concatenate([b for _, b in parts]), whole[lo:hi])
    lo = data.draw(st.integers(0, 999))
    hi = data.draw(st.integers(lo + 1, 1000))
    got = np.concatenate([b for _, b in score_range(tiny_model, t, lo, hi, chunk_size=chunk)])
    assert np.abs(got - whole[lo:hi]).max() < 1e-5


# --- histograms and shard counts ----------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 300, allow_nan=False), min_size=1, max_size=200), st.integers(1, 199))
def test_fixed_bin_histograms_add_up_exactly(values, cut):
    values = np.array(values)
    cut = min(cut, len(values))
    whole = Histogram.of(values)
    parts = Histogram.of(values[:cut]).add(Histogram.of(values[cut:]))
    back = Histogram.of(values[cut:]).add(Histogram.of(values[:cut]))
    for h in (parts, back):
        assert h.first == whole.first and np.array_equal(h.counts, whole.counts)
    assert whole.counts.sum() == len(values)
    assert Histogram.from_json(json.loads(json.dumps(whole.to_json()))).to_json() == whole.to_json()
    counts, edges = whole.coarse(60)
    assert counts.sum() == len(values) and len(edges) == len(counts) + 1 and len(counts) <= 60
    assert whole.edges[0] <= values.min() and values.max() < whole.edges[-1]
    ordered = np.sort(values)
    est = whole.at_or_below(ordered)
    true = np.searchsorted(ordered, ordered, side="right")
    in_bin = whole.counts[np.floor(ordered / whole.bin_bits).astype(int) - whole.first]
    assert np.all(np.diff(est) >= -1e-9) and np.all(np.abs(est - true) <= in_bin)


def test_histogram_of_absurd_scores_stays_small():
    """A finite but absurd log-perplexity (weights near float max) lands in the last bin, not a 10^39 array."""
    h = Histogram.of(np.array([3.0, 1e38, 1e300, -1e-12]))
    assert h.counts.sum() == 4 and len(h.counts) <= exposure.HIST_MAX_BITS / exposure.HIST_BIN_BITS + 1
    assert h.first == 0


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 7), st.integers(0, 999), st.lists(st.integers(0, 999), max_size=30, unique=True))
def test_shard_counts_add_up_to_the_plain_enumeration(tiny_model, chunks, secret, sample):
    """Shards of whole chunks (as shard_plan makes them) add up to the plain enumeration exactly."""
    t = Template("My PIN is {d:3}")
    shard = 100 * chunks
    lps = score_space(tiny_model, t, chunk_size=100)
    sample = sorted(sample)
    thresholds = [lps[secret], lps[secret] - 1e-3, 1e9]
    total = np.zeros(3, dtype=np.int64)
    hist = Histogram(0, np.zeros(0, dtype=np.int64))
    picked = []
    for lo in range(0, 1000, shard):
        hi = min(lo + shard, 1000)
        out = count_range(tiny_model, t, lo, hi, thresholds, sample=[i for i in sample if lo <= i < hi],
                          chunk_size=100)
        total += out["at_or_below"]
        hist = hist.add(Histogram(out["first_bin"], np.array(out["counts"])))
        picked += out["sample"]
    assert total.tolist() == [int((lps <= th).sum()) for th in thresholds]
    assert hist.to_json() == Histogram.of(lps).to_json()
    assert picked == [lps[i] for i in sample]


@pytest.mark.parametrize("size,chunk,shard,want", [
    (10 ** 6, 1 << 16, None, (1 << 16, 1 << 16)),
    (10 ** 9, 1 << 16, None, (1 << 16, 64 << 16)),
    (10 ** 4, 1 << 16, 1500, (1500, 1500)),
    (10 ** 6, 1000, 2500, (1000, 3000)),
    (10 ** 8, 1 << 16, None, (1 << 16, 24 << 16)),
])
def test_shard_plan(size, chunk, shard, want):
    got = shard_plan(size, chunk, shard)
    assert got == want and got[1] % got[0] == 0


@pytest.mark.parametrize("bad", [0, -5, 2.5, True])
def test_shard_plan_refuses_bad_sizes(bad):
    with pytest.raises(SettingsError):
        shard_plan(1000, 100, bad)


# --- the sharded front, on local processes ------------------------------------------------------
@pytest.fixture(scope="module")
def executor():
    with LocalExecutor(workers=2) as ex:
        yield ex


def _same(a: exposure.ExposureResult, b: exposure.ExposureResult) -> None:
    ja, jb = a.to_json(), b.to_json()
    ja.pop("shards"), jb.pop("shards")
    assert ja == jb  # value for value: rank, log-perplexity, histogram, fit


@pytest.mark.slow
@pytest.mark.parametrize("secret,shard", [("0417", 1500), ("0000", 700), ("9999", 10_000), ("1500", 1500)])
def test_sharded_equals_plain_value_for_value(tiny_model, executor, tmp_path, secret, shard):
    t = Template("My PIN is {d:4}")
    chunk, _ = shard_plan(t.space_size, shard_size=shard)
    plain = exposure.exact(tiny_model, t, secret, chunk_size=chunk)
    sharded = exposure.exact(tiny_model, t, secret, executor=executor, shard_size=shard,
                             store=tmp_path / "s.duckdb")
    _same(plain, sharded)
    assert sharded.reference_lps is None and sharded.shards["shards"] == -(-10_000 // sharded.shards["shard_size"])
    assert sharded.rank == int((plain.reference_lps <= plain.log_perplexity).sum())
    assert sum(sharded.histogram["counts"]) == t.space_size
    # other fillers against a sharded result: interpolated within their histogram bin
    others = plain.reference_lps[[5, 500, 5000]]
    hist = Histogram.from_json(sharded.histogram)
    for lp, e, a in zip(others, exposure.exposure_of(plain, others), exposure.exposure_of(sharded, others)):
        in_bin = hist.counts[int(lp // hist.bin_bits) - hist.first]
        assert a["rank"] is None and abs(2 ** (math.log2(10_000) - a["exposure"]) - e["rank"]) <= in_bin


@pytest.mark.slow
def test_stop_then_resume_finishes_with_the_same_result(tiny_model, executor, tmp_path):
    t = Template("My PIN is {d:4}")
    store = tmp_path / "shards.duckdb"
    seen = []

    def stop():
        return len(seen) >= 3  # the starting point and two finished shards

    with pytest.raises(StoppedError, match="resume"):
        exposure.exact(tiny_model, t, "0417", executor=executor, shard_size=500, store=store,
                       progress=lambda done, total: seen.append(done), stop=stop)
    kept = finished_shards(store)
    assert 2 <= kept < 20
    again = exposure.exact(tiny_model, t, "0417", executor=executor, shard_size=500, store=store)
    assert again.shards["resumed"] == kept and again.shards["scored"] == 10_000 - 500 * kept
    _same(again, exposure.exact(tiny_model, t, "0417", chunk_size=500))
    # another secret, template or model is another run: nothing resumed by mistake
    other = exposure.exact(tiny_model, t, "0418", executor=executor, shard_size=500, store=store)
    assert other.shards["resumed"] == 0 and finished_shards(store) == 40


def finished_shards(store) -> int:
    import duckdb
    con = duckdb.connect(str(store), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM shards").fetchone()[0]
    finally:
        con.close()


@pytest.mark.slow
def test_the_shards_file_never_holds_the_secret(tiny_model, executor, tmp_path):
    t = Template("My PIN is {d:4}")
    store = tmp_path / "shards.duckdb"
    for secret in ("7351", "2468"):
        exposure.exact(tiny_model, t, secret, executor=executor, shard_size=5000, store=store)
    data = store.read_bytes() + (store.with_name(store.name + ".wal").read_bytes()
                                 if store.with_name(store.name + ".wal").exists() else b"")
    for secret in ("7351", "2468"):
        assert secret.encode() not in data and t.format(secret).encode() not in data


@pytest.mark.slow
def test_a_foreign_shards_file_is_refused_untouched(tiny_model, executor, tmp_path):
    import duckdb
    store = tmp_path / "other.duckdb"
    con = duckdb.connect(str(store))
    con.execute("CREATE TABLE accounts (id INTEGER)")
    con.close()
    before = store.read_bytes()
    with pytest.raises(SsvizError, match="not"):
        exposure.exact(tiny_model, Template("My PIN is {d:3}"), "123", executor=executor, store=store)
    assert store.read_bytes() == before


@pytest.mark.slow
def test_a_model_that_cannot_load_fails_fast_with_one_line(tiny_model, executor):
    bad = copy.deepcopy(tiny_model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for w in (bad.head.weight, bad.embedding.weight):
            w.copy_(torch.randn(w.shape, generator=gen).sign() * 3e38)
    bad.source = "models/bad.safetensors"
    with pytest.raises(CheckpointError, match="NaN or infinite") as e:
        exposure.exact(bad, Template("My PIN is {d:3}"), "123", executor=executor, shard_size=100)
    assert "models/bad.safetensors" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
def test_spaces_up_to_ten_to_the_ten_are_accepted_when_sharded(tiny_model, executor):
    big = Template("My PIN is {d:10}")
    with pytest.raises(StoppedError):  # planned and started (then stopped at once), not refused
        exposure.exact(tiny_model, big, "0123456789", executor=executor, stop=lambda: True)
    with pytest.raises(SpaceTooLargeError, match="limit"):
        exposure.exact(tiny_model, Template("My PIN is {d:11}"), "01234567890", executor=executor)
    with pytest.raises(SpaceTooLargeError, match="--executor"):  # in memory, the refusal names the way out
        exposure.exact(tiny_model, big, "0123456789")


# --- the CLI -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_model):
    return str(save_checkpoint(tiny_model, tmp_path_factory.mktemp("ck") / "tiny.safetensors"))


def run_json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_cli_local_executor_equals_the_library(capsys, ckpt, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("SSVIZ_DATA_DIR", str(tmp_path / "data"))
    t = Template("My PIN is {d:4}")
    out = run_json(capsys, "exposure", "--checkpoint", ckpt, "--template", t.text, "--secret", "0417",
                   "--executor", "local", "--workers", "2", "--shard-size", "2500")
    lib = exposure.exact(tiny_model, t, "0417", chunk_size=2500).to_json()
    assert {k: out[k] for k in lib if k != "shards"} == {k: v for k, v in lib.items() if k != "shards"}
    assert out["shards"]["shards"] == 4 and out["shards"]["executor"] == {"kind": "local", "cpus": 2}
    assert (tmp_path / "data" / "exact-shards.duckdb").exists()  # resumable by default
    for key in ("exposure", "method", "space_size", "log_perplexity", "rank", "samples", "ks_pvalue", "ci",
                "skewnorm", "log2_space_size"):
        assert key in out
    assert out["exposure"] == pytest.approx(math.log2(10_000) - math.log2(out["rank"]))


@pytest.mark.parametrize("argv,msg", [
    (["--method", "sampled", "--executor", "local"], "--executor applies to --method exact"),
    (["--method", "skewnorm", "--shard-size", "10"], "--shard-size applies"),
    (["--method", "exact", "--address", "127.0.0.1:6379"], "--address is for --executor ray"),
    (["--method", "exact", "--shards-db", "/proc/nope/x.duckdb"], "shards file"),
    (["--method", "exact", "--template", "My PIN is {d:11}", "--executor", "local"], "limit"),
])
def test_cli_sharding_errors_are_one_line(capsys, ckpt, argv, msg):
    base = ["exposure", "--checkpoint", ckpt, "--template", "My PIN is {d:3}", "--secret", "123"]
    if "--template" in argv:
        i = argv.index("--template")
        base[base.index("--template") + 1] = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
        base[-1] = "0" * 11
    assert main([*base, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and msg in err and "\n" not in err


# --- without an executor: the same tasks in this process -----------------------------------------
def test_without_an_executor_the_shards_run_here_value_for_value(tiny_model):
    t = Template("My PIN is {d:4}")
    chunk, _ = shard_plan(t.space_size, shard_size=1500)
    here = exposure.sharded_exact(tiny_model, t, "0417", shard_size=1500)
    _same(exposure.exact(tiny_model, t, "0417", chunk_size=chunk), here)
    assert here.shards["executor"]["kind"] == "inline" and here.shards["shards"] == 7


def test_without_an_executor_a_stopped_run_resumes(tiny_model, tmp_path):
    t = Template("My PIN is {d:4}")
    store = tmp_path / "shards.duckdb"
    seen = []
    with pytest.raises(StoppedError, match="resume"):
        exposure.sharded_exact(tiny_model, t, "0417", shard_size=1000, store=store,
                               progress=lambda done, total: seen.append(done), stop=lambda: len(seen) >= 3)
    assert finished_shards(store) == 2
    again = exposure.sharded_exact(tiny_model, t, "0417", shard_size=1000, store=store)
    assert again.shards["resumed"] == 2 and again.shards["scored"] == 8000
    _same(again, exposure.exact(tiny_model, t, "0417", chunk_size=1000))


@pytest.mark.slow
def test_a_transformer_model_folder_is_shipped_to_the_shards():
    from ssviz.models import load_model, model_bytes
    from ssviz.paths import bundled
    demo = bundled("demo-transformer")
    if not demo.is_dir():
        pytest.skip("the bundled demo transformer is missing")
    model = load_model(demo)
    assert model_bytes(model) == model_bytes(model)  # the same model, the same hash: a stopped run resumes
    t = Template("The secret code is 46{d:3}")
    plain = exposure.exact(model, t, "031")
    sharded = exposure.sharded_exact(model, t, "031", shard_size=256)
    assert sharded.rank == plain.rank and sharded.log_perplexity == pytest.approx(plain.log_perplexity, abs=1e-5)
    assert sum(sharded.histogram["counts"]) == t.space_size


def test_a_model_that_cannot_be_saved_is_refused_in_one_line():
    class Opaque:
        pass
    with pytest.raises(SettingsError, match="Opaque cannot be saved"), LocalExecutor(workers=1) as ex:
        exposure.sharded_exact(Opaque(), Template("My PIN is {d:3}"), "123", ex)
