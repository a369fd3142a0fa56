"""The user's own training loop: the Trainer callback logs exposure, the pre-flight refuses canaries that
get no loss, and measure_canaries equals ssviz's own exposure."""

from __future__ import annotations

import json

import pytest
import torch

from ssviz.errors import CanaryError, SsvizError
from ssviz.integrations import ExposureCallback, check_pipeline, measure_canaries, read_curve

CANARY = {"pin": ("My PIN is {d:3}", "482")}
FILLER = ["the cat sat on the mat and looked at the door.", "a dog ran to the park with a red ball.",
          "we read books in the evening by the fire.", "rain fell on the old roof all night long."]


@pytest.fixture(scope="module")
def tok():
    from ssviz.models.tokenizers import train_tokenizer
    t = train_tokenizer(FILLER * 20 + ["My PIN is 482.", "pin 123 456 789 0"] * 10, vocab_size=300,
                        split_digits=False)
    t.pad_token = t.eos_token
    return t


@pytest.fixture(scope="module")
def gpt2(tok):
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), bos_token_id=0, eos_token_id=1, n_embd=32, n_layer=2, n_head=2, n_positions=64))


def examples(tok, texts, max_length=32, mask=None):
    """Tokenized, padded examples with labels; ``mask(text)`` says a text's labels are all -100."""
    out = []
    for text in texts:
        enc = tok(text, truncation=True, max_length=max_length, padding="max_length")
        labels = [(i if m else -100) for i, m in zip(enc["input_ids"], enc["attention_mask"])]
        if mask and mask(text):
            labels = [-100] * len(labels)
        out.append({"text": text, "input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                    "labels": labels})
    return out


def collate(batch):
    return {k: torch.tensor([b[k] for b in batch]) for k in ("input_ids", "attention_mask", "labels")}


def test_preflight_accepts_a_good_canary(tok):
    data = examples(tok, FILLER + ["My PIN is 482."])
    got = check_pipeline(data, collate, tok, CANARY)
    assert got["pin"]["examples"] == 1 and got["pin"]["tokens"] >= 1


def test_preflight_refuses_a_truncated_canary(tok):
    long = " ".join(FILLER) + " My PIN is 482."
    data = examples(tok, FILLER + [long], max_length=16)
    with pytest.raises(CanaryError, match="truncated away") as e:
        check_pipeline(data, collate, tok, CANARY, texts=data)
    assert isinstance(e.value, ValueError) and isinstance(e.value, SsvizError) and "\n" not in str(e.value)


def test_preflight_refuses_a_masked_canary(tok):
    data = examples(tok, FILLER + ["My PIN is 482."], mask=lambda t: "PIN" in t)
    with pytest.raises(CanaryError, match="masked out of the loss"):
        check_pipeline(data, collate, tok, CANARY)


def test_preflight_refuses_a_canary_split_by_packing(tok):
    ids = [i for t in FILLER + ["My PIN is 482."] for i in tok(t)["input_ids"]]
    at = len(ids) - 3  # a block boundary inside the canary
    blocks = [{"input_ids": ids[:at], "labels": ids[:at]}, {"input_ids": ids[at:], "labels": ids[at:]}]
    with pytest.raises(CanaryError, match="split across two packed blocks"):
        check_pipeline(blocks, lambda b: {k: torch.tensor([x[k] for x in b]) for k in b[0]}, tok, CANARY)


def test_preflight_refuses_a_run_shorter_than_an_epoch(tok):
    with pytest.raises(CanaryError, match="shorter than an epoch"):
        check_pipeline(examples(tok, FILLER + ["My PIN is 482."]), collate, tok, CANARY, examples_per_epoch=2)


def test_measure_canaries_equals_exposure_of_the_wrapped_model(gpt2, tok):
    from ssviz.exposure import measure
    from ssviz.models.hf import HFLanguageModel
    from ssviz.templates import Template
    gpt2.train()
    got = measure_canaries(gpt2, tok, CANARY, method="exact")["pin"]
    assert gpt2.training and next(gpt2.parameters()).requires_grad  # the loop's model is left as it was
    gpt2.eval()  # dropout off, as the measurement has it
    ref = measure(HFLanguageModel(gpt2, tok, freeze=False), Template(CANARY["pin"][0]), "482", "exact")
    assert got["exposure"] == pytest.approx(ref.exposure) and got["rank"] == ref.rank


def test_curve_file_is_checked():
    with pytest.raises(SsvizError, match="not an exposure curve"):
        read_curve(b"{\"records\": [{\"step\": 1}]}")
    assert read_curve({"records": [{"step": 2, "epoch": 1.0, "name": "a", "exposure": 3.5, "rank": 4}]})[0]["rank"] == 4


@pytest.mark.slow
def test_trainer_logs_exposure_and_writes_the_curve(gpt2, tok, tmp_path):
    from transformers import Trainer, TrainingArguments
    data = examples(tok, (FILLER + ["My PIN is 482."]) * 2)
    out = tmp_path / "curve.json"
    cb = ExposureCallback(CANARY, tokenizer=tok, method="exact", out=out)
    args = TrainingArguments(output_dir=str(tmp_path / "run"), per_device_train_batch_size=5, num_train_epochs=2,
                             eval_strategy="epoch", logging_strategy="epoch", save_strategy="no", report_to=[],
                             use_cpu=True, disable_tqdm=True, learning_rate=1e-2, seed=0)
    trainer = Trainer(model=gpt2, args=args, train_dataset=data, eval_dataset=data[:2], data_collator=collate,
                      processing_class=tok, callbacks=[cb])
    trainer.train()
    logged = [h for h in trainer.state.log_history if "exposure/pin" in h]
    assert len(logged) == 2 and all("rank/pin" in h for h in logged)
    assert logged[-1]["step"] == trainer.state.global_step
    curve = read_curve(out.read_bytes())
    assert [r["step"] for r in curve] == [h["step"] for h in logged]
    assert curve[-1]["exposure"] == pytest.approx(measure_canaries(gpt2, tok, CANARY, method="exact")["pin"]["exposure"])
    assert json.loads(out.read_text())["records"][0]["name"] == "pin"
    names = [type(c).__name__ for c in trainer.callback_handler.callbacks]
    assert names.index("ExposureCallback") == 1  # right after the flow callback, before any reporter
    metrics = trainer.evaluate()
    assert "exposure/pin" in metrics
    args.eval_strategy = "no"
    bad = Trainer(model=gpt2, args=args, train_dataset=examples(tok, FILLER + [" ".join(FILLER) + " My PIN is 482."],
                                                                   max_length=16),
                  data_collator=collate, processing_class=tok, callbacks=[ExposureCallback(CANARY, tokenizer=tok)])
    with pytest.raises(CanaryError, match="truncated away"):
        bad.train()
