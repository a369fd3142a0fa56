"""ssviz: The Secret Sharer, interactively. Run with ``streamlit run app.py``.

Pages live in ``pages/``; all computation comes from the ``ssviz`` library and
the Streamlit glue (state, caches, widgets) from ``ui``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ui.widgets import mark_navigation

PAGES = Path(__file__).resolve().parent / "pages"


def pages() -> dict[str, list]:
    """The navigation: analysis pages in the order a workshop walks through them."""
    def page(name: str, title: str, icon: str, **kw):
        path = PAGES / f"{name}.py"
        return st.Page(str(path), title=title, icon=icon, url_path=name, **kw) if path.is_file() else None

    nav = {
        "ssviz": [page("home", "Home", ":material/home:", default=True)],
        "Measure": [page("model", "Model & corpus", ":material/memory:"),
                    page("template", "Secret template", ":material/password:"),
                    page("exposure", "Exposure", ":material/bar_chart:"),
                    page("extraction", "Extraction", ":material/account_tree:")],
        "Study": [page("comparison", "Per-user comparison", ":material/group:")],
    }
    nav["Study"].append(page("defenses", "Defenses", ":material/shield:"))
    # a page file that is missing (e.g. defenses.py, owned by another team) is left out, not an error
    return {section: [p for p in entries if p is not None] for section, entries in nav.items()}


st.set_page_config(page_title="ssviz: The Secret Sharer", page_icon=":material/key:", layout="wide")
page = st.navigation(pages())
mark_navigation()
page.run()
