"""The one exception type users see: a single line naming what went wrong and where."""


class RnacliError(Exception):
    """A user-facing error. The CLI prints its message alone, without a traceback.

    Messages say which file, key or line was wrong and what was expected.
    """
