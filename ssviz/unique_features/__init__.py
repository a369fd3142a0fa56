"""Unique features (Hartley and Tsaftaris): does a model react to a feature that was in one training example?

``score`` (pure: KL, M2, bootstrap, rank, the class-probability t-test), ``images`` (data, the UF,
classifiers, training, measurement; seeds as executor tasks), ``text`` (the same score over any
``LanguageModel``), ``run`` (the run folder: ``per_input.csv`` and ``unique_features.json``) and
``demo`` (the page's bundled runs). Method and conventions: ``docs/unique-features.md``.
"""
