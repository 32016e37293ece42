"""The one exception type users see."""


class RealSRError(Exception):
    """An error the user can act on (bad path, corrupt image, wrong argument, missing weights).

    The CLI prints its message without a traceback and exits non-zero, so the message
    should say what was wrong and what to do about it.
    """


class UsageError(RealSRError):
    """A bad command line that parsing alone could not catch (an unknown model name, a format
    that does not fit the output name): the CLI prints the one line and exits 2, as argparse does."""
