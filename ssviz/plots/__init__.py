"""Plot builders: pure functions from data to plotly figures (no streamlit, no I/O).

Import the submodule you need (``ssviz.plots.exposure``, ``search_tree``,
``study``, ``training``, ``defenses``); this package imports nothing itself so
importing one builder never pulls in the others.
"""
