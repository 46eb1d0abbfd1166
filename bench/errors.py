"""The one exception type the CLI turns into a single line on stderr and a non-zero exit."""


class BenchError(Exception):
    """A user-facing error: the message says what is wrong and where, in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
