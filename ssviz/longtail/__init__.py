"""The long tail: what a model memorized of the examples in its training data (counterfactual memorization, influence, verbatim extraction)."""
