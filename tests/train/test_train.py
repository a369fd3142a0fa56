import pytest

from ssviz import exposure
from ssviz.errors import SsvizError
from ssviz.templates import Template
from ssviz.train import Canary, TrainConfig, insert_canary, read_corpus, train
from tests.conftest import CANARY_SECRET, CANARY_TEMPLATE


def test_insert_canary_count_and_seed():
    text = "\n".join(f"line {i}" for i in range(100))
    out = insert_canary(text, "CANARY", 7, seed=1)
    assert out.split("\n").count("CANARY") == 7
    assert out == insert_canary(text, "CANARY", 7, seed=1)
    assert out != insert_canary(text, "CANARY", 7, seed=2)


def test_canary_memorized_far_above_control(canary_result, canary_model):
    t = Template(CANARY_TEMPLATE)
    canary = exposure.measure(canary_model, t, CANARY_SECRET, "exact")
    control = exposure.measure(canary_model, t, "1597", "exact")
    assert canary.exposure > control.exposure + 4
    assert canary.rank <= 5
    history = canary_result.epochs
    assert [r["epoch"] for r in history] == list(range(1, 7))
    assert all(r["exposure"] is not None and r["val_loss"] > 0 for r in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_training_is_reproducible(small_corpus):
    cfg = TrainConfig(layers=1, hidden=16, embedding_dim=8, epochs=1, batch_size=64, seed=11)
    a = train(small_corpus[:8000], cfg, Canary(Template("My PIN is {d:2}"), "42", 3))
    b = train(small_corpus[:8000], cfg, Canary(Template("My PIN is {d:2}"), "42", 3))
    assert a.epochs[0]["train_loss"] == b.epochs[0]["train_loss"]
    assert a.epochs[0]["exposure"] == b.epochs[0]["exposure"]


def test_stop_returns_partial_result(small_corpus):
    calls = []
    cfg = TrainConfig(layers=1, hidden=16, embedding_dim=8, epochs=5, batch_size=32)
    res = train(small_corpus[:20000], cfg, on_batch=lambda b, n, loss: calls.append(b), stop=lambda: len(calls) >= 3)
    assert res.stopped and len(calls) == 3 and len(res.epochs) == 1


def test_saved_checkpoint_carries_training_metadata(canary_result, tmp_path):
    from ssviz.models import load_checkpoint
    path = canary_result.save(tmp_path / "c.safetensors")
    model = load_checkpoint(path)
    meta = model.extra_config["training"]
    assert meta["canary"] == {"template": CANARY_TEMPLATE, "secret": CANARY_SECRET, "insertions": 30}
    assert len(meta["epochs"]) == 6


def test_bad_corpus_inputs(tmp_path):
    p = tmp_path / "latin.txt"
    p.write_bytes("caf\xe9 ".encode("latin-1") * 50)
    with pytest.raises(SsvizError, match="not UTF-8.*offset 3"):
        read_corpus(p)
    with pytest.raises(SsvizError, match="too short"):
        read_corpus(b"tiny")
    with pytest.raises(SsvizError, match="binary"):
        read_corpus(b"\x00" * 200)
    with pytest.raises(SsvizError, match="layers"):
        TrainConfig(layers=7).validate()


# --- one training core -------------------------------------------------------------------------------------
import ast  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import FrozenInstanceError, fields, replace  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as hst  # noqa: E402

import ssviz  # noqa: E402
from ssviz.corpus import MAX_INSERTED_CHARS, Split, split_text  # noqa: E402
from ssviz.errors import NonFiniteError, SettingsError  # noqa: E402
from ssviz.models import CharRNN, load_checkpoint  # noqa: E402
from ssviz.train import evaluate_loss, option_specs, parse_option  # noqa: E402
from tests.conftest import TINY_VOCAB  # noqa: E402

TINY = dict(layers=1, hidden=12, embedding_dim=8, epochs=1, batch_size=32, patience=None)


def _import_graph() -> dict[str, set[str]]:
    """ssviz's module graph from the source (every import, including ones inside functions)."""
    root = Path(ssviz.__file__).parent
    mods = {}
    for p in root.rglob("*.py"):
        parts = list(p.relative_to(root.parent).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p

    def resolve(name):  # a module of ssviz, or None (a name inside a module, or nothing at all)
        return name if name in mods else None

    graph = {}
    for mod, path in mods.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):  # import a.b.c runs a, a.b and a.b.c
                names = [".".join(a.name.split(".")[:i + 1]) for a in node.names for i in range(a.name.count(".") + 1)]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            deps.update(r for r in map(resolve, (n for n in names if n.startswith("ssviz"))) if r and r != mod)
        graph[mod] = deps
    return graph


def test_ssviz_has_no_import_cycle():
    graph = _import_graph()
    assert {"ssviz.train", "ssviz.defenses.dp", "ssviz.corpus"} <= set(graph)
    assert "ssviz.train" not in graph["ssviz.defenses.dp"]  # defenses plug into training, not the reverse
    state, cycles = {}, []

    def visit(m, trail):
        state[m] = "open"
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                cycles.append(trail[trail.index(d):] + [d])
            elif d not in state:
                visit(d, trail + [d])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


@pytest.mark.slow
@pytest.mark.parametrize("order", [("ssviz.defenses.dp", "ssviz.train"), ("ssviz.train", "ssviz.defenses.dp")])
def test_modules_import_in_any_order(order):
    code = "; ".join(f"import {m}" for m in order) + "; import ssviz.train as t; t.default_backend"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_training_imports_no_defense_defenses_register_themselves():
    graph = _import_graph()
    for mod in ("ssviz.train", "ssviz.corpus", "ssviz.training_plugins"):
        assert not any(d.startswith("ssviz.defenses") for d in graph[mod]), mod
    assert "ssviz.train" not in graph["ssviz.defenses.quantize"]


@pytest.mark.slow
def test_a_backend_and_a_hook_are_imported_by_name_when_a_config_asks_for_them():
    code = ("import sys; import ssviz.train as t; assert 'ssviz.defenses.dp' not in sys.modules; "
            "assert t.default_backend(t.TrainConfig(dp_noise=1.0)).__name__ == 'DPBackend'; "
            "assert t.default_backend(t.TrainConfig()) is t.PlainBackend; "
            "from ssviz import training_plugins as p; assert p.hook('quantize').__module__ == 'ssviz.defenses.quantize'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_an_unknown_backend_or_hook_is_a_settings_error():
    from ssviz import training_plugins
    from ssviz.errors import SettingsError
    with pytest.raises(SettingsError, match="unknown training backend 'nope'.*dp, plain"):
        training_plugins.backend("nope")
    with pytest.raises(SettingsError, match="unknown training hook 'nope'.*quantize"):
        training_plugins.hook("nope")


def test_a_model_of_the_other_kind_is_refused_for_an_arch(tiny_model):
    with pytest.raises(SsvizError, match="the model given is a character RNN but arch is gpt2"):
        train("abc\n" * 100, TrainConfig(arch="gpt2", epochs=1), model=tiny_model)


def test_from_config_is_the_seeded_default_init_without_global_state():
    for arch in ("lstm", "gru"):
        cfg = TrainConfig(arch=arch, layers=2, hidden=12, embedding_dim=8, seed=5)
        torch.manual_seed(123)
        a = CharRNN.from_config(TINY_VOCAB, cfg)
        torch.manual_seed(456)  # the global RNG's state plays no part
        b = CharRNN.from_config(TINY_VOCAB, cfg)
        torch.manual_seed(5)  # and it is exactly what seeding torch and calling the constructor gave
        c = CharRNN(TINY_VOCAB, arch=arch, embedding_dim=8, hidden_size=12, num_layers=2)
        for (k, x), y, z in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
            assert torch.equal(x, y) and torch.equal(x, z), k
        other = CharRNN.from_config(TINY_VOCAB, replace(cfg, seed=6))
        assert not torch.equal(other.head.weight, a.head.weight)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("extra", [dict(layers=2, dropout=0.3),
                                   pytest.param(dict(dp_noise=1.0, dropout=0.2, layers=2), marks=pytest.mark.slow)])
def test_two_trainings_in_threads_are_reproducible(small_corpus, extra):
    """Concurrent trainings (the app runs them in threads) give the weights a single run gives."""
    cfg = TrainConfig(**{**TINY, "epochs": 2, **extra}, seed=9)
    text = small_corpus[:6000]
    alone = train(text, cfg).model
    out, errors = [None, None], []

    def run(i):
        try:
            out[i] = train(text, cfg).model
        except Exception as e:  # pragma: no cover - shown by the assert below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):  # draw from torch's global RNG meanwhile: must not matter
        torch.rand(1000)
        time.sleep(0.001)
    assert not errors
    for model in out:
        for k, v in _weights(alone).items():
            assert torch.equal(model.state_dict()[k], v), k


def test_the_canary_passed_in_is_never_modified(small_corpus):
    canary = Canary(Template("PIN {d:2}"), "PIN 42", 2)  # the formatted form: train normalizes a copy
    res = train(small_corpus[:5000], TrainConfig(**TINY), canary)
    assert canary.secret == "PIN 42" and res.canary.secret == "42" and res.canary.insertions == 2
    with pytest.raises(FrozenInstanceError):
        canary.secret = "13"


# --- the split: train | validation (early stopping) | test (test_loss) ----------------------------------------
@settings(max_examples=40, deadline=None)
@given(hst.lists(hst.text("ab \n", max_size=30), min_size=1, max_size=60).map("".join),
       hst.floats(0.02, 0.49))
def test_split_partitions_the_text_at_line_boundaries(text, fraction):
    s = split_text(text, fraction)
    assert s.train + s.val + s.test == text == s.text
    for part in (s.train, s.val):  # cut after a newline unless the part holds none at all
        assert part.endswith("\n") or "\n" not in part


def test_test_loss_is_measured_on_a_test_split_early_stopping_never_sees(small_corpus):
    text = small_corpus[:12000]
    cfg = TrainConfig(**{**TINY, "epochs": 3, "patience": 2})
    split = split_text(text, cfg.val_fraction)
    assert split.val and split.test and split.val != split.test
    res = train(text, cfg)
    vocab = res.model.vocab
    assert res.test_loss == pytest.approx(evaluate_loss(res.model, torch.tensor(vocab.encode(split.test)), 20))
    assert res.test_loss != pytest.approx(res.epochs[-1]["val_loss"])
    # a different test split changes test_loss and nothing else: validation and training never read it
    lines = split.test.split("\n")
    other = train(replace(split, test="\n".join(reversed(lines))), cfg)
    assert [r["val_loss"] for r in other.epochs] == [r["val_loss"] for r in res.epochs]
    assert other.test_loss != res.test_loss
    assert train(split, cfg).test_loss == res.test_loss  # a Split is used as given


# --- canary insertion ----------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(hst.lists(hst.text("xy", max_size=5), max_size=8).map("\n".join), hst.booleans(),
       hst.integers(1, 12), hst.integers(0, 2 ** 32))
def test_inserted_canaries_are_whole_lines_that_never_glue(body, trailing_newline, k, seed):
    text = body + ("\n" if trailing_newline else "")
    out = insert_canary(text, "CANARY", k, seed)
    for following in ("", "NEXT", "\nNEXT"):  # whatever is appended later (a validation part, a file)
        assert (out + following).split("\n").count("CANARY") == k
    assert out.replace("CANARY\n", "") in (text, text + "\n")  # the text itself is untouched


def test_a_million_insertions_take_linear_time():
    text = "\n".join(f"line {i}" for i in range(20_000))
    t0 = time.perf_counter()
    baseline = ("The secret is 123456\n" * 1_000_000 + text).split("\n")  # touching output-sized data once
    base = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = insert_canary(text, "The secret is 123456", 1_000_000, seed=0)
    took = time.perf_counter() - t0
    assert out.count("The secret is 123456\n") == 1_000_000 and len(out) >= sum(map(len, baseline))
    assert out.replace("The secret is 123456\n", "").rstrip("\n") == text
    assert took < 30 * base + 1.0, (took, base)  # quadratic list.insert took minutes


def test_insertions_are_bounded_before_allocating():
    t0 = time.perf_counter()
    with pytest.raises(SettingsError, match="fewer times"):
        insert_canary("a\nb\n", "The secret is 123456", 10 ** 9)
    assert time.perf_counter() - t0 < 0.5 and MAX_INSERTED_CHARS < 10 ** 9 * 20


# --- options declared once, validated once -----------------------------------------------------------------
@pytest.mark.parametrize("bad", [
    {"lr": float("nan")}, {"lr": float("inf")}, {"lr": -1.0}, {"lr": 0.0}, {"seed": -1}, {"seed": 2 ** 64},
    {"patience": -1}, {"layers": 0}, {"layers": 7}, {"hidden": 1.5}, {"epochs": True}, {"batch_size": 0},
    {"dropout": 1.0}, {"dropout": float("nan")}, {"weight_decay": float("-inf")}, {"arch": "rnn"},
    {"val_fraction": 0.5}, {"dp_delta": 2}, {"dp_epsilon": float("nan")}, {"dp_noise": -1.0},
    {"dp_clip": 0}, {"quantize": 1}, {"grad_clip": float("nan")}, {"exposure_method": "guess"},
    {"exposure_samples": 3}, {"dp_accountant": "gdp"}, {"seq_len": "20"},
])
def test_every_bad_setting_is_refused_with_one_line_naming_it(bad):
    (name, value), = bad.items()
    with pytest.raises(SettingsError, match=f"^{name} must be") as e:
        TrainConfig(**bad).validate()
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value) and len(str(e.value)) < 200


