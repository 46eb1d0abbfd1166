"""The exception types: one line on stderr and a non-zero exit at the CLI; typed so that callers decide what
happened without reading message text."""


class BenchError(Exception):
    """A user-facing error: the message says what is wrong and where, in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class ConfigError(BenchError):
    """A value of a run's configuration is wrong.  `owner` says which part ('request' for the run's own numbers,
    'augmenter', 'algo', 'mix'); `field` names the field where one is known, so the CLI can name its flag and a
    study file its line."""

    def __init__(self, message: str, owner: str, field: str | None = None):
        super().__init__(message)
        self.owner = owner
        self.field = field


class NotApplicable(BenchError):
    """The augmenter and trainer cannot be paired (the papers print '-')."""


class DatasetMissing(BenchError):
    """The named dataset is not on this machine (not generated, downloaded or installed)."""


class RunningElsewhere(BenchError):
    """Another process holds the claim on this run's directory: it is being trained there now."""
