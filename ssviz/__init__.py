"""ssviz: measure and extract secrets that language models memorize (Carlini et al., The Secret Sharer).

Library layout: ``models`` (one incremental model interface, checkpoints),
``templates`` (secret formats), ``scoring`` (fast log-perplexity), ``exposure``
(rank and skew-normal estimators), ``train`` (canary insertion and training),
``demo`` (the bundled demo). No Streamlit here: the app in ``pages/`` is a view.
"""

__version__ = "0.1.0"
