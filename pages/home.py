"""Landing page: what the app measures and where to start."""

from __future__ import annotations

import streamlit as st

from ssviz.demo import DEMO_CANARY, DEMO_CONTROL
from ui.widgets import model_banner, page_header, run_page


def body() -> None:
    page_header(
        "ssviz: does your model remember secrets?",
        "Language models trained on private text can **memorize** rare secrets in it, such as a credit-card "
        "number that appears a few times. Following *The Secret Sharer* (Carlini et al., 2019), ssviz inserts "
        "a **canary** (a random secret of a known format) into the training data and measures its **exposure**: "
        "how much more likely the trained model finds the canary than other fillers of the same format. "
        "High exposure means the secret can be **extracted**.")
    st.markdown(
        f"The bundled demo model is ready: a 2x200 LSTM trained on a small English corpus with the canary "
        f"`{DEMO_CANARY['template'].replace('{d:6}', DEMO_CANARY['secret'])}` inserted "
        f"{DEMO_CANARY['insertions']} times. The control `{DEMO_CONTROL}` was never inserted.")
    model_banner()
    c1, c2, c3 = st.columns(3)
    with c1.container(border=True):
        st.markdown("**1. Model & corpus**  \nUse the demo, upload a checkpoint, or train a small model with "
                    "a canary of your own.")
        st.page_link("pages/model.py", label="Choose a model", icon=":material/memory:")
    with c2.container(border=True):
        st.markdown("**2-3. Template & exposure**  \nPick the secret's format, then see where the secret falls "
                    "among all possible fillers.")
        st.page_link("pages/exposure.py", label="Measure exposure", icon=":material/bar_chart:")
    with c3.container(border=True):
        st.markdown("**4. Extraction**  \nWatch a shortest-path search recover the secret from the model "
                    "alone, and why beam search can miss it.")
        st.page_link("pages/extraction.py", label="Extract the secret", icon=":material/account_tree:")
    st.caption("Everything runs locally; nothing leaves this machine. Exposure of a secret from a space of "
               "size |R| ranges from 0 to log2|R| bits; the maximum means the model ranks it first.")


run_page(body)
