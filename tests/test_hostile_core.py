"""Hostile and careless input to the core (checkpoints, templates, option values, outputs): one clear
error each, raised before work or memory is spent, never a traceback, NaN or a wrong result."""

import copy
import json
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save as st_save

from ssviz import exposure
from ssviz.cli import main
from ssviz.errors import CheckpointError, MissingFileError, NonFiniteError, SettingsError, SpaceTooLargeError, TemplateError, VocabularyError
from ssviz.extraction import beam_search, extract, sample, shortest_path
from ssviz.memory import available_bytes, ensure_memory
from ssviz.models import Vocab, checkpoint_bytes, load_checkpoint, save_checkpoint
from ssviz.scoring import score_fillers, score_space, score_texts
from ssviz.templates import MAX_FILLER_LENGTH, Template

PIN = Template("My PIN is {d:4}")


@pytest.fixture(scope="module")
def overflowing(tiny_model):
    """Finite but huge weights: every output is NaN (the hostile test's 'silently wrong' model)."""
    model = copy.deepcopy(tiny_model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for w in (model.head.weight, model.embedding.weight):
            w.copy_(torch.randn(w.shape, generator=gen).sign() * 3e38)
    return model


# --- Python conventions ------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: Template("no slot"),
    lambda: PIN.normalize("12x4"),
    lambda: Vocab(["a", "a"]),
    lambda: exposure.interpolation([float("nan")], [1.0, 2.0]),
    lambda: exposure.fit_skewnorm([1.0] * 20),
    lambda: exposure.measure(None, PIN, "1234", method="nope"),
])
def test_bad_values_are_value_errors(make):
    with pytest.raises(ValueError):
        make()


def test_a_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError):  # and still the ssviz error the app and CLI catch
        load_checkpoint(tmp_path / "nope.safetensors")


# --- non-finite models -------------------------------------------------------------------------
def test_a_model_with_non_finite_outputs_is_refused_at_load_time(overflowing, tmp_path):
    tensors = {k: v.contiguous() for k, v in overflowing.state_dict().items()}
    assert all(torch.isfinite(t).all() for t in tensors.values())  # each weight alone is finite
    path = save_checkpoint(overflowing, tmp_path / "huge.safetensors")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_checkpoint(path)


@pytest.mark.parametrize("run", [
    lambda m: score_fillers(m, PIN, ["1234", "0000"]),
    lambda m: score_texts(m, ["My PIN is 1234"]),
    lambda m: score_space(m, PIN),
    lambda m: exposure.measure(m, PIN, "1234", "exact"),
    lambda m: exposure.measure(m, PIN, "1234", "skewnorm", samples=50),
    lambda m: shortest_path(m, PIN, top_k=1),
    lambda m: beam_search(m, PIN, beam_width=4),
    lambda m: sample(m, PIN, samples=20),
    lambda m: extract(m, PIN, "brute"),
], ids=["score", "texts", "space", "exact", "skewnorm", "dijkstra", "beam", "sampling", "brute"])
def test_non_finite_outputs_are_an_error_naming_the_model(overflowing, run):
    overflowing.source = "models/huge.safetensors"
    with pytest.raises(NonFiniteError, match="models/huge.safetensors"):
        run(overflowing)


