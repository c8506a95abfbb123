"""The bad-input corpus: odd files, odd clips and nonsense options, each with the outcome a
user gets. Every case is a row of the table in docs/RELIABILITY.md (a test keeps the two in
step).

Refused cases run the real `narrator run` command: exit 1 with one line saying what is wrong
(exit 2 where the option parser refuses a number), and nothing written. Accepted text cases
go through phase 1 exactly as the flow reads a chapter (decode, then chunk), asserting what
the engine will be asked to say; one chapter full of them is narrated end to end.
"""

import codecs
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from flows.cli import app
from tasks.text import ChunkingOptions, decode_chapter, make_chunks, unreadable_words
from tests.gpu_worker.test_voices import clip

runner = CliRunner()
PLAIN = b"The boat reached the island at dusk. The keeper waved from the rocks.\n"
DOC = Path(__file__).parents[2] / "docs" / "RELIABILITY.md"


@dataclass(frozen=True)
class Refused:
    name: str  # its row in docs/RELIABILITY.md
    says: str  # in the one-line error
    chapter: bytes | None = PLAIN  # the chapter file (None: no file there)
    args: tuple[str, ...] = ()
    clip: bytes | None = None  # a reference clip on the voices volume, given as --voice
    exit_code: int = 1


REFUSED = [
    # the chapter file
    Refused("empty file", "the file is empty; there is nothing to narrate", b""),
    Refused("whitespace only", "the file is empty", b" \n\t\r\n  \n"),
    Refused(
        "binary file (PNG)",
        "looks like a binary file (NUL byte at byte offset 8)",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)),
    ),
    Refused(
        "Latin-1 text",
        "not UTF-8 text (byte 0xe9 at byte offset 11); save the file as UTF-8",
        "The old caf\u00e9 was closed.".encode("latin-1"),
    ),
    Refused(
        "20 MB text",
        "20,000,000 bytes is over the 5,000,000-byte limit (NARRATOR_MAX_CHAPTER_BYTES)",
        (b"All work and no play. " * 1_000_000)[:20_000_000],
    ),
    Refused("only punctuation", "no words to narrate", b"... !!! ??? --- ;;; ,,, ***\n"),
    Refused(
        "only markup", "no words to narrate", b"```\nprint('code')\n```\n\n---\n\n![](a.png)\n"
    ),
    Refused(
        "right-to-left text (Arabic)",
        "100 % of its letters are in scripts the engines cannot read (Arabic)",
        "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645.\n".encode(),
    ),
    Refused(
        "Chinese text",
        "scripts the engines cannot read (CJK)",
        "\u8fd9\u662f\u4e2d\u6587\u6587\u672c\u3002\u5f88\u957f\u7684\u4e00\u6bb5\u8bdd\u3002\n".encode(),
    ),
    Refused("missing file", "no such file", None),
    Refused("a folder given as the chapter", "is a directory; give the chapter's file", None),
    # reference audio, given as --voice FILE
    Refused(
        "reference clip: not audio",
        "is not audio this worker can decode (WAV, FLAC or OGG)",
        clip=b"this is a text file, not audio " * 100,
    ),
    Refused(
        "reference clip: too short (1 s)",
        "lasts 1.0 s; a voice clip must last 3-60 s",
        clip=clip(1.0),
    ),
    Refused("reference clip: too long (61 s)", "lasts 61.0 s", clip=clip(61.0)),
    Refused("reference clip: silent", "is silent", clip=clip(5.0, level=0.0)),
    Refused(
        "reference clip: 8 kHz stereo",
        "the embedded engine has built-in voices only (heart, joe) and cannot clone",
        clip=clip(5.0, rate=8000, channels=2),
    ),
    Refused(
        "voice path outside the voices volume",
        "is outside the voices volume",
        args=("--voice", "../../etc/passwd"),
    ),
    Refused(
        "unknown built-in voice",
        "voice 'nobody' is not available to the embedded engine; available offline: heart, joe",
        args=("--voice", "nobody"),
    ),
    # options
    Refused("0 candidates", "Invalid value for '--candidates'", args=("-n", "0"), exit_code=2),
    Refused(
        "threshold 150", "Invalid value for '--threshold'", args=("--threshold", "150"), exit_code=2
    ),
    Refused(
        "negative pause",
        "Invalid value for '--sentence-pause'",
        args=("--sentence-pause", "-1"),
        exit_code=2,
    ),
    Refused(
        "target over the maximum chunk length",
        "need min_chars < target_chars <= max_chars, got 20 / 500 / 400",
        args=("--target-chars", "500"),
    ),
    Refused(
        "maximum chunk length 10",
        "max_chars: Input should be greater than or equal to 60 (got 10)",
        args=("--max-chars", "10"),
    ),
    Refused(
        "unknown low-score policy",
        "--on-low-score must be 'flag' or 'fail', not 'maybe'",
        args=("--on-low-score", "maybe"),
    ),
    Refused(
        "unknown loudness preset",
        "loudness.preset: Input should be 'audiobook', 'podcast' or 'off' (got 'loud')",
        args=("--loudness", "loud"),
    ),
    Refused(
        "unknown delivery format",
        "formats.0: Input should be 'mp3' or 'm4b' (got 'ogg')",
        args=("--formats", "ogg"),
    ),
    Refused(
        "unknown backend",
        "--backend must be 'local', 'runpod' or 'elevenlabs', not 'cloud'",
        args=("--backend", "cloud"),
    ),
    Refused("output folder is a file", "exists and is not a directory; choose another --out"),
]


