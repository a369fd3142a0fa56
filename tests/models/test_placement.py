"""Device and precision: names resolve in one place, every model moves with place(), log-probabilities stay
float32 whatever the weights' precision, and bfloat16 ranks a memorized secret as float32 does."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from ssviz import exposure
from ssviz.demo import DEMO_CANARY, DEMO_CHECKPOINT, DEMO_TRANSFORMER, DEMO_TRANSFORMER_CANARY
from ssviz.models import load_model
from ssviz.models.placement import PlacementError, autocast, resolve, resolve_device, resolve_dtype
from ssviz.scoring import score_fillers, score_texts
from ssviz.templates import Template

CUDA = torch.cuda.is_available()


def test_auto_is_the_cpu_in_float32_without_a_gpu():
    if CUDA:
        assert resolve("auto", "auto") == (torch.device("cuda", torch.cuda.current_device()), torch.bfloat16) \
            or resolve("auto", "auto")[1] == torch.float16
    elif not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        assert resolve("auto", "auto") == (torch.device("cpu"), torch.float32)
    assert resolve("cpu", "bfloat16") == (torch.device("cpu"), torch.bfloat16)
    assert resolve_dtype("float16", "cpu") == torch.float16
    assert resolve_dtype(torch.float32, "cpu") == torch.float32


@pytest.mark.parametrize("device, dtype, words", [
    ("tpu", "auto", "unknown device"), ("cpu", "int8", "unknown dtype"), ("cuda:99", "auto", "cuda:99"),
])
def test_bad_or_absent_devices_are_one_clear_error(device, dtype, words):
    with pytest.raises(PlacementError, match=words):
        resolve(device, dtype)


@pytest.mark.skipif(CUDA, reason="this machine has a GPU")
def test_cuda_without_a_gpu_says_so():
    with pytest.raises(PlacementError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_autocast_only_where_it_applies():
    import contextlib
    assert isinstance(autocast(torch.device("cpu"), torch.float32), contextlib.nullcontext)
    assert isinstance(autocast(torch.device("cpu"), torch.float16), contextlib.nullcontext)
    assert not isinstance(autocast(torch.device("cpu"), torch.bfloat16), contextlib.nullcontext)


def test_place_moves_a_model_and_keeps_log_probabilities_float32(tiny_model):
    model = copy.deepcopy(tiny_model)
    assert (model.device.type, model.dtype) == ("cpu", torch.float32)
    assert model.place("cpu", "bfloat16") is model
    assert model.dtype == torch.bfloat16 and model.embedding.weight.dtype == torch.bfloat16
    lp, _ = model.run(torch.tensor([[1, 2, 3]]), model.initial_state(1))
    assert lp.dtype == torch.float32
    assert torch.allclose(lp.exp().sum(-1), torch.ones(1, 3), atol=1e-5)
    ref = score_texts(tiny_model, ["abc 12", "my pin"])
    got = score_texts(model, ["abc 12", "my pin"])
    assert np.allclose(got, ref, atol=0.5) and not np.array_equal(got, ref)  # rounded weights, same model


def _exact_rank(model, template: str, secret: str) -> tuple[int, float]:
    res = exposure.measure(model, Template(template), secret, "exact")
    return res.rank, res.exposure


@pytest.mark.slow
@pytest.mark.parametrize("source, canary", [(DEMO_CHECKPOINT, DEMO_CANARY),
                                            (DEMO_TRANSFORMER, DEMO_TRANSFORMER_CANARY)])
def test_bfloat16_on_cpu_ranks_the_secret_as_float32_does(source, canary):
    """Over 10^3 fillers around the planted secret (its first three digits fixed), by exact enumeration."""
    template = canary["template"].replace("{d:6}", canary["secret"][:3] + "{d:3}")
    secret = canary["secret"][3:]
    full = load_model(source, device="cpu", dtype="float32")
    half = load_model(source, device="cpu", dtype="bfloat16")
    assert half.dtype == torch.bfloat16 and full.dtype == torch.float32
    rank32, exp32 = _exact_rank(full, template, secret)
    rank16, exp16 = _exact_rank(half, template, secret)
    assert rank16 == rank32
    assert exp16 == pytest.approx(exp32)  # the same rank in the same space: the same exposure
    fillers = Template(template).random_fillers(20, seed=1)
    a, b = score_fillers(full, Template(template), fillers), score_fillers(half, Template(template), fillers)
    assert np.abs(a - b).max() < 1.0  # bits per text: bfloat16 rounds weights, not the float32 accumulation


@pytest.mark.skipif(not CUDA, reason="no CUDA GPU here")
@pytest.mark.parametrize("source, canary", [(DEMO_CHECKPOINT, DEMO_CANARY),
                                            (DEMO_TRANSFORMER, DEMO_TRANSFORMER_CANARY)])
def test_float32_on_the_gpu_equals_the_cpu(source, canary):
    """Every computation accepts the GPU: scores, exact and sampled exposure and search equal the CPU's."""
    from ssviz.extraction import extract
    template = Template(canary["template"].replace("{d:6}", canary["secret"][:2] + "{d:4}"))
    secret = canary["secret"][2:]
    cpu = load_model(source, device="cpu", dtype="float32")
    gpu = load_model(source, device="cuda", dtype="float32")
    assert gpu.device.type == "cuda"
    fillers = template.random_fillers(200, seed=0) + [secret]
    assert np.abs(score_fillers(cpu, template, fillers) - score_fillers(gpu, template, fillers)).max() < 1e-3
    assert np.abs(score_texts(cpu, [template.format(f) for f in fillers[:20]])
                  - score_texts(gpu, [template.format(f) for f in fillers[:20]])).max() < 1e-3
    assert _exact_rank(cpu, template.text, secret)[0] == _exact_rank(gpu, template.text, secret)[0]
    for method in ("sampled", "search"):
        assert exposure.measure(gpu, template, secret, method, samples=500).exposure > 0
    assert extract(gpu, template, "dijkstra", top_k=1).found == extract(cpu, template, "dijkstra", top_k=1).found
    half = load_model(source, device="cuda", dtype="bfloat16")
    assert _exact_rank(half, template.text, secret)[0] == _exact_rank(cpu, template.text, secret)[0]
