"""Errors meant for people: what was wrong, the value received, what to do instead."""


class ReslabError(ValueError):
    """A user-facing error; the CLI prints its message on one line without a traceback."""
