"""The one exception type users see for their own mistakes (bad config, missing package, bad data)."""


class MtptError(Exception):
    """An error caused by the user's input or environment; its message says what to do."""


class MtptWarning(UserWarning):
    """Something that will run but probably not as the user hopes; the CLI prints it as ``mtpt CMD: warning: ...``."""