def test_canary_insertions_are_validated_on_construction():
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(SettingsError, match="insertions"):
            Canary(Template("PIN {d:2}"), "42", bad)
    assert Canary(Template("PIN {d:2}"), "42", 0).insertions == 0


def test_options_carry_help_and_bounds_and_parse_from_text():
    specs = option_specs()
    assert set(specs) == {f.name for f in fields(TrainConfig)}
    assert all(spec["help"] for spec in specs.values())
    assert parse_option("lr", "1e-3") == 0.001 and parse_option("epochs", "1e2") == 100
    assert parse_option("quantize", "none") is None and parse_option("arch", "gru") == "gru"
    for name, raw in (("lr", "nan"), ("epochs", "2.5"), ("patience", "-1"), ("arch", "rnn"), ("seed", "x")):
        with pytest.raises(SettingsError, match=name):
            parse_option(name, raw)


def test_cli_options_derive_from_the_config(capsys):
    from ssviz.cli import build_parser
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for name, spec in option_specs().items():
        flag = "--" + name.replace("_", "-")
        assert (flag in shown) == spec["cli"], flag
        if spec["cli"]:
            assert " ".join(spec["help"].split())[:40] in shown
    args = parser.parse_args(["train", "c.txt", "--out", "m.safetensors", "--lr", "0.01", "--patience", "0",
                              "--dp-accountant", "prv"])
    from ssviz.cli.train import config_from_args
    cfg = config_from_args(args)
    assert (cfg.lr, cfg.patience, cfg.dp_accountant, cfg.early_stopping) == (0.01, None, "prv", False)


