"""ssviz: The Secret Sharer, interactively. Run with ``streamlit run app.py``.

Pages live in ``pages/``; all computation comes from the ``ssviz`` library and
the Streamlit glue (state, caches, widgets, background jobs) from ``ui``.
"""

from __future__ import annotations

import streamlit as st

from ui.widgets import freeze_startup_heap, mark_navigation


def pages() -> dict[str, list]:
    """The navigation: analysis pages in the order a workshop walks through them (page files are
    named relative to this script, as Streamlit resolves them)."""
    def page(name: str, title: str, icon: str, **kw):
        return st.Page(f"pages/{name}.py", title=title, icon=icon, url_path=name, **kw)

    return {
        "ssviz": [page("home", "Home", ":material/home:", default=True),
                  page("tour", "Workshop tour", ":material/school:")],
        "Measure": [page("model", "Model & corpus", ":material/memory:"),
                    page("template", "Secret template", ":material/password:"),
                    page("exposure", "Exposure", ":material/bar_chart:"),
                    page("extraction", "Extraction", ":material/account_tree:")],
        "Study": [page("comparison", "Per-user comparison", ":material/group:"),
                  page("defenses", "Defenses", ":material/shield:"),
                  page("audit", "Privacy audit", ":material/verified_user:"),
                  page("membership", "Membership", ":material/how_to_reg:"),
                  page("longtail", "Long tail", ":material/timeline:"),
                  page("unique_features", "Unique features", ":material/fingerprint:")],
        "Share": [page("report", "Report", ":material/description:")],
    }


st.set_page_config(page_title="ssviz: The Secret Sharer", page_icon="🔑", layout="wide")
page = st.navigation(pages(), expanded=True)  # every page listed: none hidden behind "View more"
mark_navigation()
page.run()
freeze_startup_heap()
