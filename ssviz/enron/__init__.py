"""The Enron-style per-user study (the paper's section 7.2, Tables 5 and 10).

One character model per user, trained on that user's sent mail; for every
secret that occurs naturally in the mail (SSNs, card numbers), its exposure and
whether shortest-path search extracts it.

Modules: ``synthetic`` (a seeded generator of Enron-style maildirs with known
secrets), ``maildir`` (streaming ingestion of real or synthetic maildirs),
:mod:`ssviz.scan` (finding secrets and building their templates), ``pipeline``
(train, measure, extract, store; resumable). Results go to :mod:`ssviz.store`.
"""
