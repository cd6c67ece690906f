"""The one exception type the command-line tools turn into a one-line message."""


class UserError(Exception):
    """A problem with the user's input (flag, file, data) that deserves a one-line message.

    The message says what was wrong and where: a file and line, a column, or a flag.
    Entry points print it as `error: <message>` and exit with status 2, without a traceback.
    """


class TrainingError(Exception):
    """Training could not go on (e.g. the loss became NaN); printed as one line, exit status 1."""
