"""The one exception type that means "the user's input is wrong" (CLI exit code 2)."""


class UserError(Exception):
    """A problem with a spec, a command-line value or a data file, stated in one line.

    The message names the file and the key (or field) and what was expected, so the CLI can
    print it as is, without a traceback.
    """
