"""The paper's own defense numbers (Carlini et al., The Secret Sharer, USENIX Security 2019), for comparison.

Table 7 (section 8.3): a 2x200 LSTM trained 100 epochs on Penn Treebank with a
canary, with and without differential privacy. These are published figures,
kept as data here so the app and any report quote them from one place.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

import pandas as pd


@dataclass(frozen=True)
class PaperRow:
    model: str       # optimizer, with or without DP
    epsilon: str     # as printed in the paper ("-" without DP, "inf" for DP-SGD without a bound)
    test_loss: float
    exposure: float  # bits


TABLE7_SETTING = "PTB, 2x200 LSTM, 100 epochs"
TABLE7: tuple[PaperRow, ...] = (
    PaperRow("DP, RMSProp", "0.65", 1.69, 1.1),
    PaperRow("DP, RMSProp", "1.21", 1.59, 2.3),
    PaperRow("DP, RMSProp", "5.26", 1.41, 1.8),
    PaperRow("DP, RMSProp", "89", 1.34, 2.1),
    PaperRow("DP, RMSProp", "2e8", 1.32, 3.2),
    PaperRow("DP, RMSProp", "1e9", 1.26, 2.8),
    PaperRow("DP, SGD", "inf", 2.11, 3.6),
    PaperRow("No DP, SGD", "-", 1.86, 9.5),
    PaperRow("No DP, RMSProp", "-", 1.17, 31.0),
)

# what the paper found for the defenses Table 7 does not cover
FINDINGS = ("Regularization (dropout, weight decay, quantization) left exposure unchanged in the paper "
            "(Appendix D); LPD sanitization ranked a once-only secret in its top 10% (Appendix F).")


def table7() -> pd.DataFrame:
    """Table 7 as a table with the columns the app shows."""
    return pd.DataFrame([astuple(r) for r in TABLE7], columns=["model", "epsilon", "test loss", "exposure"])
