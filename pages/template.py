"""Page 2, Secret template: the secret's format (presets or free text) and the secret under test."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from ssviz.errors import SsvizError
from ssviz.plots.tokens import secret_units
from ssviz.templates import MAX_TEMPLATE_CHARS, PRESETS, Template
from ui import state
from ui.widgets import message, model_banner, page_header, run_page, unit_chips

CUSTOM = "Custom"


def _apply_preset() -> None:
    choice = st.session_state["w_preset"]
    if choice != CUSTOM:
        state.put(state.TEMPLATE, PRESETS[choice])
        state.template_changed()


def template_section() -> Template | None:
    current_text = state.get(state.TEMPLATE)
    options = [CUSTOM, *PRESETS]
    preset = next((name for name, text in PRESETS.items() if text == current_text), CUSTOM)
    st.session_state["w_preset"] = preset
    st.selectbox("Preset", options, key="w_preset", on_change=_apply_preset,
                 help="The paper's formats; pick Custom to type your own.")
    st.text_input("Template", key=state.widget(state.TEMPLATE), on_change=state.typed_template,
                  max_chars=MAX_TEMPLATE_CHARS,
                  help="Literal text with slots: {d:N} digits, {a:N} lowercase letters, {x:N} hex digits, "
                       "{[chars]:N} a custom set such as {[A-Z0-9]:4}. Use {{ and }} for literal braces.")
    try:
        template = Template(state.get(state.TEMPLATE))
    except SsvizError as e:  # too long, a huge alphabet or filler: refused before anything is allocated
        st.error(message(f"Invalid template: {e}"))
        return None
    space = template.space_size
    c = st.columns(4)
    c[0].metric("Slots", template.describe_slots())
    c[1].metric("|R| (possible fillers)", f"{space:,}" if space < 10 ** 15 else f"{space:.3e}")
    c[2].metric("log2 |R| (max exposure)", f"{math.log2(space):.2f} bits")
    c[3].metric("Filler length", f"{len(template.filler_alphabets)} characters")
    examples = template.random_fillers(5, seed=0)
    st.dataframe(pd.DataFrame({"filler": examples, "text": [template.format(f) for f in examples]}),
                 hide_index=True)
    return template


def secret_section(template: Template) -> None:
    st.subheader("Secret under test")
    current = state.current_model()
    canary = current.canary
    if canary and Template(canary["template"]) == template:
        st.caption(f"This model was trained with `{canary['secret']}` inserted {canary.get('insertions', '?')} "
                   "times; type any other filler to test it instead.")
    st.text_input("Secret (filler or the whole text)", key=state.widget(state.SECRET), on_change=state.sync,
                  args=(state.SECRET,))
    try:
        secret = template.normalize(state.get(state.SECRET))
        template.check_vocab(current.model.vocab)
    except SsvizError as e:
        st.error(message(e))
        return
    st.success(f"Testing `{template.format(secret)}` (filler `{secret}`, index {template.index_of(secret):,} "
               f"of {template.space_size:,}).")
    units_of(current.model, template, secret)


def units_of(model, template: Template, secret: str) -> None:
    """How the current model splits this template's text into the units it scores."""
    text = template.format(secret)
    try:
        units = model.template_units(template)
        spelled = [t for _, t in units.spell(text)]
    except SsvizError as e:
        st.warning(f"The model cannot read this template: {message(e)}")
        return
    unit = model.unit_name
    st.markdown(f"The model reads it as **{len(spelled)} {unit}s** (the secret's in red):")
    st.html(unit_chips(spelled, secret_units(spelled, text, template)))
    if not units.exact_search:
        st.caption(f"This model's {unit}s merge slot characters with each other or with the text around them: "
                   "every filler is scored on its own units, exactly; search re-scores what it finds.")


def body() -> None:
    page_header("Secret template", "A template is the format of the secret: literal text around slots. Exposure "
                "compares the secret with every other filler of the same template (the space R).")
    model_banner()
    template = template_section()
    if template is not None:
        secret_section(template)


run_page(body)
