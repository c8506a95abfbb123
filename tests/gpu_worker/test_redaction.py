"""Credentials in URLs are cut out of text; everything else is left as written."""

import logging

import pytest

from gpu_worker.redaction import RedactingFilter, redact, redacted


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "clip https://b.s3.amazonaws.com/v.wav?X-Amz-Signature=abc&X-Amz-Credential=K failed",
            "clip https://b.s3.amazonaws.com/v.wav?… failed",
        ),
        ("heard https://x.com/a.wav?sig=1, then", "heard https://x.com/a.wav?…, then"),
        ("'https://x.com/a.wav?sig=1' (HTTP 403)", "'https://x.com/a.wav?…' (HTTP 403)"),
        ("(see https://x.com/a.wav?sig=1)", "(see https://x.com/a.wav?…)"),
        ("https://user:secret@host.com/v.wav ok", "https://…@host.com/v.wav ok"),
        ("https://x.com/page#token=abc", "https://x.com/page?…"),
        ("s3://bucket/key.wav is fine", "s3://bucket/key.wav is fine"),
        ("http://127.0.0.1:8000/v2/local/run.", "http://127.0.0.1:8000/v2/local/run."),
        ("Really? Yes: no URL here.", "Really? Yes: no URL here."),
    ],
)
def test_only_the_credential_parts_of_urls_are_cut(text: str, said: str) -> None:
    assert redact(text) == said


def test_every_string_of_a_record_is_redacted() -> None:
    cast = {"narrator": {"voice": "https://x/v.wav?sig=1", "speed": 1.0}, "list": ["https://y?t=2"]}
    assert redacted(cast) == {
        "narrator": {"voice": "https://x/v.wav?…", "speed": 1.0},
        "list": ["https://y?…"],
    }


def test_log_lines_and_their_tracebacks_are_redacted() -> None:
    try:
        raise ValueError("fetch https://x/v.wav?sig=SECRET failed")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "t", logging.ERROR, "f", 1, "got %s", ("https://x?k=SECRET",), sys.exc_info()
        )
    assert RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "SECRET" not in text and "got https://x?…" in text and "ValueError" in text
    broken = logging.LogRecord("t", logging.INFO, "f", 1, "%s %s", ("one",), None)
    assert RedactingFilter().filter(broken)  # a malformed call is left to logging to report


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("Authorization: Token abc123secret", "Authorization: …"),
        (
            "authorization: AWS4-HMAC-SHA256 Credential=AKIA/x, SignedHeaders=host, Signature=ab",
            "authorization: …",
        ),
        ("Cookie: a=1; session=SECRETSESSION", "Cookie: …"),
        (
            'echo: {"Authorization": "Bearer rp_123", "ok": 1}',
            'echo: {"Authorization": "…", "ok": 1}',
        ),
        ("https://u:p@ss@host/x ok", "https://…@host/x ok"),
        ("authorized by the keeper", "authorized by the keeper"),  # a word, not a header
    ],
)
def test_echoed_credential_headers_lose_their_whole_value(text: str, said: str) -> None:
    assert redact(text) == said


def test_a_registered_secret_is_cut_wherever_it_appears() -> None:
    from gpu_worker.redaction import register_secret

    register_secret("rp_REGISTERED_9f8e7d6c")
    register_secret("short")  # too short to cut safely: ordinary words would go
    assert (
        redact("key rp_REGISTERED_9f8e7d6c refused; short answer") == "key … refused; short answer"
    )
