"""Credentials kept out of what a run writes or says: the query string of every URL in a
text (a presigned URL's signature and key id) is replaced before the text leaves.

    redact("clip https://b.s3.amazonaws.com/v.wav?X-Amz-Signature=abc failed")
        -> "clip https://b.s3.amazonaws.com/v.wav?… failed"

Used wherever text leaves the process: metadata and segments, the one-line error of a
command, a failed chunk's reason, the worker's errors about reference clips, and the log
lines Prefect sends to its API. It lives with the worker so both sides share it.
"""

import logging
import re
from typing import Any

# a URL: its scheme, any user:password@ (a credential), the rest up to a query or fragment,
# which runs to the next space, quote or bracket, less trailing punctuation
_URL = re.compile(
    r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<user>[^\s/?#@'\"<>]*@)?"
    r"(?P<rest>[^\s?#'\"<>]+)(?P<query>[?#][^\s'\"<>)\]]*?)?(?=[.,;:!?]*(?:[\s'\"<>)\]]|$))",
    re.I,
)


def _cut(m: re.Match[str]) -> str:
    user = "…@" if m["user"] else ""
    return m["scheme"] + user + m["rest"] + ("?…" if m["query"] else "")


def redact(text: str) -> str:
    """`text` with every URL's user:password and its query string and fragment cut to "…"."""
    return _URL.sub(_cut, text)


def redacted(value: Any) -> Any:
    """A JSON-like value with `redact` applied to every string in it."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redacted(item) for item in value]
    return value


class RedactingFilter(logging.Filter):
    """A log filter that redacts each record's message before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: the handler reports it as logging does
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:  # a traceback's messages too
            record.exc_text = redact(_FORMATTER.formatException(record.exc_info))
        return True


_FORMATTER = logging.Formatter()


def redact_logs() -> None:
    """Install RedactingFilter on every handler of the root and Prefect loggers (once)."""
    names = ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "narrator")
    for logger in map(logging.getLogger, names):
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