@pytest.mark.parametrize("option", [["--lr", "nan"], ["--lr", "inf"], ["--seed", "-1"], ["--patience", "-2"],
                                    ["--insertions", "-5"], ["--dropout", "nan"], ["--epochs", "0"]])
def test_cli_refuses_bad_settings_before_any_work(tmp_path, capsys, monkeypatch, option):
    from ssviz.cli import main
    import ssviz.cli.train as cli_train
    corpus = tmp_path / "c.txt"
    corpus.write_text("some words here\n" * 50)
    monkeypatch.setattr(cli_train, "train", lambda *a, **k: pytest.fail("trained despite a bad setting"))
    out = tmp_path / "m.safetensors"
    assert main(["train", str(corpus), "--out", str(out), "--canary", "PIN {d:2}", *option]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and not out.exists()


# --- early stopping: patience 0 disables it everywhere ---------------------------------------------------------
def test_patience_zero_disables_early_stopping(small_corpus):
    text = small_corpus[:6000]
    for patience in (0, None):
        res = train(text, TrainConfig(**{**TINY, "epochs": 3, "patience": patience}))
        assert len(res.epochs) == 3
    assert TrainConfig(patience=0).early_stopping is False and TrainConfig(patience=2).early_stopping


# --- divergence ------------------------------------------------------------------------------------------------
DIVERGING = dict(layers=1, hidden=12, embedding_dim=8, epochs=3, batch_size=1024, patience=None)


def test_a_diverging_training_keeps_the_last_finite_model(small_corpus):
    text = small_corpus[:8000]  # one batch per epoch: epoch 1 ends finite, epoch 2's loss is inf
    res = train(text, TrainConfig(**DIVERGING, lr=1e34))
    assert res.diverged["epoch"] == 2 and res.diverged["kept_epoch"] == 1 and len(res.epochs) == 1
    assert "diverged in epoch 2" in res.warning and "epoch 1" in res.warning and "\n" not in res.warning
    assert all(torch.isfinite(p).all() for p in res.model.parameters()) and math.isfinite(res.test_loss)
    one = train(text, TrainConfig(**{**DIVERGING, "epochs": 1}, lr=1e34))  # the model epoch 1 ended with
    for k, v in one.model.state_dict().items():
        assert torch.equal(res.model.state_dict()[k], v), k
    # with early stopping on, the kept model is the best finite one
    early = train(text, TrainConfig(**{**DIVERGING, "patience": 3}, lr=1e34))
    assert early.diverged["kept_epoch"] == 1 and early.test_loss == res.test_loss


@pytest.mark.parametrize("lr", [1e35, 1e37])
def test_divergence_before_any_epoch_finished_is_an_error_naming_the_epoch(small_corpus, lr):
    with pytest.raises(NonFiniteError, match="diverged in epoch 1.*nothing finite to keep"):
        train(small_corpus[:8000], TrainConfig(**DIVERGING, lr=lr))


def test_cli_saves_the_last_finite_checkpoint_and_exits_2(small_corpus, tmp_path, capsys):
    from ssviz.cli import main
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_corpus[:8000])
    common = [str(corpus), "--layers", "1", "--hidden", "12", "--embedding-dim", "8", "--epochs", "3",
              "--batch-size", "1024", "--patience", "0", "--json"]
    out = tmp_path / "m.safetensors"
    assert main(["train", *common, "--out", str(out), "--lr", "1e34"]) == 2
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert len(payload["epochs"]) == 1 and math.isfinite(payload["test_loss"])
    assert "diverged in epoch 2" in captured.err and str(out) in captured.err
    model = load_checkpoint(out)
    assert model.extra_config["training"]["diverged"]["kept_epoch"] == 1
    nothing = tmp_path / "n.safetensors"
    assert main(["train", *common, "--out", str(nothing), "--lr", "1e37"]) == 2
    assert "diverged in epoch 1" in capsys.readouterr().err and not nothing.exists()


