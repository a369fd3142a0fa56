"""Page 4, Extraction: recover the secret from the model alone, and replay the search step by step."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ssviz.extraction import beam_search, extract
from ssviz.plots.search_tree import found_so_far, frontier, shown_node, tree_figure, tree_nodes
from ssviz.templates import Template
from ui import cache, state
from ui.widgets import analysis_header, cached_job, chart, download_table, job_for, run_page

ALGORITHMS = {"dijkstra": "Shortest path (exact, best first)", "beam": "Beam search (keeps the N best prefixes)",
              "sampling": "Sampling from the model", "brute": "Brute force (score every filler)"}
STEP = "w_trace_step"
PLAYING = "ssviz_trace_playing"
TRACE_CAP = {"max_trace_steps": 400, "max_trace_children": 120}
AUTO_RUN_LIMIT = 10 ** 6  # spaces up to this size are searched as soon as the page opens


def settings() -> dict:
    """The search's settings, kept across visits to other pages (they key its cached result)."""
    c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
    algorithm = c1.selectbox("Algorithm", list(ALGORITHMS), format_func=ALGORITHMS.get,
                             **state.setting("w_ext_algorithm", "dijkstra"))
    opts: dict = {"top_k": int(c4.select_slider("Fillers reported", [1, 5, 10, 20, 50, 100, 1_000],
                                                help="How many of the most likely fillers to keep: a secret that "
                                                     "is not first may still be among them",
                                                **state.setting("w_ext_top", 10)))}
    if algorithm == "dijkstra":
        opts["max_nodes"] = c2.select_slider("Node budget", [1_000, 10_000, 100_000, 1_000_000],
                                             **state.setting("w_ext_nodes", 100_000))
        opts["batch_size"] = c3.select_slider("Nodes popped per step", [1, 4, 8, 16, 64],
                                              help="Fewer per step = a finer replay; more = faster search",
                                              **state.setting("w_ext_batch", 8))
        opts["max_memory_mb"] = c4.select_slider("Search memory (MB)", [64, 256, 512, 2_048, 8_192],
                                                 help="Model states and the frontier: a run that reaches it stops "
                                                      "with what it found; raise it, or lower the budget",
                                                 **state.setting("w_ext_memory", 512))
    elif algorithm == "beam":
        opts["beam_width"] = c2.select_slider("Beam width", [1, 2, 3, 5, 10, 100, 1000],
                                              **state.setting("w_ext_beam", 5))
    elif algorithm == "sampling":
        opts["samples"] = c2.select_slider("Samples", [100, 1_000, 10_000, 100_000],
                                           **state.setting("w_ext_samples", 1_000))
    return {"algorithm": algorithm, **opts}


def search_key(current, template: Template, opts: dict) -> tuple:
    return ("extraction", current.key, template.text, tuple(sorted(opts.items())))


JOB = "ssviz_extraction_job"


def run_search(current, template: Template, opts: dict, *, start: bool):
    """The search's result, cached per session by its inputs, run as a background job: by a click, or by
    itself for a small space (once: a run the user stopped keeps its partial result, shown, not cached, and
    is not restarted). None while it runs or when nothing was asked for."""
    def run(progress, stop):
        return extract(current.model, template, opts["algorithm"], trace=True, progress=progress, stop=stop,
                       **TRACE_CAP, **{k: v for k, v in opts.items() if k != "algorithm"})

    return cached_job(JOB, search_key(current, template, opts), "Searching...", run, start=start,
                      auto=template.space_size <= AUTO_RUN_LIMIT, again="Press **Search** to run again.")


def summary(res, template: Template, secret: str) -> None:
    c = st.columns(4)
    c[0].metric("Best filler", res.found or "none")
    c[1].metric("Its log-perplexity", f"{res.log_perplexity:.2f} bits" if res.log_perplexity is not None else "–")
    c[2].metric("Nodes expanded", f"{res.nodes_expanded:,}")
    c[3].metric("Time", f"{res.seconds:.2f} s")
    if res.found == secret:
        st.success(f"Extracted the secret: `{template.format(secret)}` is the model's most likely filler.")
    else:
        where = res.against(secret)
        if where["secret_rank"]:
            st.warning(f"The secret is number {where['secret_rank']} among the {len(res.top)} fillers found, not "
                       "the first.")
        else:
            st.info(f"The secret `{secret}` is not among the {len(res.top)} fillers this run found"
                    + (f"; the closest, `{where['closest']}`, shares its first {where['shared_prefix']} characters."
                       if where["shared_prefix"] else "."))
    if not res.complete:
        st.warning(f"Incomplete run: {res.message}")
    top = pd.DataFrame(res.top)
    if not top.empty:
        top.insert(1, "text", [template.format(f) for f in top["filler"]])
        top["is the secret"] = top["filler"] == secret
        with st.expander(f"Top {len(top)} fillers"):
            st.dataframe(top.round(3), hide_index=True)
            download_table(top, "extraction-top")


def _step_by(delta: int, last: int) -> None:
    st.session_state[STEP] = min(last, max(0, st.session_state.get(STEP, 0) + delta))


