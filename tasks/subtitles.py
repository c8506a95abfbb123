"""Subtitles timed by the words the validator heard: SRT and WebVTT.

Cues show the text as the author wrote it ("$4.50", "Dr. Okafor"), timed by when each word
is spoken. For each chunk:
    1. its written words -> the spoken words each becomes (the normaliser, word by word)
    2. the spoken words <-> the words Whisper heard, with their times (the scorer's
       alignment; a spoken word Whisper missed gets a time between its neighbours')
    3. chunk time -> chapter time (the chunk's Placement: trims and shortened silences)
Words are then grouped into cues of at most two lines of 42 characters, ending at a
sentence when a cue is half full, at a long gap, at seven seconds, or where the speaker
changes. A dialogue speaker's cues are labelled: `Alice: ...` in SRT, `<v Alice>` in WebVTT.
"""

from dataclasses import dataclass

import numpy as np

from gpu_worker import scoring
from gpu_worker.schema import WordTiming
from tasks.audio import Placement

LINE_CHARS = 42
CUE_LINES = 2
MAX_CUE_S = 7.0
GAP_S = 1.0  # a silence this long ends a cue
MIN_CUE_S = 0.8  # a cue stays up at least this long, if the next one allows
CUE_GAP_S = 0.05


@dataclass(frozen=True)
class TimedWord:
    text: str  # as written in the source
    start: float  # on the chapter's clock, seconds
    end: float
    speaker: str | None = None


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: list[str]
    speaker: str | None = None

    @property
    def text(self) -> str:
        return " ".join(self.lines)


def _spoken_times(spoken: list[str], heard: list[WordTiming]) -> list[tuple[float, float]]:
    """A (start, end) for every spoken word, from the heard words aligned to them."""
    tokens: list[str] = []
    times: list[tuple[float, float]] = []
    for word in heard:
        parts = scoring.words(word.word) or [word.word.lower()]
        step = (word.end - word.start) / len(parts)
        for k, part in enumerate(parts):
            tokens.append(part)
            times.append((word.start + k * step, word.start + (k + 1) * step))
    known: dict[int, tuple[float, float]] = {}
    for kind, (r0, r1), (h0, h1) in scoring.align(spoken, tokens).steps:
        if kind in ("M", "S") and h1 > h0:
            start, end = times[h0][0], times[h1 - 1][1]
            for i in range(r0, r1):
                share = (end - start) / (r1 - r0)
                known[i] = (start + (i - r0) * share, start + (i - r0 + 1) * share)
    if not known:
        return []
    anchors = sorted(known)
    starts = np.interp(range(len(spoken)), anchors, [known[i][0] for i in anchors])
    ends = np.interp(range(len(spoken)), anchors, [known[i][1] for i in anchors])
    return [(float(s), float(max(e, s))) for s, e in zip(starts, ends, strict=True)]


def chunk_words(
    display: str, heard: list[WordTiming], placement: Placement, speaker: str | None = None
) -> list[TimedWord]:
    """The chunk's written words on the chapter's clock."""
    written = display.split()
    if not written:
        return []
    counts = [max(1, len(scoring.words(token))) for token in written]
    spoken = [w for token in written for w in (scoring.words(token) or [token.lower()])]
    times = _spoken_times(spoken, heard) if heard else []
    if not times:  # nothing heard to time by: share the chunk's span by length
        span = placement.end - placement.start
        weights = np.cumsum([0] + [len(t) + 1 for t in written]) / (
            sum(map(len, written)) + len(written)
        )
        return [
            TimedWord(t, placement.start + span * a, placement.start + span * b, speaker)
            for t, a, b in zip(written, weights[:-1], weights[1:], strict=True)
        ]
    timed, first = [], 0
    for token, count in zip(written, counts, strict=True):
        last = min(first + count, len(times)) - 1
        start, end = times[min(first, len(times) - 1)][0], times[last][1]
        timed.append(
            TimedWord(token, placement.chapter_time(start), placement.chapter_time(end), speaker)
        )
        first += count
    return timed


def wrap(words: list[str], width: int = LINE_CHARS) -> list[str]:
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def cues(words: list[TimedWord]) -> list[Cue]:
    """Timed words grouped into cues within the line limits, in order, never overlapping."""
    groups: list[list[TimedWord]] = []
    for word in words:
        current = groups[-1] if groups else None
        if (
            current is None
            or word.speaker != current[0].speaker
            or len(wrap([w.text for w in [*current, word]])) > CUE_LINES
            or word.start - current[-1].end > GAP_S
            or word.end - current[0].start > MAX_CUE_S
            or (
                current[-1].text.rstrip("\"'”’)").endswith((".", "!", "?"))
                and len(" ".join(w.text for w in current)) >= LINE_CHARS
            )
        ):
            groups.append([word])
        else:
            current.append(word)
    made: list[Cue] = []
    for i, group in enumerate(groups):
        start = max(group[0].start, made[-1].end + CUE_GAP_S if made else 0.0)
        following = groups[i + 1][0].start - CUE_GAP_S if i + 1 < len(groups) else float("inf")
        end = min(max(group[-1].end, start + MIN_CUE_S), following)
        made.append(
            Cue(
                round(start, 3),
                round(max(end, start + 0.01), 3),
                wrap([w.text for w in group]),
                group[0].speaker,
            )
        )
    return made


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt(made: list[Cue]) -> str:
    return "".join(
        f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n"
        + (f"{c.speaker}: " if c.speaker else "")
        + "\n".join(c.lines)
        + "\n\n"
        for i, c in enumerate(made, 1)
    )


def vtt(made: list[Cue]) -> str:
    return "WEBVTT\n\n" + "".join(
        f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n"
        + (f"<v {c.speaker}>" if c.speaker else "")
        + "\n".join(c.lines)
        + "\n\n"
        for c in made
    )