# --- outputs: never the input, never an unrelated file, writable before training ----------------------------
@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "data" / "c.txt"
    path.parent.mkdir()
    path.write_text("some words here\n" * 60)
    return path


def _out_variants(corpus: Path):
    link = corpus.parent / "link.safetensors"
    link.symlink_to(corpus)
    hard = corpus.parent / "hard.txt"
    os.link(corpus, hard)
    return [str(corpus), str(corpus.parent / ".." / "data" / "c.txt"), str(link), str(hard)]


def test_cli_train_refuses_to_overwrite_its_corpus(corpus_file, capsys, monkeypatch):
    from ssviz.cli import main
    import ssviz.cli.train as cli_train
    monkeypatch.setattr(cli_train, "train", lambda *a, **k: pytest.fail("trained before refusing"))
    before = corpus_file.read_bytes()
    for out in _out_variants(corpus_file):
        for force in ([], ["--force"]):
            assert main(["train", str(corpus_file), "--out", out, *force]) == 2
            assert "is the input file" in capsys.readouterr().err
    monkeypatch.chdir(corpus_file.parent)
    assert main(["train", "c.txt", "--out", "./c.txt"]) == 2
    assert corpus_file.read_bytes() == before


def test_cli_train_refuses_an_existing_file_that_is_not_a_checkpoint(corpus_file, tmp_path, capsys,
                                                                      monkeypatch):
    from ssviz.cli import main
    import ssviz.cli.train as cli_train
    trained = []
    real_train = cli_train.train
    monkeypatch.setattr(cli_train, "train", lambda *a, **k: trained.append(1) or real_train(*a, **k))
    common = ["--layers", "1", "--hidden", "8", "--embedding-dim", "8", "--epochs", "1"]
    for content in (b"my notes\n", b"", b"\x00\x01binary"):
        victim = tmp_path / "notes.safetensors"
        victim.write_bytes(content)
        assert main(["train", str(corpus_file), "--out", str(victim), *common]) == 2
        assert "not a checkpoint" in capsys.readouterr().err and victim.read_bytes() == content
    assert not trained
    assert main(["train", str(corpus_file), "--out", str(victim), "--force", *common]) == 0
    load_checkpoint(victim)
    assert main(["train", str(corpus_file), "--out", str(victim), *common]) == 0  # a checkpoint: replaced


