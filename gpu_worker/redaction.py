"""Credentials kept out of what a run writes or says: the query string of every URL in a
text (a presigned URL's signature and key id), a URL's user:password, a credential header's
value, and every secret the process registered are replaced before the text leaves.

    redact("clip https://b.s3.amazonaws.com/v.wav?X-Amz-Signature=abc failed")
        -> "clip https://b.s3.amazonaws.com/v.wav?… failed"
    redact('echo: {"Authorization": "Bearer rp_123"}')  -> 'echo: {"Authorization": "…"}'

Used wherever text leaves the process: every NarratorError's message, metadata and
segments, the one-line error of a command, a failed chunk's reason, the worker's errors
about reference clips, and the log lines Prefect sends to its API. It lives with the worker
so both sides share it. `CredentialFree` keeps credentials out of flow parameters, which
are stored as given.
"""

import logging
import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field

# a URL: its scheme, any user:password@ (a credential), the rest up to a query or fragment,
# which runs to the next space, quote or bracket, less trailing punctuation
_URL = re.compile(
    r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<user>[^\s/?#'\"<>]*@)?"
    r"(?P<rest>[^\s?#'\"<>]+)(?P<query>[?#][^\s'\"<>)\]]*?)?(?=[.,;:!?]*(?:[\s'\"<>)\]]|$))",
    re.I,
)


# a credential header echoed back in an error body or a proxy's page: its whole value, to
# the end of its line or its closing quote (schemes such as "AWS4-HMAC-SHA256 Credential=...,
# Signature=..." and cookies such as "a=1; session=..." carry it after spaces and commas)
_HEADER = re.compile(
    r"(?P<name>\b(?:authorization|proxy-authorization|x-api-key|xi-api-key|api-key|"
    r"x-amz-security-token|cookie|set-cookie)\b['\"]?\s*[:=]\s*['\"]?)[^\r\n'\"}]+",
    re.I,
)
# the secrets this process holds (an API key, AWS's secret key): cut wherever they appear
_secrets: set[str] = set()
MIN_SECRET_CHARS = 8  # shorter values would cut ordinary words


def register_secret(value: str | None) -> None:
    """Cut `value` from every text redacted from now on (where a secret is loaded)."""
    if value and len(value) >= MIN_SECRET_CHARS:
        _secrets.add(value)


def _cut(m: re.Match[str]) -> str:
    user = "…@" if m["user"] else ""
    return m["scheme"] + user + m["rest"] + ("?…" if m["query"] else "")


def redact(text: str) -> str:
    """`text` with every URL's user:password and its query string and fragment cut to "…",
    credential headers' values too, and every registered secret."""
    for secret in list(_secrets):
        text = text.replace(secret, "…")
    return _HEADER.sub(lambda m: m["name"] + "…", _URL.sub(_cut, text))


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" for c in word)


# A credential a URL carries: user:password@, or a query parameter named like one
# (X-Amz-Signature, X-Amz-Credential, X-Goog-Signature, sig, token, api_key, ...). Written
# without inline flags: the same pattern is in the flows' parameter schema, which Prefect's
# server checks in Python and its UI in JavaScript.
CREDENTIAL_PATTERN = (
    r"://[^/?#\s]*@|[?&#;][^=&#\s]*(?:"
    + "|".join(map(_any_case, ("sig", "token", "credential", "secret", "password", "key", "auth")))
    + r")[^=&#\s]*="
)
_CREDENTIAL = re.compile(CREDENTIAL_PATTERN)


def no_credentials(text: str) -> str:
    """`text` unchanged, or a ValueError when it is a URL carrying a credential: a flow's
    parameters are stored by Prefect and shown in its UI, so a presigned URL must not be
    one."""
    if _CREDENTIAL.search(text):
        raise ValueError(
            "a URL carrying a credential (a presigned URL's signature, a password) would be "
            "stored with the run's parameters: give an s3:// URI (read with the worker's own "
            "credentials) or a voice library name (narrator voices add NAME FILE) instead"
        )
    return text


# A flow parameter that must not hold a credential; checked on the flow's call and, for a
# deployment, by the Prefect server before a run is created (its `not` pattern).
CredentialFree = Annotated[
    str,
    AfterValidator(no_credentials),
    Field(json_schema_extra={"not": {"pattern": CREDENTIAL_PATTERN}}),
]


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
