"""Exceptions shared across convbench.

`UserError` is a mistake in what the user asked for (a bad suite file, an unknown backend);
the CLI prints it as one line and exits with code 2. Anything else is a bug and keeps its
traceback.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


class Unsupported(Exception):
    """A backend cannot compute this configuration; the message says why.

    Backends raise this instead of returning a wrong answer. The runner records it as a
    result row with status ``unsupported`` and this message as the reason.
    """


class UnknownBackend(UserError, KeyError):
    """`get_backend` was given a name that no registered backend has."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""