@pytest.mark.usefixtures("prefect_server")
@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.name)
def test_refused_input_exits_non_zero_saying_why_and_writes_nothing(
    tmp_path: Path, case: Refused
) -> None:
    chapter, out, voices = tmp_path / "chapter.md", tmp_path / "out", tmp_path / "voices"
    voices.mkdir()
    if case.chapter is not None:
        chapter.write_bytes(case.chapter)
    elif case.name.startswith("a folder"):
        chapter.mkdir()
    args = list(case.args)
    if case.clip is not None:
        (voices / "reader.wav").write_bytes(case.clip)
        args += ["--voice", "reader.wav"]
    if case.name == "output folder is a file":
        out.write_text("taken")
    result = runner.invoke(
        app,
        ["run", str(chapter), "--out", str(out), *args],
        env={
            "NARRATOR_CACHE_DIR": str(tmp_path / "cache"),
            "NARRATOR_VOICES_ROOT": str(voices),
            "NARRATOR_VOICE_CACHE_DIR": str(tmp_path / "voice-cache"),
            "COLUMNS": "400",
        },
    )
    assert result.exit_code == case.exit_code, result.output
    said = " ".join(result.output.split())  # the parser's box wraps long lines
    assert case.says in said, result.output
    if case.exit_code == 1:
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("narrator: "), result.output
    assert out.is_file() or not out.exists()  # no output folder, no half-written file
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


@dataclass(frozen=True)
class Accepted:
    name: str  # its row in docs/RELIABILITY.md
    chapter: bytes
    spoken: str  # what the engine is asked to say, chunks joined by " | "


ACCEPTED = [
    Accepted(
        "UTF-16 with a BOM",
        "The keeper waved.".encode("utf-16"),
        "The keeper waved.",
    ),
    Accepted(
        "UTF-16 without a BOM",
        "The keeper waved.".encode("utf-16-le"),
        "The keeper waved.",
    ),
    Accepted(
        "emoji",
        "The cat \U0001f63a sat on the mat \U0001f389. It was happy \U0001f44d\U0001f3fd!".encode(),
        "The cat sat on the mat. It was happy!",
    ),
    Accepted(
        "mixed scripts in English text",
        "She said \u05e9\u05dc\u05d5\u05dd and left for Tokyo (\u6771\u4eac) at dawn; "
        "the angle was \u03c0/2.".encode(),
        "She said and left for Tokyo at dawn; the angle was pi / two.",
    ),
    Accepted(
        "control characters and terminal colours",
        b"Hello\x07 world, \x1b[31mred\x1b[0m.\x0cNext\x0b page here.",
        "Hello world, red. Next page here.",
    ),
    Accepted(
        "bidi overrides and zero-width characters",
        "Zero\u200bwidth\u200d joiner\ufeff text. Right\u202eleft\u202c override.".encode(),
        "Zerowidth joiner text. Rightleft override.",
    ),
    Accepted(
        "HTML document",
        b"<!DOCTYPE html><html><head><title>T</title><style>p {}</style></head><body>"
        b"<h1>Arrival</h1><p>The boat &amp; the keeper &mdash; at last.</p>"
        b"<script>alert(1)</script><table><tr><th>Name</th><th>Age</th></tr>"
        b"<tr><td>Ann</td><td>32</td></tr></table></body></html>",
        "Arrival. | The boat and the keeper, at last. Name, Age. Ann, thirty-two.",
    ),
    Accepted(
        "markdown table",
        b"The crew.\n\n| Name | Age |\n|---|---|\n| Ann | 32 |\n| Bob | 45 |\n\nThat was all.\n",
        "The crew. Name, Age. Ann, thirty-two. Bob, forty-five. That was all.",
    ),
    Accepted(
        "CRLF and CR line ends",
        b"# One\r\n\r\nThe first line.\rThe second line.\r\n",
        "One. | The first line. The second line.",
    ),
]