@pytest.mark.parametrize("where", ["under_file", "folder", "unwritable"])
def test_cli_checks_outputs_are_writable_before_training(corpus_file, tmp_path, capsys, monkeypatch, where):
    from ssviz.cli import main
    import ssviz.cli.train as cli_train
    import ssviz.defenses.sanitize as sanitize_mod
    import ssviz.sweeps as sweeps_mod
    if where == "unwritable" and os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    if where == "under_file":
        bad = corpus_file / "model.safetensors"  # a path below a regular file
    elif where == "folder":
        bad = tmp_path
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        bad = locked / "model.safetensors"
    for mod, attr in ((cli_train, "train"), (sanitize_mod, "sanitize"), (sweeps_mod, "train")):
        monkeypatch.setattr(mod, attr, lambda *a, **k: pytest.fail("work started before the output check"))
    commands = [["train", str(corpus_file), "--out", str(bad)],
                ["sanitize", str(corpus_file), "--method", "lpd", "--out", str(bad)],
                ["sweep", str(corpus_file), "--canary", "PIN {d:2}", "--grid", "hidden=8,16", "--db", str(bad)]]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and str(bad) in err


def test_cli_sanitize_and_sweep_refuse_the_corpus_as_output(corpus_file, capsys):
    from ssviz.cli import main
    before = corpus_file.read_bytes()
    for out in _out_variants(corpus_file):
        assert main(["sanitize", str(corpus_file), "--method", "regex", "--out", out]) == 2
        assert "is the input file" in capsys.readouterr().err
        assert main(["sweep", str(corpus_file), "--canary", "PIN {d:2}", "--grid", "hidden=8", "--db", out]) == 2
        assert "is the input file" in capsys.readouterr().err
    assert corpus_file.read_bytes() == before


def test_no_code_of_the_project_edits_sys_path_and_the_library_imports_no_streamlit():
    """The package is installed (pyproject), so nothing finds it through the repo's layout; ssviz/ stays usable
    without the app."""
    root = Path(ssviz.__file__).parent.parent
    files = [*root.glob("ssviz/**/*.py"), *root.glob("bench/*.py"), *root.glob("models/*.py"), *root.glob("ui/*.py"),
             *root.glob("pages/*.py"), root / "app.py"]
    assert len(files) > 50
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys":
                pytest.fail(f"{path.relative_to(root)} uses sys.path")
            if path.is_relative_to(root / "ssviz") and isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] == "streamlit" for n in names), path
