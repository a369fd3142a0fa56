"""Defenses against unintended memorization (the paper's section 8, appendices D and F).

* :mod:`ssviz.defenses.dp` - DP-SGD with Opacus (its DPLSTM/DPGRU and RMSProp; for transformers
  its per-layer hooks, functorch where it has no rule, and AdamW): registers the training backend
  ``"dp"``, which :func:`ssviz.train.train` looks up when ``TrainConfig.dp_epsilon`` or ``dp_noise`` is set.

Every defense accepts the transformers ``train`` builds (``arch`` gpt2 or llama): dropout
between blocks, AdamW's weight decay, quantization of every weight, both sanitizations.
* :mod:`ssviz.defenses.quantize` - 8-bit weight quantization of a trained model; registers the
  post-training hook ``"quantize"`` (``TrainConfig.quantize``).
* :mod:`ssviz.defenses.sanitize` - regex and log-perplexity-difference sanitization.
* :mod:`ssviz.defenses.compare` - one defense trained and measured, as a
  :class:`ssviz.records.DefenseResult`; the results file (``models/defenses/demo-results.json``).
"""
