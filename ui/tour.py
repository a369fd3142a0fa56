"""The workshop tour: its steps as data, and a small renderer (the step card, and a reminder on other pages).

A step names the page where it happens and the session state that page needs (model, template, secret,
the page's settings); "Open" applies that state (:func:`ui.state.apply`) and switches page. Every number
in a step's text comes from the library (:func:`facts`), never typed here. The live-memorization settings
(:data:`LIVE_CONFIG`) are data too; ``pages/tour.py`` runs them with the app's one job mechanism.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import streamlit as st

from ssviz.demo import DEMO_CANARY, DEMO_CONTROL
from ssviz.templates import Template
from ssviz.train import TrainConfig
from ui import state

TOUR_PAGE = "pages/tour.py"
STEP = "ssviz_tour_step"  # index of the current step; present once the tour was opened in this session


@dataclass(frozen=True)
class Step:
    """One step: ``text`` and ``question`` are markdown with ``{fact}`` fields (:func:`facts`)."""

    title: str
    page: str                  # the page file where it happens (TOUR_PAGE: the live demo on the tour page)
    page_label: str
    text: str
    question: str
    action: str = ""           # what to do once there
    settings: dict = field(default_factory=dict)  # session state applied by "Open" (ui.state.apply)
    minutes: int = 5


SAMPLED = 2_000     # random fillers of the log-perplexity step (a quick estimate)
SKEWNORM = 10_000   # random fillers the histogram step fits its skew-normal to
DEMO = {state.MODEL: state.DEMO_KEY, state.TEMPLATE: DEMO_CANARY["template"], state.SECRET: DEMO_CANARY["secret"]}

STEPS: tuple[Step, ...] = (
    Step("What is a canary?", "pages/home.py", "Home",
         "Language models are trained on text that may hold secrets: a card number, a password typed into a "
         "chat. To measure whether a model memorizes such things, *The Secret Sharer* (Carlini et al., 2019) "
         "plants a **canary**: a random secret of a known format, here `{canary}`, inserted "
         "{insertions} times into the training text. Because it is random, only memorization can make the "
         "model prefer it. `{control}` is a control of the same format that was never inserted.",
         "If a model read your phone number {insertions} times among hundreds of thousands of sentences, "
         "would it remember it? Would you?",
         settings=DEMO, minutes=5),
    Step("The model and its training data", "pages/model.py", "Model & corpus",
         "The demo model is a small character-level LSTM: it reads text one character at a time and predicts "
         "the next one. It was trained on English prose with the canary planted in it. Look at the number of "
         "parameters and the number of training characters.",
         "The model has fewer parameters than the corpus has characters. Where could a memorized secret "
         "live?",
         settings=DEMO, minutes=5),
    Step("Templates: the space of possible secrets", "pages/template.py", "Secret template",
         "A **template** gives the secret's format: `{template}` has {space:,} possible **fillers**. The "
         "canary is one of them. An attacker who knows the format but not the digits has to guess among all "
         "{space:,}.",
         "How many guesses would an attacker need at random? How many for a social security number "
         "(pick the SSN preset)?",
         settings=DEMO, minutes=5),
    Step("Log-perplexity: how surprised is the model?", "pages/exposure.py", "Exposure",
         "The model gives every text a probability. **Log-perplexity** is its surprise in bits: the sum of "
         "-log2 P(next character) over the text. Lower means more likely. Measure the canary and compare it "
         "with the control in the table under the chart.",
         "Before we press the button: which will the model find less surprising, the canary `{secret}` or "
         "the control `{control}`? By how many bits?",
         action="Press **Measure exposure** (a quick estimate from {samples:,} random fillers).",
         settings={**DEMO, "ssviz_exp_method": "sampled", "ssviz_exp_samples": SAMPLED, "ssviz_exp_seed": 0},
         minutes=8),
    Step("The exposure histogram", "pages/exposure.py", "Exposure",
         "Score many random fillers and draw their log-perplexities: a bell-shaped crowd. The canary sits "
         "far to the left of it, the control in the middle. ssviz fits a **skew-normal** curve to the crowd "
         "to tell how far out in the tail the canary is, even when the space is too big to score completely.",
         "The canary is far left of every random filler. How many fillers would we need to score before "
         "we met one as likely as the canary?",
         action="Press **Measure exposure** (skew-normal fit over {hist_samples:,} random fillers).",
         settings={**DEMO, "ssviz_exp_method": "skewnorm", "ssviz_exp_samples": SKEWNORM, "ssviz_exp_seed": 0},
         minutes=8),
    Step("Rank and exposure", "pages/exposure.py", "Exposure",
         "Score all {space:,} fillers. The canary's **rank** is its place in that list, most likely first. "
         "**Exposure** = log2|R| - log2(rank): 0 bits for a typical filler, {max_bits:.2f} bits (the "
         "maximum) when the canary ranks first. Each bit of exposure halves the guesses an attacker needs.",
         "What does rank 1 of {space:,} mean for the person whose secret this was? And the control's "
         "exposure: is it what chance predicts?",
         action="Press **Measure exposure** (exact: every filler scored, about 10-20 s).",
         settings={**DEMO, "ssviz_exp_method": "exact"}, minutes=8),
    Step("Extraction by shortest-path search", "pages/extraction.py", "Extraction",
         "Exposure says the canary is likely; **extraction** recovers it with nothing but queries to the "
         "model. Shortest-path search treats every prefix of a filler as a node and each character's "
         "-log2 probability as a cost, and always expands the cheapest prefix: the first complete filler it "
         "reaches is the model's most likely one. Step through the search with Next or Play.",
         "Of the {space:,} fillers, how many prefixes did the search have to expand to find the secret?",
         action="The search runs by itself; step through it with **Next** or **Play**.",
         settings={**DEMO, "ssviz_ext_algorithm": "dijkstra", "ssviz_ext_nodes": 100_000, "ssviz_ext_batch": 8},
         minutes=8),
    Step("Beam search can miss", "pages/extraction.py", "Extraction",
         "A cheaper search keeps only the N best prefixes at each character (a **beam**). It is fast, but a "
         "secret whose first characters look unlikely is pruned early and never found. At the bottom of the "
         "page, the same model and a template it never saw: the narrow beam commits to the wrong first digit.",
         "Why does a search that looks at fewer prefixes get a different answer? Is a miss by beam search "
         "evidence that a model is safe?",
         action="Scroll to **Why beam search can miss**: the two trees side by side.",
         settings={**DEMO, "ssviz_ext_algorithm": "dijkstra", "ssviz_cmp_template": "call me at {d:4}",
                   "w_ext_cmp_beam": 1},
         minutes=7),
    Step("Live: watch a model memorize", TOUR_PAGE, "Workshop tour",
         "Now train a small model here, on {live_kb} KB of the demo corpus, with a canary inserted "
         "{live_many} times, and measure its exact exposure after every epoch next to the loss. Then train "
         "again with the canary inserted only once. Ask the room for a {live_digits}-digit number to use as "
         "the secret.",
         "Exposure climbs while the validation loss still falls: is this overfitting? How many insertions "
         "does it take?",
         action="Press **Train: inserted {live_many} times**, then **Train: inserted once**.",
         minutes=10),
    Step("Whose secrets? The per-user study", "pages/comparison.py", "Per-user comparison",
         "The paper's Enron experiment: one model per user, trained on that user's mail, and every social "
         "security and card number found in it measured and searched for. The bundled study uses synthetic "
         "mail; the secrets are stored only as salted hashes and their last 4 digits.",
         "Do secrets that appear more often leak more? Why is a card number (10^16 fillers) harder to "
         "extract than an SSN (10^9) at the same exposure?",
         minutes=8),
    Step("Defenses: does regularization help?", "pages/defenses.py", "Defenses",
         "Dropout, weight decay and quantization make models generalize better; sanitization removes text "
         "that looks like a secret before training. The chart places each defense by canary exposure "
         "(lower is safer) against test loss (further right is a worse model).",
         "Dropout fights overfitting. Does it stop memorization? What does a regex miss that an attacker "
         "would not?",
         minutes=7),
    Step("DP makes the canary disappear", "pages/defenses.py", "Defenses",
         "**DP-SGD** clips every example's gradient and adds noise, so no single example, a canary included, "
         "can change the model much. Its guarantee is **epsilon**: the smaller, the more private. Find the "
         "green DP-SGD points: the canary's exposure drops to what chance gives a never-inserted filler.",
         "The canary is gone, but at what cost in test loss? Which epsilon would you accept for your users' "
         "data?",
         action="Optionally train **DP-SGD** on the spot (several times slower than plain training).",
         settings={"def_defense": "dp", "def_strength": "eps=8"}, minutes=8),
)

# The live demo (step "Live: watch a model memorize"), calibrated on a 2-core CPU (README.md, Workshop mode):
# with the default secret, the canary inserted 8 times climbs 8.7, 12.2, 17.9, 18.9 bits and ranks first of
# 10^6 at epoch 5, 7.4 s from a fresh process on an idle machine (about 0.8 s per epoch). Inserted once it
# stays far below the maximum: 11.0 bits (rank 503) after 8 epochs for that secret, 1.9 bits for another.
LIVE_TEMPLATE = DEMO_CANARY["template"]
LIVE_CHARS = 100_000
LIVE_INSERTIONS = (8, 1)
LIVE_CONFIG = TrainConfig(layers=1, hidden=128, embedding_dim=32, epochs=8, batch_size=128, seq_len=20, lr=0.003,
                          seed=0, patience=None, exposure_method="exact")


def facts() -> dict:
    """The values step texts refer to, from the library and the demo's record."""
    template, live = Template(DEMO_CANARY["template"]), Template(LIVE_TEMPLATE)
    return {"canary": template.format(DEMO_CANARY["secret"]), "secret": DEMO_CANARY["secret"],
            "control": DEMO_CONTROL, "insertions": DEMO_CANARY["insertions"], "template": template.text,
            "space": template.space_size, "max_bits": math.log2(template.space_size),
            "samples": SAMPLED, "hist_samples": SKEWNORM,
            "live_kb": LIVE_CHARS // 1000, "live_many": LIVE_INSERTIONS[0],
            "live_digits": len(live.filler_alphabets)}