def _toggle_play(last: int) -> None:
    playing = not st.session_state.get(PLAYING, False)
    if playing and st.session_state.get(STEP, 0) >= last:
        st.session_state[STEP] = 0
    st.session_state[PLAYING] = playing


def replay(trace: dict, secret: str) -> None:
    st.subheader("Step through the search")
    if trace.get("unit") == "token":
        st.caption("The model reads tokens, so every level of the tree is one token: each node shows the text of "
                   "its last token (␣ is a space) and the cost in bits of the path to it. The root is the text "
                   "every filler starts with.")
    last = len(trace["steps"]) - 1
    if st.session_state.get(STEP, 0) > last:
        st.session_state[STEP] = last
    playing = st.session_state.get(PLAYING, False)
    st.fragment(_replay_view, run_every=0.8 if playing else None)(trace, secret, last, playing)


def _replay_view(trace: dict, secret: str, last: int, ticking: bool) -> None:
    """The replay; while playing, this fragment reruns on a timer and advances one step per tick."""
    playing = st.session_state.get(PLAYING, False)
    if playing and st.session_state.get(STEP, 0) >= last:
        st.session_state[PLAYING] = playing = False
    if playing != ticking:  # Play/Pause or the end: rebuild the fragment with (or without) its timer
        st.rerun(scope="app")
    if playing:
        _step_by(1, last)
    c = st.columns([1.5, 1.2, 1.2, 6])
    c[0].button("Previous", icon=":material/skip_previous:", on_click=_step_by, args=(-1, last), key="trace_prev",
                disabled=playing)
    c[1].button("Pause" if playing else "Play", icon=":material/pause:" if playing else ":material/play_arrow:",
                on_click=_toggle_play, args=(last,), key="trace_play")
    c[2].button("Next", icon=":material/skip_next:", on_click=_step_by, args=(1, last), key="trace_next",
                disabled=playing)
    st.session_state.setdefault(STEP, 0)
    step = c[3].slider("Step", 0, max(last, 1), key=STEP, disabled=last == 0 or playing)
    step = min(step, last)
    s = trace["steps"][step]
    current = [n["node"] for n in tree_nodes(trace, step, secret) if n["status"] == "current"]
    shown = ", ".join(f"`{shown_node(n, trace)}`" if n else "the root" for n in current[:8])
    action = f"expanded {shown}" if current else "scored the next chunk of fillers"
    st.markdown(f"**Step {step} of {last}** · {action}"
                + (" …" if len(current) > 8 else "") + f" · frontier size {s['frontier_size']:,}"
                + (" · trace capped: some steps or nodes were not recorded" if trace.get("capped") else ""))
    fig = tree_figure(trace, step, secret, title=f"{ALGORITHMS.get(trace['algorithm'], trace['algorithm'])}, "
                                                 f"step {step}")
    chart(fig, f"search-tree-step-{step}", key="tree")
    c1, c2 = st.columns(2)
    with c1:
        st.markdown("**Frontier** (cheapest waiting nodes)")
        waiting = [{**n, "node": shown_node(n["node"], trace)} for n in frontier(trace, step)]
        st.dataframe(pd.DataFrame(waiting, columns=["node", "cost"]).round(2), hide_index=True, height=250)
    with c2:
        st.markdown("**Fillers found so far**")
        st.dataframe(pd.DataFrame(found_so_far(trace, step)[:50], columns=["filler", "log_perplexity"]).round(2),
                     hide_index=True, height=250)


MISS_CASE = {"template": "call me at {d:4}", "width": 1}  # on the demo, width-1 beam returns 0000, the best is 1000
CMP_TEMPLATE = "ssviz_cmp_template"  # a template shown only in the comparison (the miss case), else None
CMP_WIDTH = "w_ext_cmp_beam"


def _show_miss_case() -> None:
    st.session_state[CMP_TEMPLATE] = MISS_CASE["template"]
    st.session_state[CMP_WIDTH] = MISS_CASE["width"]


def _back_to_own_template() -> None:
    st.session_state[CMP_TEMPLATE] = None


CMP_EXACT_JOB = "ssviz_cmp_exact_job"
CMP_BEAM_JOB = "ssviz_cmp_beam_job"