@pytest.mark.parametrize("case", ACCEPTED, ids=lambda c: c.name)
def test_accepted_input_is_read_as_documented(case: Accepted) -> None:
    chunks = make_chunks(decode_chapter(case.chapter, "chapter.md"), ChunkingOptions())
    assert " | ".join(c.text for c in chunks) == case.spoken


def test_a_5000_character_sentence_without_punctuation_is_split_between_words() -> None:
    words = [f"word{i % 97}" for i in range(700)]
    sentence = " ".join(words)[:5000].rsplit(" ", 1)[0]
    chunks = make_chunks(decode_chapter(sentence.encode(), "long.md"), ChunkingOptions())
    assert len(chunks) >= 5000 // 400 and all(len(c.text) <= 400 for c in chunks)
    spoken = " ".join(c.display.rstrip(".") for c in chunks)
    assert spoken == sentence  # every word, in order, none cut in half


def test_words_in_other_scripts_are_named_for_the_warning() -> None:
    text = "She said \u05e9\u05dc\u05d5\u05dd to caf\u00e9 owners in \u6771\u4eac, \u03c0 times."
    assert unreadable_words(text) == ["\u05e9\u05dc\u05d5\u05dd", "\u6771\u4eac"]


@pytest.mark.usefixtures("prefect_server")
def test_a_chapter_full_of_oddities_narrates_and_is_heard_back(tmp_path: Path) -> None:
    chapter = tmp_path / "odd.md"
    chapter.write_bytes(
        codecs.BOM_UTF8
        + "# The Crew \U0001f6a2\r\n\r\n"
        "The captain \U0001f44b\U0001f3fd said \u05e9\u05dc\u05d5\u05dd to us, "
        "then \x1b[1mwalked\x1b[0m to the bridge.\r\n\r\n"
        "| Name | Age |\r\n|---|---|\r\n| Ann | 32 |\r\n\r\n"
        "It was <b>late</b> &amp; very cold.\x0c\r\n".encode()
    )
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["run", str(chapter), "--out", str(out), "-n", "1", "--formats", ""],
        env={"NARRATOR_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "300"},
    )
    assert result.exit_code == 0, result.output
    audio, rate = sf.read(out / "odd.wav")
    assert rate == 24000 and len(audio) / rate > 5
    meta = json.loads((out / "metadata.json").read_text())
    assert [c["text"] for c in meta["chunks"]] == [
        "The Crew.",
        "The captain said to us, then walked to the bridge. Name, Age. Ann, thirty-two.",
        "It was late and very cold.",
    ]
    heard = " ".join(c["transcript"] for c in meta["chunks"]).lower()
    assert all(word in heard for word in ("captain", "bridge", "late", "cold"))
    assert "\u05e9\u05dc\u05d5\u05dd" in (out / "odd.srt").read_text()  # the subtitles keep it


def test_every_case_is_a_row_of_the_documented_table() -> None:
    rows = {m[1] for m in re.finditer(r"^\| ([^|]+?) \|", DOC.read_text(), re.M)}
    names = [c.name for c in REFUSED] + [c.name for c in ACCEPTED]
    names += ["5,000-character sentence without punctuation", "a chapter full of oddities"]
    assert [n for n in names if n not in rows] == []


@pytest.mark.usefixtures("prefect_server")
def test_a_language_other_than_english_is_refused_naming_the_setting(tmp_path: Path) -> None:
    """Text preparation and scoring are English: French would get English numbers, so it is
    refused (options built in Python, and a flow run asked for from the UI's form)."""
    from prefect.exceptions import ParameterTypeError
    from pydantic import ValidationError

    from flows.chapter import NarrationOptions, narrate_chapter
    from gpu_worker.schema import GenerationParams

    says = "language_id 'fr': narrator prepares and checks text in English only"
    with pytest.raises(ValidationError, match=says):
        NarrationOptions(generation=GenerationParams(language_id="fr"))
    chapter = tmp_path / "ch.md"
    chapter.write_bytes(PLAIN)
    with pytest.raises(ParameterTypeError, match="set language_id to en"):
        narrate_chapter(
            str(chapter), str(tmp_path / "out"), None, {"generation": {"language_id": "fr"}}
        )
    assert not (tmp_path / "out").exists()
    assert NarrationOptions(generation=GenerationParams(language_id="en-GB"))  # English is fine
