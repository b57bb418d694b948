"""The one exception type that means "the user's input is wrong" (CLI exit code 2)."""


class UserError(Exception):
    """A problem with a spec, a command-line value or a data file, stated in one line.

    The message names the file and the key (or field) and what was expected, so the CLI can
    print it as is, without a traceback. Control characters that came from the input (a key
    with a newline in it) are escaped, so the message stays one line.
    """

    def __init__(self, message: str):
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message)))
