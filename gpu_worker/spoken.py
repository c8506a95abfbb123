"""Inline text as it should be spoken: numbers, money, times, dates, units, abbreviations,
symbols, URLs, e-mail addresses and unicode punctuation.

`verbalize(text)` is the one normaliser. The text preparation (tasks/text/) applies it to
each sentence of the chapter; the scorer (scoring.py) applies it to both the chunk text and
the Whisper transcript, so "$4.50" heard as "four dollars and fifty cents" scores as a match.
Document structure (markdown, paragraphs) is tasks/text/'s job, not this module's.

Rules run in a fixed order, most specific first (a URL before a decimal, money before a
plain number). Each rule is a regular expression and a small function; `RULES` lists them.
"""

import re
import unicodedata
from collections.abc import Callable

from gpu_worker import numbers
from gpu_worker.vocabulary import (
    ABBREVIATIONS,
    CHARACTERS,
    CURRENCIES,
    IRREGULAR_PLURALS,
    MONTH_BY_PREFIX,
    MONTH_PATTERN,
    MONTHS,
    ROMAN,
    SCALE_WORDS,
    STREETS,
    TITLES,
    UNITS,
)

Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]

_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+"
_AT_END = re.compile(r"[\"')\]]*\s*$")  # nothing but closing quotes and brackets left


def say_number(text: str) -> str:
    """A number as written ("1,250", "-3.5", "007") -> words."""
    text = text.replace(",", "")
    sign = "minus " if text.startswith("-") else ""
    text = text.lstrip("-+")
    if "." in text:
        return sign + numbers.decimal(text)
    if len(text) > 1 and text.startswith("0"):
        return sign + numbers.digits(text)
    return sign + numbers.cardinal(int(text))