def comparison_runs(current, template: Template, width: int):
    """Shortest path and beam search at ``width`` on the same template, each a background job with Stop and
    cached on what it depends on (shortest path not on the width). For a large space shortest path waits
    for **Run the comparison**; (None, None) until both are there."""
    exact_key = ("cmp-dijkstra", current.key, template.text)  # independent of the beam width
    large = template.space_size > AUTO_RUN_LIMIT
    ran = job_for(CMP_EXACT_JOB, exact_key)
    clicked = False
    if cache.result(exact_key) is None and not (ran and ran.running) and (large or ran):
        clicked = st.button("Run the comparison", icon=":material/play_arrow:", key="cmp_run")
        if large and not clicked and not ran:
            st.info(f"|R| = {template.space_size:,}: press **Run the comparison** (up to 100,000 nodes).")

    def run_exact(progress, stop):
        return extract(current.model, template, "dijkstra", top_k=5, batch_size=8, max_nodes=100_000, trace=True,
                       progress=progress, stop=stop, **TRACE_CAP)

    def run_beam(progress, stop):
        return beam_search(current.model, template, beam_width=width, top_k=5, trace=True, progress=progress,
                           stop=stop, **TRACE_CAP)

    exact = cached_job(CMP_EXACT_JOB, exact_key, "Shortest path...", run_exact, start=clicked, auto=not large,
                       again="Press **Run the comparison** to run again.")
    if exact is None:
        return None, None
    beam = cached_job(CMP_BEAM_JOB, ("cmp-beam", current.key, template.text, width),
                      f"Beam search, width {width}...", run_beam, start=False, auto=True)
    return (beam, exact) if beam is not None else (None, None)


def comparison_verdict(beam, exact, width: int) -> tuple[str, str]:
    """(kind, message): a miss is claimed only when shortest path certified its answer (a complete run)."""
    if not exact.complete:
        return "info", (f"Inconclusive: shortest path stopped before certifying the best filler ({exact.message}), "
                        f"so we cannot tell whether the beam of width {width} missed it.")
    if beam.found is None:
        return "info", f"Inconclusive: the beam search of width {width} ended before its last slot ({beam.message})."
    if beam.found != exact.found:
        return "warning", (f"The beam of width {width} missed the most likely filler `{exact.found}` "
                           f"({exact.log_perplexity:.2f} bits) and returned `{beam.found}` "
                           f"({beam.log_perplexity:.2f} bits): the prefix it needed was pruned early.")
    return "info", f"Both found `{exact.found}`. Press **Show a case where beam search misses** to see a miss."


def beam_vs_dijkstra(current, template: Template, secret: str) -> None:
    st.subheader("Why beam search can miss")
    unit = current.model.unit_name
    st.caption(f"Beam search keeps only the N cheapest prefixes at each {unit} and never returns to the "
               "others; shortest path keeps every prefix in its frontier and always expands the cheapest, so "
               f"it cannot miss the most likely filler. A secret whose first {unit}s look unlikely is pruned "
               "by a narrow beam.")
    c1, c2 = st.columns([3, 2])
    st.session_state.setdefault(CMP_WIDTH, 2)
    width = c1.select_slider("Beam width for the comparison", [1, 2, 3, 5, 10], key=CMP_WIDTH)
    shown_text = st.session_state.get(CMP_TEMPLATE)
    own = not shown_text or shown_text == template.text
    if not own:
        c2.button("Back to your template", icon=":material/undo:", on_click=_back_to_own_template, key="cmp_back")
        st.caption(f"Comparing on `{shown_text}` (not your template): the model never saw a phone number "
                   "there, and a narrow beam commits to the wrong first digit.")
        template = Template(shown_text)
        template.check_vocab(current.model.vocab)
    else:
        c2.button("Show a case where beam search misses", icon=":material/lightbulb:", on_click=_show_miss_case,
                  key="cmp_miss_case")
    beam, exact = comparison_runs(current, template, width)
    if exact is None:
        return
    highlight = secret if own else exact.found  # the miss case has no secret: show the path to the best filler
    c1, c2 = st.columns(2)
    for col, res, name in ((c1, beam, f"Beam search, width {width}"), (c2, exact, "Shortest path")):
        with col:
            nodes = tree_nodes(res.trace, len(res.trace["steps"]) - 1, highlight)
            pruned = sum(n["status"] == "pruned" for n in nodes)
            expanded = sum(n["status"] in ("expanded", "current") for n in nodes)
            verdict = ("no complete filler yet" if res.found is None else
                       ("found the secret" if own and res.found == secret else f"returned `{res.found}`")
                       + f" ({res.log_perplexity:.2f} bits)")
            st.markdown(f"**{name}**: {verdict} · {expanded} prefixes expanded"
                        + (f", {pruned} pruned" if pruned else "") + ("" if res.complete else " · incomplete"))
            fig = tree_figure(res.trace, len(res.trace["steps"]) - 1, highlight, height=460)
            chart(fig, f"{name}-tree", key=f"cmp_{res.algorithm}")
    kind, message = comparison_verdict(beam, exact, width)
    getattr(st, kind)(message)


def body() -> None:
    current, template, secret = analysis_header(
        "Extraction", "Can an attacker who only queries the model recover the secret? Search the template's fillers "
                   "for the ones the model finds most likely.")
    opts = settings()
    clicked = st.button("Search", type="primary", icon=":material/play_arrow:", key="ext_run")
    res = run_search(current, template, opts, start=clicked)
    if res is None:
        if st.session_state.get(JOB) is None:
            st.info(f"|R| = {template.space_size:,}: press **Search** to run (it may take a while; the budget "
                    "above bounds it).")
        return
    summary(res, template, secret)
    if res.trace and res.trace["steps"]:
        replay(res.trace, secret)
    beam_vs_dijkstra(current, template, secret)


run_page(body)
