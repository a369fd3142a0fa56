"""Streamlit-only helpers for the app (session state, caching, shared widgets, error display).

The thin server layer: everything computed lives in ``ssviz`` (which never
imports streamlit); these modules only keep state and draw.
"""