def _unicode(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = "".join(CHARACTERS.get(c, c) for c in text)
    text = re.sub(r"(?<=\d)\s?[–—]\s?(?=\d)", "-", text)  # ranges: 1990–1995
    text = re.sub(r"\s*[–—]+\s*", ", ", text)  # dashes as clause breaks
    kept = []
    for c in text:
        category = unicodedata.category(c)
        if category == "Cc":
            kept.append(" ")
        elif (category == "So" and c != "°") or category in ("Sk", "Cf", "Co", "Cs", "Cn"):
            continue  # emoji, skin tones, pictographs, private use: nothing to say
        elif category.startswith("L") and not c.isascii():
            kept.append(_letter(c))
        else:
            kept.append(c)
    return "".join(kept)


def readable(c: str) -> bool:
    """Is this letter in a script the English engines can say? Latin, and Greek by name."""
    return unicodedata.name(c, "").startswith(("LATIN", "GREEK"))


def _letter(c: str) -> str:
    """A non-ASCII letter: Latin kept (é, ß), Greek said by name (π → " pi "), any other
    script left out: the engines read English and would garble it."""
    if not readable(c):
        return ""
    name = unicodedata.name(c)
    if name.startswith("GREEK"):
        return f" {name.rsplit(' ', 1)[-1].lower()} " if " LETTER " in name else ""
    return c


def _say_address(text: str) -> str:
    words = {
        ".": " dot ",
        "/": " slash ",
        "-": " dash ",
        "_": " underscore ",
        "@": " at ",
        "+": " plus ",
        ":": " colon ",
    }
    return "".join(words.get(c, c) for c in text)


def _url(m: re.Match[str]) -> str:
    url = re.sub(r"^(?:https?://)?(?:www\.)?", "", m[0], flags=re.I)
    url = re.split(r"[?#]", url)[0].rstrip("/")
    return " " + _say_address(url) + " "


def _money(m: re.Match[str]) -> str:
    unit, units, sub, subs = CURRENCIES[m["cur"]]
    amount = m["num"].replace(",", "")
    if m["scale"]:
        scale = SCALE_WORDS.get(m["scale"].lower(), m["scale"].lower())
        return f" {say_number(amount)} {scale} {units} "
    whole, _, cents = amount.partition(".")
    if len(cents) > 2 or (cents and not sub):
        return f" {say_number(amount)} {units} "
    dollars = int(whole or 0)
    cents_value = int(cents.ljust(2, "0")) if cents else 0
    parts = []
    if dollars or not cents_value:
        parts.append(f"{numbers.cardinal(dollars)} {unit if dollars == 1 else units}")
    if cents_value:
        parts.append(f"{numbers.cardinal(cents_value)} {sub if cents_value == 1 else subs}")
    return " " + " and ".join(parts) + " "


def _meridiem(text: str | None) -> str:
    return f" {text[0].lower()}.m." if text else ""


def _clock(m: re.Match[str]) -> str:
    hour, minute = int(m["h"]), int(m["m"])
    if hour > 24 or minute > 59:
        return m[0]
    said = numbers.cardinal(hour)
    if minute == 0:
        said += "" if m["ap"] else " o'clock"
    elif minute < 10:
        said += f" oh {numbers.cardinal(minute)}"
    else:
        said += f" {numbers.cardinal(minute)}"
    return f" {said}{_meridiem(m['ap'])} "


def _hour(m: re.Match[str]) -> str:
    return f" {numbers.cardinal(int(m['h']))}{_meridiem(m['ap'])} "


def _month(name: str) -> str:
    return MONTH_BY_PREFIX[
        name[:4].lower() if name.lower().startswith("sept") else name[:3].lower()
    ]


def _date(month: int, day: int, year: str | None) -> str | None:
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    said = f"{MONTHS[month - 1]} {numbers.ordinal(day)}"
    if year:
        y = int(year) + (2000 if len(year) == 2 else 0)
        said += f", {numbers.year(y)}"
    return f" {said} "


def _iso_date(m: re.Match[str]) -> str:
    return _date(int(m["mo"]), int(m["d"]), m["y"]) or m[0]


def _slash_date(m: re.Match[str]) -> str:
    first, second = int(m["a"]), int(m["b"])
    month, day = (second, first) if first > 12 else (first, second)  # US order unless impossible
    return _date(month, day, m["y"]) or m[0]


def _month_day(m: re.Match[str]) -> str:
    day = int(m["d"])
    return f" {_month(m['month'])} {numbers.ordinal(day)} " if 1 <= day <= 31 else m[0]


def _day_month(m: re.Match[str]) -> str:
    day = int(m["d"])
    if not 1 <= day <= 31:
        return m[0]
    article = "" if re.search(r"\bthe\s*$", m.string[: m.start()], re.I) else "the "
    return f" {article}{numbers.ordinal(day)} of {_month(m['month'])} "


def _measure(m: re.Match[str]) -> str:
    unit = UNITS[m["unit"]]
    amount = m["num"].replace(",", "")
    if amount.lstrip("-") != "1":
        unit = IRREGULAR_PLURALS.get(unit, unit + "s")
    return f" {say_number(amount)} {unit} "


def _degrees(m: re.Match[str]) -> str:
    scale = {"C": " Celsius", "F": " Fahrenheit"}.get(m["scale"] or "", "")
    word = "degree" if m["num"] == "1" else "degrees"
    return f" {say_number(m['num'])} {word}{scale} "


def _roman(m: re.Match[str]) -> str:
    values = [ROMAN[c] for c in m["roman"]]
    total = sum(
        -v if i + 1 < len(values) and v < values[i + 1] else v for i, v in enumerate(values)
    )
    return f"{m['word']} {numbers.cardinal(total)}"


def _short_year(m: re.Match[str]) -> str:
    """'78 -> "seventy-eight", '05 -> "oh five"."""
    year = int(m["y"])
    return f" {'oh ' if year < 10 else ''}{numbers.cardinal(year)} "


def _fraction(m: re.Match[str]) -> str:
    top, bottom = int(m["n"]), int(m["d"])
    if 0 < top < bottom <= 100:
        return f" {numbers.fraction(top, bottom)} "
    return f" {numbers.cardinal(top)} {numbers.cardinal(bottom)} "  # 24/7, 50/50


def _title(m: re.Match[str]) -> str:
    return TITLES[m["t"]]


def _final_period(m: re.Match[str]) -> str:
    """An abbreviation's period doubles as the sentence's when nothing follows it."""
    return "." if _AT_END.match(m.string, m.end()) else ""


def _street(m: re.Match[str]) -> str:
    return f"{m['name']} {STREETS[m['t']]}{_final_period(m)}"


def _abbreviation(m: re.Match[str]) -> str:
    return ABBREVIATIONS[m["a"]] + _final_period(m)


def _word(replacement: str) -> Callable[[re.Match[str]], str]:
    return lambda m: f" {replacement} "


RULES: list[Rule] = [
    # addresses first: they contain dots, digits and symbols that other rules would read
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), lambda m: " " + _say_address(m[0]) + " "),
    (re.compile(r"(?:https?://|www\.)[^\s<>\"')\]]*[^\s<>\"')\].,;:!?]", re.I), _url),
    (
        re.compile(
            r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|io|dev|edu|gov|ai|app)\b"
            r"(?:/[^\s<>\"')\]]*[^\s<>\"')\].,;:!?])?",
            re.I,
        ),
        _url,
    ),
    # money, times and dates before plain numbers
    (
        re.compile(
            r"(?P<cur>[$€£¥])\s?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
            r"(?:\s?(?P<scale>thousand|million|billion|trillion|k|m|bn|b)\b)?",
            re.I,
        ),
        _money,
    ),
    (
        re.compile(
            r"\b(?P<h>\d{1,2}):(?P<m>\d{2})(?::\d{2})?(?:\s?(?P<ap>[ap])\.?\s?m\b\.?)?", re.I
        ),
        _clock,
    ),
    (re.compile(r"\b(?P<h>\d{1,2})\.(?P<m>\d{2})\s?(?P<ap>[ap])\.?\s?m\b\.?", re.I), _clock),
    (re.compile(r"\b(?P<h>1[0-2]|0?[1-9])\s?(?P<ap>[ap])\.?\s?m\b\.?", re.I), _hour),
    (re.compile(r"\b(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})\b"), _iso_date),
    (re.compile(r"\b(?P<a>\d{1,2})/(?P<b>\d{1,2})/(?P<y>\d{4}|\d{2})\b"), _slash_date),
    (
        re.compile(r"\b" + MONTH_PATTERN + r"\s+(?P<d>\d{1,2})(?:st|nd|rd|th)?\b(?![:.]\d|,\d{3})"),
        _month_day,
    ),
    (
        re.compile(r"\b(?P<d>\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?" + MONTH_PATTERN + r"(?=\W|$)"),
        _day_month,
    ),
    # quantities
    (
        re.compile(r"(?P<num>-?(?:" + _NUMBER + r"))\s?%"),
        lambda m: f" {say_number(m['num'])} percent ",
    ),
    (re.compile(r"(?P<num>-?(?:" + _NUMBER + r"))\s?°\s?(?P<scale>[CF](?![a-z]))?"), _degrees),
    (
        re.compile(
            r"(?P<num>-?(?:"
            + _NUMBER
            + r"))\s?(?P<unit>"
            + "|".join(sorted(map(re.escape, UNITS), key=len, reverse=True))
            + r")\b"
        ),
        _measure,
    ),
    (
        re.compile(r"\b(?P<c>1[0-9]|20)(?P<d>\d)0s\b"),
        lambda m: f" {numbers.plural(numbers.year(int(m['c'] + m['d'] + '0')))} ",
    ),
    (
        re.compile(r"(?:\B'|\b)(?P<d>[2-9])0s\b"),
        lambda m: f" {numbers.plural(numbers.cardinal(int(m['d']) * 10))} ",
    ),
    (
        re.compile(r"\b(?P<n>\d{1,3}(?:,\d{3})+|\d+)(?:st|nd|rd|th)\b", re.I),
        lambda m: f" {numbers.ordinal(int(m['n'].replace(',', '')))} ",
    ),
    (re.compile(r"(?<=\d)\s?-\s?(?=\d)"), _word("to")),  # ranges: pages 10-12
    (
        re.compile(
            r"\b(?P<word>Chapter|Part|Book|Volume|Act|Scene|Section|Appendix)\s+"
            r"(?P<roman>[IVXLCDM]+)\b"
        ),
        _roman,
    ),
    (re.compile(r"\b(?P<n>\d+)/(?P<d>\d+)\b"), _fraction),
    (re.compile(r"\b(?:No|Nos)\.?\s?(?=\d)"), _word("number")),
    (re.compile(r"#\s?(?=\d)"), _word("number")),
    # words
    (re.compile(r"\b(?P<t>" + "|".join(TITLES) + r")\.(?=\s+[A-Z])"), _title),
    (re.compile(r"\b(?P<t>Mr|Mrs|Ms|Dr)\b(?=\s+[A-Z])"), _title),
    (re.compile(r"\b(?P<t>Mr|Mrs|Ms)\.?(?!\w)"), _title),  # no other reading
    (
        re.compile(r"\b(?P<name>[A-Z][a-z]+)\s(?P<t>" + "|".join(STREETS) + r")\.(?!\s+[A-Z])"),
        _street,
    ),
    (
        re.compile(r"(?<![\w.])(?P<a>" + "|".join(map(re.escape, ABBREVIATIONS)) + r")(?!\w)"),
        _abbreviation,
    ),
    # numbers left over: years, negatives, decimals, cardinals
    (
        re.compile(r"(?<![\d,.])(?P<y>1[1-9]\d\d|20\d\d)(?!\d|[,.]\d)"),
        lambda m: f" {numbers.year(int(m['y']))} ",
    ),
    (re.compile(r"(?<!\w)'(?P<y>\d\d)\b"), _short_year),
    (re.compile(r"(?<![\w.,])-(?=\d|\.\d)"), _word("minus")),
    (re.compile(_NUMBER), lambda m: f" {say_number(m[0])} "),
    # symbols
    (re.compile(r"&"), _word("and")),
    (re.compile(r"(?<=[\w\s])\+(?=[\w\s])"), _word("plus")),
    (re.compile(r"\s=\s"), _word("equals")),
    (re.compile(r"@"), _word("at")),
    (re.compile(r"%"), _word("percent")),
    (re.compile(r"°"), _word("degrees")),
    (re.compile(r"(?<=[A-Za-z])/(?=[A-Za-z])"), _word("or")),
]


def verbalize(text: str) -> str:
    """Rewrite `text` the way a narrator says it; spacing and punctuation tidied."""
    text = _unicode(text)
    for pattern, replace in RULES:
        text = pattern.sub(replace, text)
    text = re.sub(r"\(\s*\)|\[\s*\]", "", text)  # brackets whose content was left out
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,.;:!?)\]])", r"\1", text)
    text = re.sub(r"([(\[])\s+", r"\1", text)
    text = re.sub(r",(?:\s*,)+", ",", text)
    text = re.sub(r"(\.\.\.|[!?]),", r"\1", text)
    text = re.sub(r"^[\s,;:]+", "", text)
    return text.strip()
