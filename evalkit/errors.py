"""The one error type users see: a single line naming the file and the fix, exit code 2."""


class EvalkitError(Exception):
    """A problem with the user's input or environment (not a bug in evalkit).

    The CLI prints ``evalkit: error: <message>`` and exits with code 2, without a traceback.
    Messages should name the file (and row) at fault and say how to fix it.
    """

    exit_code = 2
