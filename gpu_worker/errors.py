"""The one error hierarchy of narrator.

Only `TransientError` is retried. Everything else is permanent: retrying it would make the
same mistake again, so it fails its chunk at once with a message that says how to fix it.
"""


class NarratorError(Exception):
    """Base class of every error narrator raises on purpose."""


class TransientError(NarratorError):
    """Worth retrying: 5xx, 429, timeouts, connection resets, a worker out of memory."""


class PermanentError(NarratorError):
    """Not worth retrying: refused credentials, bad input, undecodable output."""


class InputError(PermanentError):
    """The user's input (a file, a request field, an option) is unusable as given."""


class ValidationFailed(PermanentError):
    """Audio was made but no candidate reached the quality threshold and policy says fail."""
