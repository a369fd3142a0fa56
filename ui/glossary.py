"""The workshop glossary: every term the pages and the tour use, defined once and shown from every page.

Definitions are data (term -> markdown); :func:`glossary` draws them in the popover that
:func:`ui.widgets.chrome` puts above every page's title. The formulas are the library's
(``ssviz.exposure``, ``ssviz.scoring``).
"""

from __future__ import annotations

import streamlit as st

GLOSSARY: dict[str, str] = {
    "Canary": "A random secret of a known format (such as *The secret code is 281546*) inserted into the "
              "training data on purpose, a few times, to measure whether the trained model remembers it. "
              "Because it is random, nothing but memorization can make the model prefer it.",
    "Template": "The format of a secret: literal text with slots, e.g. `The secret code is {d:6}` (six "
                "digits). It defines the space R of all possible secrets of that format.",
    "Filler": "One way of filling a template's slots (`281546` for `{d:6}`). The canary is one filler; the "
              "others are what the model *could* have memorized instead. There are |R| fillers (10^6 for six "
              "digits).",
    "Log-perplexity": "How surprised the model is by a text, in bits: the sum over its characters of "
                      "-log2 P(character | the characters before it). Lower means more likely. A memorized "
                      "canary has a much lower log-perplexity than other fillers.",
    "Rank": "The canary's position when every filler is sorted by log-perplexity, most likely first (ties "
            "count against it). Rank 1 means the model finds the canary more likely than any other filler.",
    "Exposure": "log2|R| - log2(rank), in bits: 0 for a typical filler, log2|R| (19.93 bits for 10^6 "
                "fillers) when the canary ranks first. Each bit halves the guesses an attacker needs.",
    "Skew-normal": "A bell curve that can lean to one side. When R is too big to score every filler, ssviz "
                   "fits a skew-normal to the log-perplexities of random fillers and reads the canary's "
                   "exposure off its tail (the paper's extrapolation).",
    "Shortest-path search": "Extraction as a graph search (Dijkstra): every prefix of a filler is a node, "
                            "each next character costs its -log2 probability, and the cheapest complete "
                            "filler is the model's most likely one. It never discards a prefix, so it cannot "
                            "miss the most likely filler; a memorized canary is found after few expansions.",
    "Beam search": "Keeps only the N most likely prefixes at each character and drops the rest for good. "
                   "Fast, but a secret whose first characters look unlikely is pruned early and never found.",
    "Epsilon (ε)": "The privacy budget of differential privacy: how much one training example may change "
                   "what the model does, at most a factor e^ε in the probability of any outcome (with a "
                   "small failure probability δ). Smaller is more private; ε ≤ 1 is strong, ε = 8 weak.",
    "DP-SGD": "Differentially private training: each example's gradient is clipped to a maximum norm and "
              "Gaussian noise is added to every batch's sum, so no single example (a canary) can move the "
              "model much. The price is a worse model (higher test loss).",
}


def glossary() -> None:
    """The glossary in the current container."""
    for term, definition in GLOSSARY.items():
        st.markdown(f"**{term}**: {definition}")