def fill(text: str) -> str:
    return text.format(**facts())


def current() -> int:
    return min(max(0, int(st.session_state.get(STEP, 0))), len(STEPS) - 1)


def move(delta: int) -> None:
    st.session_state[STEP] = min(max(0, current() + delta), len(STEPS) - 1)


def open_step(index: int) -> None:
    """Apply step ``index``'s settings and go to its page."""
    st.session_state[STEP] = index
    step = STEPS[index]
    state.apply(step.settings)
    if step.page != TOUR_PAGE:
        st.switch_page(step.page)


def minutes_total() -> int:
    return sum(s.minutes for s in STEPS)


def step_card(index: int, live=None) -> None:
    """Step ``index``: number, title, explanation, the question for the room, and the way to its page
    (``live()`` draws the live demo when the step happens on the tour page itself)."""
    step = STEPS[index]
    st.subheader(f"Step {index + 1} of {len(STEPS)}: {step.title}")
    st.markdown(fill(step.text))
    st.info(f"**Ask the room:** {fill(step.question)}", icon=":material/forum:")
    if step.action:
        st.markdown(f"**Then:** {fill(step.action)}")
    if step.page == TOUR_PAGE:
        if live is not None:
            live()
    elif st.button(f"Open {step.page_label}" + (" with these settings" if step.settings else ""), type="primary",
                   icon=":material/open_in_new:", key="tour_open"):
        open_step(index)


