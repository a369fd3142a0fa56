"""Placeholder: the `extract` subcommands are added by their own issue."""


def register(sub, parent) -> None:
    pass
