"""The pronunciation lexicon: names and rare words the engine should read another way.

    # lexicon.toml, beside the chapters (or given with --lexicon, or as the flow's `lexicon`)
    Hermione = "Her-my-oh-nee"
    "Saoirse Ronan" = "Seer-sha Ronan"
    gif = "jif"

A key is a word or phrase as the narration would say it; the value is a respelling the
engine reads instead. Keys match whole words only. A key written in lower case matches any
case ("gif", "GIF", "Gif"); a key with a capital matches that case only ("Will" the name,
not "will" the verb). Phrases match across any whitespace, and longer keys win over shorter.

Only what the engine is asked to say changes: subtitles and segments keep the written word,
and a take heard as the original word (Whisper knows "Hermione") still matches its text
(gpu_worker/respelling.py). Editing one entry changes the requests, and so the cache keys,
of exactly the chunks that contain it.
"""

import re
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from gpu_worker.errors import InputError
from gpu_worker.scoring import AMERICAN_SPELLING
from tasks import storage

FILE_NAME = "lexicon.toml"
MAX_ENTRIES = 5000
MAX_CHARS = 100  # per key and per respelling

Lexicon = dict[str, str]


def check_lexicon(entries: object, name: str) -> Lexicon:
    """`entries` as a lexicon, or an InputError naming `name` and the bad entry."""
    if not isinstance(entries, dict):
        raise InputError(f'{name}: a lexicon is a table of word = "respelling" lines')
    if len(entries) > MAX_ENTRIES:
        raise InputError(f"{name}: {len(entries)} entries; at most {MAX_ENTRIES}")
    checked: Lexicon = {}
    for key, value in entries.items():
        if not isinstance(value, str) or not isinstance(key, str):
            raise InputError(f"{name}: {key!r} must map to a respelling in quotes")
        word, respelling = " ".join(key.split()), " ".join(value.split())
        if not re.search(r"\w", word) or not re.search(r"\w", respelling):
            raise InputError(f"{name}: {key!r} = {value!r}: both need a letter or digit")
        if len(word) > MAX_CHARS or len(respelling) > MAX_CHARS:
            raise InputError(f"{name}: {key!r}: keys and respellings are at most {MAX_CHARS}")
        checked[word] = respelling
    return checked


def read_lexicon(data: str, name: str) -> Lexicon:
    """A lexicon from TOML text."""
    try:
        return check_lexicon(tomllib.loads(data), name)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{name}: not valid TOML ({e})") from e


def lexicon_for(source: str, given: Lexicon | None, endpoint_url: str | None = None) -> Lexicon:
    """The lexicon a chapter is read with: the `lexicon.toml` in its folder (or S3 prefix),
    if there is one, with `given` entries over it."""
    beside = (
        f"{source.rsplit('/', 1)[0]}/{FILE_NAME}"
        if storage.is_s3(source)
        else str(Path(source).parent / FILE_NAME)
    )
    found = storage.read_text_if_exists(beside, endpoint_url)
    entries = read_lexicon(found, beside) if found is not None else {}
    return {**entries, **check_lexicon(given or {}, "lexicon")}


_EDGE_BEFORE, _EDGE_AFTER = r"(?<![\w'’-])", r"(?![\w'’-])"


def _alternative(key: str) -> str:
    words = r"\s+".join(re.escape(w) for w in key.split())
    return words if any(c.isupper() for c in key) else f"(?i:{words})"


def respell(text: str, lexicon: Lexicon) -> str:
    """`text` with every lexicon word read as its respelling, in one pass (a respelling is
    never respelled again; of two keys that overlap, the longer wins)."""
    if not lexicon:
        return text
    # longest first; of equal length, a key with a capital (its case only) before one without
    keys = sorted(lexicon, key=lambda key: (-len(key), key.islower()))
    groups = "|".join(f"(?P<k{i}>{_alternative(key)})" for i, key in enumerate(keys))
    pattern = re.compile(f"{_EDGE_BEFORE}(?:{groups}){_EDGE_AFTER}")
    return pattern.sub(lambda m: lexicon[keys[int(str(m.lastgroup)[1:])]], text)


def respellings_in(text: str, lexicon: Lexicon) -> dict[str, str]:
    """The lexicon's entries whose respelling `text` holds, as {respelling: word}: what a
    chunk's scorer must accept as heard either way."""
    return {
        respelling: key
        for key, respelling in lexicon.items()
        if re.search(_EDGE_BEFORE + re.escape(respelling) + _EDGE_AFTER, text)
    }


@dataclass(frozen=True)
class Candidate:
    """A word a lexicon may need: a name, or a word rare enough for an engine to misread."""

    word: str
    count: int
    kind: str  # "name" or "rare"


RARE_BELOW = 1e-7  # a word's share of English text (pyspellchecker's counts) under which it is rare
_WORD = re.compile(r"[^\W\d_][\w'’-]*[^\W\d_]|[^\W\d_]")
_SENTENCE_START = re.compile(r"(?:^|[.!?…:;]\s+|[\"“‘(\[]\s*)$")


def candidates(texts: list[str]) -> list[Candidate]:
    """The names and rare words of `texts` (a chapter's paragraphs as written), most
    frequent first: the words worth checking by ear and adding to a lexicon.

    A rare word is one missing from an English word list (pyspellchecker's, British
    spellings mapped to American) or used less than RARE_BELOW of the time. A name is a
    word never written in lower case, and either written with a capital where a sentence
    does not start, or rare."""
    from spellchecker import SpellChecker

    dictionary = SpellChecker(language="en")
    american = AMERICAN_SPELLING  # the scorer's map, loaded once
    counts: Counter[str] = Counter()
    spelled: dict[str, str] = {}  # each word as first written
    capitalised_mid: set[str] = set()  # written with a capital where no sentence starts
    lower: set[str] = set()  # written in lower case somewhere
    for text in texts:
        for m in _WORD.finditer(text):
            word = m[0].strip("'’-")
            key = word.casefold()
            counts[key] += 1
            spelled.setdefault(key, word)
            if not word[0].isupper():
                lower.add(key)
            elif word != "I" and not _SENTENCE_START.search(text[: m.start()]):
                capitalised_mid.add(key)
    found = []
    for key, count in counts.items():
        base = american.get(key, key).replace("’", "'")
        unknown = base not in dictionary or dictionary.word_usage_frequency(base) < RARE_BELOW
        if key not in lower and (key in capitalised_mid or (unknown and key != "i")):
            found.append(Candidate(spelled[key], count, "name"))
        elif key in lower and len(base) >= 3 and unknown:
            found.append(Candidate(spelled[key], count, "rare"))
    return sorted(found, key=lambda c: (-c.count, c.word.casefold()))