def navigation() -> None:
    """Back and Next (and where we are)."""
    index = current()
    c = st.columns([1, 1, 4])
    c[0].button("Back", icon=":material/arrow_back:", key="tour_back", on_click=move, args=(-1,),
                disabled=index == 0, width="stretch")
    c[1].button("Next", icon=":material/arrow_forward:", key="tour_next", on_click=move, args=(1,),
                disabled=index == len(STEPS) - 1, width="stretch", type="primary")
    step = STEPS[index]
    c[2].caption(f"Step {index + 1} of {len(STEPS)}: about {step.minutes} minutes, on the **{step.page_label}** "
                 f"page · the whole tour about {minutes_total()} minutes")


def agenda() -> None:
    """Every step with its page and minutes; a click jumps there."""
    with st.expander(f"All {len(STEPS)} steps (about {minutes_total()} minutes)"):
        for i, step in enumerate(STEPS):
            st.button(f"{i + 1}. {step.title} · {step.page_label}, {step.minutes} min", key=f"tour_jump_{i}",
                      on_click=_jump, args=(i,), type="tertiary")


def _jump(index: int) -> None:
    st.session_state[STEP] = index


def reminder() -> None:
    """On the other pages, once the tour was opened: the way back to the current step, and its question."""
    if STEP not in st.session_state:
        return
    index = current()
    step = STEPS[index]
    c = st.columns([3, 1.4], vertical_alignment="center")
    c[0].page_link(TOUR_PAGE, label=f"Workshop step {index + 1} of {len(STEPS)}: back to the tour",
                   icon=":material/school:", help=step.title)
    with c[1].popover("Ask the room", icon=":material/forum:", width="stretch"):
        st.markdown(f"**Step {index + 1}: {step.title}**\n\n{fill(step.question)}")


def live_caption(insertions: int, records: list[dict], space: int, running: bool) -> str:
    """Where the run stands: the first epoch that ranked the canary first, else the last epoch's exposure."""
    head = f"**Inserted {'once' if insertions == 1 else f'{insertions} times'}**"
    if not records:
        return f"{head}: {'first epoch running' if running else 'not trained yet'}."
    first = next((r for r in records if r.get("rank") == 1), None)
    if first is not None:
        return (f"{head}: ranked **first of {space:,}** (exposure {first['exposure']:.2f} bits, the maximum) "
                f"after epoch {first['epoch']}, {first['seconds']:.0f} s of training.")
    last = records[-1]
    rank = f", rank {last['rank']:,} of {space:,}" if last.get("rank") else ""
    return f"{head}: exposure {last['exposure']:.2f} of {math.log2(space):.2f} bits after epoch {last['epoch']}{rank}."