def test_cli_score_never_prints_nan(tmp_path, overflowing, capsys):
    raw = checkpoint_bytes(overflowing)
    path = tmp_path / "huge.safetensors"
    path.write_bytes(raw)
    code = main(["score", "--checkpoint", str(path), "--template", PIN.text, "--secret", "1234", "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "NaN" in err and err.count("\n") == 1


# --- malformed checkpoints: one short line each ------------------------------------------------
def _safetensors_with(header_meta, tensors=None):
    tensors = tensors or {"x": torch.zeros(1)}
    data = st_save(tensors)
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header["__metadata__"] = header_meta
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


def _deep(n):
    return "[" * n + "]" * n


@pytest.mark.parametrize("meta, match", [
    (["not", "an", "object"], "metadata must be a JSON object"),
    ({"config": _deep(100_000)}, "nested too deeply|not valid JSON"),
    ({"config": "[1, 2, 3]"}, "config must be a JSON object"),
    ({"config": json.dumps({"arch": ["lstm"], "vocab": ["a"], "embedding_dim": 1, "hidden_size": 1,
                            "num_layers": 1})}, "unknown arch"),
    ({"config": json.dumps({"arch": "lstm", "vocab": {"a": 1}, "embedding_dim": 1, "hidden_size": 1,
                            "num_layers": 1})}, "vocab must be a non-empty list"),
    ({"config": json.dumps({"arch": "lstm", "vocab": ["a"], "embedding_dim": [1], "hidden_size": 1,
                            "num_layers": 1})}, "embedding_dim must be a positive integer"),
    ({"nothing": "here"}, "no 'config' key"),
])
def test_malformed_configs_get_one_short_line(meta, match):
    with pytest.raises(CheckpointError, match=match) as err:
        load_checkpoint(_safetensors_with(meta))
    assert len(str(err.value)) < 300 and "\n" not in str(err.value)


@pytest.mark.slow
def test_thousands_of_tensor_names_are_summarized(tiny_model):
    config = dict(tiny_model.config)
    tensors = {f"junk.{i}": torch.zeros(1) for i in range(5000)}
    tensors.update({k: v.contiguous() for k, v in tiny_model.state_dict().items()})
    data = st_save(tensors, metadata={"config": json.dumps(config)})
    with pytest.raises(CheckpointError, match=r"unexpected tensor\(s\) \(5000\).*and 4,995 more") as err:
        load_checkpoint(data)
    assert len(str(err.value)) < 500


def test_a_huge_vocabulary_gets_a_short_message():
    config = {"arch": "lstm", "vocab": [chr(0x4E00 + i % 20000) for i in range(200_000)], "embedding_dim": 1,
              "hidden_size": 1, "num_layers": 1}
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(_safetensors_with({"config": json.dumps(config)}))
    assert len(str(err.value)) < 300


def test_torch_warnings_do_not_precede_a_refusal(tmp_path, capfd):
    path = tmp_path / "legacy.pt"
    torch.save({"config": "x", "state_dict": {"a": torch.zeros(1)}}, path, _use_new_zipfile_serialization=False)
    code = main(["score", "--checkpoint", str(path), "--template", PIN.text, "--secret", "1234"])
    _, err = capfd.readouterr()
    assert code == 2 and err.count("\n") == 1 and "Warning" not in err


# --- sizes checked before allocating ----------------------------------------------------------
@pytest.mark.parametrize("text, match", [
    ("x{[" + "ab" * 5_000_000 + "]:3}", "characters long"),
    ("x{d:100000000}", "longer than"),
    ("a{[\x00-\U0010ffff]:2}", "more than 1,024 characters"),
    ("x" + "{d:200}" * 2, "add up to more than"),
    ("x{q:" + "9" * 1000 + "}", "characters long|bad slot"),
])
def test_templates_too_large_are_refused_quickly_with_a_short_message(text, match):
    with pytest.raises(TemplateError, match=match) as err:
        Template(text)
    assert len(str(err.value)) < 200


def test_the_largest_allowed_filler_still_works():
    t = Template("x{d:%d}" % MAX_FILLER_LENGTH)
    assert t.filler_length == MAX_FILLER_LENGTH


def test_messages_never_echo_a_filler():
    secret = "98765432"
    with pytest.raises(TemplateError) as err:
        PIN.normalize(secret)
    assert secret not in str(err.value)


def test_vocabulary_errors_stay_short():
    v = Vocab(list("abc"))
    with pytest.raises(VocabularyError) as err:
        v.encode("a" + "".join(chr(0x4E00 + i) for i in range(100_000)))
    assert len(str(err.value)) < 300


def test_memory_beyond_the_machine_is_refused_before_allocating(tiny_model):
    assert ensure_memory(1024, "a little") is None
    with pytest.raises(SpaceTooLargeError, match="memory"):
        ensure_memory(available_bytes() * 10, "a lot")
    t = Template("My PIN is {d:12}")
    with pytest.raises(SpaceTooLargeError, match="memory"):
        exposure.measure(tiny_model, t, "0" * 12, "skewnorm", samples=10 ** 12)
    with pytest.raises(SpaceTooLargeError, match="memory"):
        score_space(tiny_model, t, limit=10 ** 13)
    with pytest.raises(SpaceTooLargeError, match="memory"):
        beam_search(tiny_model, t, beam_width=10 ** 12)
    with pytest.raises(SpaceTooLargeError, match="memory"):
        sample(tiny_model, t, samples=10 ** 13)
    with pytest.raises(SpaceTooLargeError, match="memory"):
        shortest_path(tiny_model, t, max_memory_mb=10 ** 12)


@pytest.mark.parametrize("samples", [0, -5, 9, 2.5, True])
def test_sample_counts_are_validated(tiny_model, samples):
    with pytest.raises(SettingsError):
        exposure.measure(tiny_model, PIN, "1234", "skewnorm", samples=samples)


# --- CLI options validated where they are declared ------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["exposure", "--samples", "-1"], ["exposure", "--samples", "nan"], ["exposure", "--seed", "-3"],
    ["exposure", "--threads", "0"], ["extract", "--top", "0"], ["extract", "--max-seconds", "nan"],
    ["extract", "--max-seconds", "inf"], ["extract", "--beam-width", "-2"], ["extract", "--seed", "1e3"],
])
def test_bad_option_values_exit_2_before_any_work(argv, capsys):
    base = {"exposure": ["--checkpoint", "x", "--template", "PIN", "--secret", "1234"],
            "extract": ["--checkpoint", "x", "--template", "PIN"]}[argv[0]]
    with pytest.raises(SystemExit) as e:
        main([argv[0], *base, *argv[1:]])
    assert e.value.code == 2
    assert "expected" in capsys.readouterr().err


def test_trace_path_is_checked_before_the_search(tmp_path, canary_model, capsys, monkeypatch):
    ckpt = save_checkpoint(canary_model, tmp_path / "c.safetensors")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    import ssviz.cli.extract as cli_extract
    monkeypatch.setattr(cli_extract, "extract", lambda *a, **k: pytest.fail("searched before checking --trace"))
    code = main(["extract", "--checkpoint", str(ckpt), "--template", "My PIN is {d:4}", "--trace",
                 str(blocker / "trace.json")])
    assert code == 2 and "is a file, not a folder" in capsys.readouterr().err


def test_missing_fillers_file(tmp_path, canary_model, capsys):
    ckpt = save_checkpoint(canary_model, tmp_path / "c.safetensors")
    code = main(["score", "--checkpoint", str(ckpt), "--template", "PIN", "--fillers", str(tmp_path / "none")])
    assert code == 2 and "not found" in capsys.readouterr().err


def test_json_output_is_strict_json():
    from ssviz.jsonable import finite_json
    out = finite_json({"a": float("nan"), "b": [1.0, float("inf")], "c": np.float64("nan"), "d": 2})
    assert json.loads(json.dumps(out, allow_nan=False)) == {"a": None, "b": [1.0, None], "c": None, "d": 2}
