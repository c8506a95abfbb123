"""Inline text as it should be spoken: numbers, money, times, dates, units, abbreviations,
symbols, URLs, e-mail addresses and unicode punctuation.

`verbalize(text)` is the one normaliser. The text preparation (tasks/text/) applies it to
each sentence of the chapter; the scorer (scoring.py) applies it to both the chunk text and
the Whisper transcript, so "$4.50" heard as "four dollars and fifty cents" scores as a match.
Document structure (markdown, paragraphs) is tasks/text/'s job, not this module's.

Rules run in a fixed order, most specific first (a URL before a decimal, money before a
plain number). Each rule is a regular expression and a small function; `RULES` lists them.

Where a form is ambiguous the rule reads it the common way and says so in its comment:
"St." is Saint before a name, Street after one; "I" is the pronoun unless it closes a royal
name ("Charles I of England"); "3-2" is a range unless a score's words stand next to it.
Units the rules write are spelt the American way ("kilometer") unless `verbalize` is asked
for British spelling ("kilometre", "litre"): the engines say both alike, and the scorer
counts the two spellings as one word.
"""

import re
import unicodedata
from collections.abc import Callable
from contextvars import ContextVar
from typing import Literal

from gpu_worker import numbers
from gpu_worker.vocabulary import (
    ABBREVIATIONS,
    BRITISH_UNITS,
    CHARACTERS,
    CURRENCIES,
    DOTTED_UNITS,
    FRACTION_DENOMINATORS,
    IRREGULAR_PLURALS,
    MONTH_ABBREVIATIONS,
    MONTH_BY_PREFIX,
    MONTH_PATTERN,
    MONTHS,
    NOT_NAMES,
    NUMBERED_PARTS,
    SCALE_WORDS,
    SCORE_AFTER,
    SCORE_BEFORE,
    SHORT_SUBUNIT,
    STREETS,
    SUFFIXES,
    TITLES,
    UNDOTTED_TITLES,
    UNITS,
    WEEKDAY_WORDS,
    WEEKDAYS,
)

Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]

_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+"
_AT_END = re.compile(r"[\"')\]]*\s*$")  # nothing but closing quotes and brackets left
_DATE_AFTER = re.compile(r",?\s+(?:\d{1,2}(?!\d)|" + MONTH_PATTERN + r"(?!\w))")
_UNIT_PATTERN = "|".join(sorted(map(re.escape, UNITS), key=len, reverse=True))
_ABBREVIATION_PATTERN = "|".join(sorted(map(re.escape, ABBREVIATIONS), key=len, reverse=True))


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


def _vulgar_fraction(m: re.Match[str]) -> str:
    """ "½" -> "1/2", "2½" -> "2 1/2" (NFKC alone would make "21⁄2")."""
    fraction = unicodedata.normalize("NFKC", m["f"]).replace("⁄", "/")
    return f"{m['w']} {fraction}" if m["w"] else fraction


def _unicode(text: str) -> str:
    # characters first: NFKC would turn "™" into "TM" and "²" into "2"
    text = "".join(CHARACTERS.get(c, c) for c in text)
    text = re.sub(r"(?P<w>\d?)(?P<f>[\u00bc-\u00be\u2150-\u215e])", _vulgar_fraction, text)
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"(?<=\S)\s*[→⟶]\s*(?=\S)", " to ", text)  # "London → Paris"; others go
    text = re.sub(r"(?:(?<=\d)|(?<=\ds))\s?[–—]\s?(?=\d)", "-", text)  # ranges: 1990–1995
    text = re.sub(r"\s*[–—]+\s*", ", ", text)  # dashes as clause breaks
    kept = []
    for c in text:
        category = unicodedata.category(c)
        if category == "Cc":
            kept.append(" ")
        elif (category == "So" and c != "°") or category in ("Sk", "Cf", "Co", "Cs", "Cn"):
            continue  # emoji, skin tones, pictographs, private use: nothing to say
        elif "ARROW" in unicodedata.name(c, ""):
            continue  # an arrow not between words: a bullet or a pointer
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
    """ "$4.50" -> "four dollars and fifty cents", "£3.50" -> "three pounds fifty",
    "£2.5m" -> "two point five million pounds"."""
    unit, units, sub, subs = CURRENCIES[m["cur"]]
    amount = m["num"].replace(",", "")
    scale_written = m.groupdict().get("scale")
    if scale_written:
        scale = SCALE_WORDS.get(scale_written.lower(), scale_written.lower())
        return f" {say_number(amount)} {scale} {units} "
    whole, _, cents = amount.partition(".")
    if len(cents) > 2 or (cents and not sub):
        return f" {say_number(amount)} {units} "
    dollars = int(whole or 0)
    cents_value = int(cents.ljust(2, "0")) if cents else 0
    if dollars and cents_value and m["cur"] in SHORT_SUBUNIT:
        said = f"{numbers.cardinal(dollars)} {unit if dollars == 1 else units}"
        return f" {said} {numbers.cardinal(cents_value)} "
    parts = []
    if dollars or not cents_value:
        parts.append(f"{numbers.cardinal(dollars)} {unit if dollars == 1 else units}")
    if cents_value:
        parts.append(f"{numbers.cardinal(cents_value)} {sub if cents_value == 1 else subs}")
    return " " + " and ".join(parts) + " "


def _subunit(symbol: str) -> Callable[[re.Match[str]], str]:
    """ "50p" -> "fifty pence", "1¢" -> "one cent": an amount in the currency's subunit."""
    _, _, sub, subs = CURRENCIES[symbol]
    return lambda m: f" {numbers.cardinal(int(m['num']))} {sub if m['num'] == '1' else subs} "


def _weekday(m: re.Match[str]) -> str:
    """ "Mon." -> "Monday"; "Sat", "Sun" and "Wed" only in a date ("Sat. 14 July",
    "Sun, Jan. 5") or with a period before a lower-case word ("Sat. night")."""
    dated = _DATE_AFTER.match(m.string, m.end()) is not None
    if m["w"] in WEEKDAY_WORDS:
        said = dated or bool(m["dot"] and re.match(r"\s+[a-z]", m.string[m.end() :]))
    else:
        said = dated or bool(m["dot"])
    if not said:
        return m[0]
    return WEEKDAYS[m["w"]] + (_final_period(m) if m["dot"] else "")


def _month_abbreviation(m: re.Match[str]) -> str:
    """ "in Jan." -> "in January", "Sept 1939" -> "September 1939" (no day after it)."""
    return _month(m["m"]) + (_final_period(m) if m["dot"] else "")


def _phone(m: re.Match[str]) -> str:
    """ "555-1234" -> "five five five, one two three four": digit by digit, in groups."""
    return " " + ", ".join(numbers.digits(g) for g in re.findall(r"\d+", m[0])) + " "


# words before a phone number; not "number", "cell", "text" or "ring", which prose uses
# before ranges ("a number of 250-1000 soldiers")
_PHONE_WORDS = re.compile(
    r"\b(?:call(?:ed|ing)?|phone[ds]?|dial(?:ed|led)?|tel|telephone|fax|mobile|hotline|"
    r"extension|ext|ring\s+(?:us|me|him|her|them))\b\W+(?:\w+\W+){0,2}$",
    re.I,
)


def _bare_phone(m: re.Match[str]) -> str:
    """ "call 555-1234" is a phone number; "100-1000 people" is a range (left for it)."""
    before = m.string[max(0, m.start() - 40) : m.start()]
    return _phone(m) if _PHONE_WORDS.search(before) else m[0]


_BETWEEN = re.compile(r"\bbetween\s+[\d.,]+$", re.I)


def _range_word(m: re.Match[str]) -> str:
    """The dash of a range: "to", or "and" after "between"."""
    return " and " if _BETWEEN.search(m.string[max(0, m.start() - 30) : m.start()]) else " to "


def _money_range(m: re.Match[str]) -> str:
    """ "$1,200-1,500" -> "$1,200 to $1,500", "$5-6 million" -> "$5 million to $6 million":
    each amount read as money, the scale on both."""
    scale = f" {m['scale']}" if m["scale"] else ""
    return f"{m['cur']}{m['a']}{scale} to {m['cur']}{m['b']}{scale}"


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
    period = _final_period(m) if m[0].endswith(".") else ""  # "on 5 May." ends a sentence
    return f" {article}{numbers.ordinal(day)} of {_month(m['month'])}{period} "


Spelling = Literal["american", "british"]
_spelling: ContextVar[Spelling] = ContextVar("spelling", default="american")


def _spelled(unit: str) -> str:
    """A unit's name in the spelling `verbalize` was asked for."""
    return BRITISH_UNITS.get(unit, unit) if _spelling.get() == "british" else unit


def _measure(m: re.Match[str]) -> str:
    unit = _spelled(UNITS[m["unit"]])
    amount = m["num"].replace(",", "")
    if amount.lstrip("-") != "1":
        unit = IRREGULAR_PLURALS.get(unit, unit + "s")
    return f" {say_number(amount)} {unit} "


def _dotted_unit(m: re.Match[str]) -> str:
    """ "12 in." and "12in" are inches; "5 in a row" is not."""
    if m["space"] and not m["dot"]:
        return m[0]
    unit = _spelled(DOTTED_UNITS[m["unit"]])
    if m["num"] != "1":
        unit = IRREGULAR_PLURALS.get(unit, unit + "s")
    return f" {say_number(m['num'])} {unit}{_final_period(m) if m['dot'] else ''} "


def _feet_inches(m: re.Match[str]) -> str:
    """ "6'2\"" -> "six foot two" (a height), "6 ft 2 in" -> "six feet two inches"."""
    feet, inches = numbers.cardinal(int(m["f"])), numbers.cardinal(int(m["i"]))
    if m["prime"]:
        return f" {feet} foot {inches} "
    unit = "inch" if m["i"] == "1" else "inches"
    return f" {feet} {'foot' if m['f'] == '1' else 'feet'} {inches} {unit} "


def _degrees(m: re.Match[str]) -> str:
    scale = {"C": " Celsius", "F": " Fahrenheit"}.get(m["scale"] or "", "")
    word = "degree" if m["num"] == "1" else "degrees"
    return f" {say_number(m['num'])} {word}{scale} "


def _numbered_part(m: re.Match[str]) -> str:
    """ "Part III" -> "Part three", "World War II" -> "World War two". A lone C, L (or any
    D, M) is a letter: "Class C", "Grade C"."""
    value = numbers.roman(m["roman"])
    if value is None or (len(m["roman"]) == 1 and m["roman"] not in "IVX"):
        return m[0]
    return f"{m['word']} {numbers.cardinal(value)}"


# After a regnal "I": "of", a possessive, or the clause ending ("Charles I of England",
# "Charles I's", "under Charles I, the"), never a verb ("Tell Charles I said so").
_REGNAL_I_AFTER = re.compile(r"'s\b|\s+of\b|[,;:!?)\]]|[.\"')\]]*\s*$")


def _regnal(m: re.Match[str]) -> str:
    """ "Louis XIV" -> "Louis the fourteenth". A capitalised name (not a word like "Not" or
    "Then") and a numeral of I, V and X up to 39. A lone "X" stays a letter ("Malcolm X",
    "Generation X"); a lone "I" is the pronoun unless _REGNAL_I_AFTER follows it."""
    value = numbers.roman(m["roman"])
    if (
        value is None
        or m["name"] in NOT_NAMES
        or m["roman"] == "X"
        or (m["roman"] == "I" and not _REGNAL_I_AFTER.match(m.string, m.end()))
    ):
        return m[0]
    return f"{m['name']} the {numbers.ordinal(value)}"


def _short_year(m: re.Match[str]) -> str:
    """'78 -> "seventy-eight", '05 -> "oh five"."""
    year = int(m["y"])
    return f" {'oh ' if year < 10 else ''}{numbers.cardinal(year)} "


def _fraction(m: re.Match[str]) -> str:
    top, bottom = int(m["n"]), int(m["d"])
    if 0 < top < bottom and bottom in FRACTION_DENOMINATORS:
        return f" {numbers.fraction(top, bottom)} "
    return f" {numbers.cardinal(top)} {numbers.cardinal(bottom)} "  # 24/7, 9/11, 50/50


def _mixed_fraction(m: re.Match[str]) -> str:
    """ "2 1/2" -> "two and a half"."""
    top, bottom = int(m["n"]), int(m["d"])
    if 0 < top < bottom and bottom in FRACTION_DENOMINATORS:
        return f" {numbers.mixed(int(m['w']), top, bottom)} "
    return m[0]


def _score(m: re.Match[str]) -> str:
    """ "won 3-2" -> "won three-two", "a 2-0 win" -> "a two-nothing win": a pair of numbers
    is a score when one of SCORE_BEFORE is among the two words before it in its clause, or
    one of SCORE_AFTER is the word after it. Otherwise it is left for the range rule."""
    clause = re.split(r"[.!?;:]", m.string[: m.start()])[-1]
    before = re.findall(r"[A-Za-z]+", clause)[-2:]
    after = re.match(r"\s*([A-Za-z]+)", m.string[m.end() :])
    if not (
        any(w.lower() in SCORE_BEFORE for w in before)
        or (after and after[1].lower() in SCORE_AFTER)
    ):
        return m[0]
    a, b = (numbers.cardinal(int(n)) if int(n) else "nothing" for n in (m["a"], m["b"]))
    return f" {a}-{b} "


def _title(m: re.Match[str]) -> str:
    return TITLES[m["t"]]


def _final_period(m: re.Match[str]) -> str:
    """An abbreviation's period doubles as the sentence's when nothing follows it."""
    return "." if _AT_END.match(m.string, m.end()) else ""


def _street(m: re.Match[str]) -> str:
    """ "Baker St." -> "Baker Street"; without its period "Dr" is not a street ("Thanks Dr,")."""
    if m["t"] == "Dr" and not m["dot"]:
        return m[0]
    return f"{m['name']} {STREETS[m['t']]}{_final_period(m) if m['dot'] else ''}"


def _suffix(m: re.Match[str]) -> str:
    """ "Martin Luther King Jr." -> "... King Junior": after a name only."""
    return f"{m['name']} {SUFFIXES[m['s']]}{_final_period(m) if m['dot'] else ''}"


def _acronym(m: re.Match[str]) -> str:
    """ "U.S.A." -> "U S A": a dotted acronym is read letter by letter."""
    return " ".join(m["a"].split(".")) + (_final_period(m) if m["dot"] else "")


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
    # money, phone numbers, times and dates before plain numbers
    (
        re.compile(
            r"(?P<cur>[$€£¥])(?P<a>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)\s?[-–]\s?"
            r"(?P=cur)?(?P<b>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)(?![\d,])"
            r"(?:\s?(?P<scale>thousand|million|billion|trillion|k|m|bn|b)\b)?",
            re.I,
        ),
        _money_range,
    ),
    (
        re.compile(
            r"(?P<cur>[$€£¥])\s?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
            r"(?:\s?(?P<scale>thousand|million|billion|trillion|k|m|bn|b)\b)?",
            re.I,
        ),
        _money,
    ),
    (re.compile(r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)\s?(?P<cur>€)"), _money),
    # "50p" (two digits at most: "1080p" is a screen), "99¢"
    (re.compile(r"\b(?P<num>\d{1,2})p\b"), _subunit("£")),
    (re.compile(r"\b(?P<num>\d{1,3})\s?¢"), _subunit("$")),
    # "(555) 123-4567", "555-123-4567", "020 7946 0958": digit by digit, not a range
    (
        re.compile(
            r"(?<![\w-])(?:\(\d{3}\)\s?|\d{3}-)\d{3}-\d{4}(?![\w-])|"
            r"(?<![\w-])0\d{2,4}\s\d{3,4}\s\d{3,4}(?![\w-])"
        ),
        _phone,
    ),
    # "555-1234" after a word such as "call" or "phone"; otherwise a range
    (re.compile(r"(?<![\w-])\d{3}-\d{4}(?![\w-])"), _bare_phone),
    (
        re.compile(
            r"\b(?P<h>\d{1,2}):(?P<m>\d{2})(?::\d{2})?(?:\s?(?P<ap>[ap])\.?\s?m\b\.?)?", re.I
        ),
        _clock,
    ),
    (re.compile(r"\b(?P<h>\d{1,2})\.(?P<m>\d{2})\s?(?P<ap>[ap])\.?\s?m\b\.?", re.I), _clock),
    (re.compile(r"\b(?P<h>1[0-2]|0?[1-9])\s?(?P<ap>[ap])\.?\s?m\b\.?", re.I), _hour),
    (
        re.compile(
            r"\b(?P<w>" + "|".join(sorted(WEEKDAYS, key=len, reverse=True)) + r")"
            r"(?P<dot>\.)?(?!\w)"
        ),
        _weekday,
    ),
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
    (
        re.compile(
            r"\b(?P<m>"
            + "|".join(sorted(MONTH_ABBREVIATIONS, key=len, reverse=True))
            + r")(?:(?P<dot>\.)|(?=\s+\d{4}\b))"
        ),
        _month_abbreviation,
    ),
    # quantities: ranges first, so "5-10%" and "10-12 km" are not read with a minus
    (re.compile(r"(?<![\d.-])(?P<a>\d{1,2})\s?-\s?(?P<b>\d{1,2})(?![\d-])"), _score),
    # ranges: pages 10-12, 1914-18; "between 10-12" is "between ten and twelve"
    (re.compile(r"(?<=\d)\s?-\s?(?=\d)"), _range_word),
    (re.compile(r"~\s?(?=\d)"), _word("about")),
    (
        re.compile(r"(?P<num>-?(?:" + _NUMBER + r"))\s?%"),
        lambda m: f" {say_number(m['num'])} percent ",
    ),
    (re.compile(r"(?P<num>-?(?:" + _NUMBER + r"))\s?°\s?(?P<scale>[CF](?![a-z]))?"), _degrees),
    (
        re.compile(
            r"\b(?P<f>\d{1,2})(?:(?P<prime>')|\s?ft\.?\s)\s?(?P<i>\d{1,2})(?(prime)\"|\s?in\b\.?)"
        ),
        _feet_inches,
    ),
    (
        re.compile(r"(?P<num>-?(?:" + _NUMBER + r"))\s?(?P<unit>" + _UNIT_PATTERN + r")\b(?!'\w)"),
        _measure,
    ),
    (
        re.compile(r"(?P<num>\d+(?:\.\d+)?)(?P<space>\s?)(?P<unit>in)(?P<dot>\.)?(?!\w)"),
        _dotted_unit,
    ),
    (
        re.compile(r"\b(?P<c>1[0-9]|20)(?P<d>\d)0'?s\b"),
        lambda m: f" {numbers.plural(numbers.year(int(m['c'] + m['d'] + '0')))} ",
    ),
    (
        re.compile(r"(?:\B'|\b)(?P<d>[2-9])0'?s\b"),
        lambda m: f" {numbers.plural(numbers.cardinal(int(m['d']) * 10))} ",
    ),
    (
        re.compile(r"\b(?P<n>\d{1,3}(?:,\d{3})+|\d+)(?:st|nd|rd|th)\b", re.I),
        lambda m: f" {numbers.ordinal(int(m['n'].replace(',', '')))} ",
    ),
    (re.compile(r"\b(?P<w>\d{1,3})\s(?P<n>\d{1,2})/(?P<d>\d{1,3})\b"), _mixed_fraction),
    (
        re.compile(
            r"\b(?P<word>" + "|".join(NUMBERED_PARTS) + r"|Vol\.|Ch\.)\s+"
            r"(?P<roman>[IVXLCDM]+)\b"
        ),
        _numbered_part,
    ),
    (re.compile(r"\b(?P<name>[A-Z][a-z]+)\s(?P<roman>[IVX]+)\b"), _regnal),
    (re.compile(r"\b(?P<n>\d+)/(?P<d>\d+)\b"), _fraction),
    (re.compile(r"\bNos\.?\s?(?=\d)"), _word("numbers")),
    (re.compile(r"\b(?:No\.?|no\.)\s?(?=\d)"), _word("number")),  # not "No. I won't."
    (re.compile(r"#\s?(?=\d)"), _word("number")),
    (re.compile(r"#(?=[A-Za-z])"), _word("hashtag")),
    (re.compile(r"\bpp\.\s?(?=\d)"), _word("pages")),
    (re.compile(r"\bp\.\s?(?=\d)"), _word("page")),
    (re.compile(r"\bc(?:a)?\.\s?(?=\d)"), _word("circa")),
    (re.compile(r"§§\s?"), _word("sections")),
    (re.compile(r"§\s?"), _word("section")),
    (re.compile(r"¶\s?(?=\d)"), _word("paragraph")),
    # words
    (
        re.compile(
            r"(?<=\d\s)(?P<name>[A-Z][a-z]+)\s(?P<t>" + "|".join(STREETS) + r")\b(?P<dot>\.)?"
        ),
        _street,  # "12 Main St. Then": a house number makes it a street whatever follows
    ),
    (re.compile(r"\b(?P<t>" + "|".join(TITLES) + r")\.(?=\s+[A-Z])"), _title),
    (re.compile(r"\b(?P<t>" + "|".join(UNDOTTED_TITLES) + r")\b(?=\s+[A-Z])"), _title),
    (re.compile(r"\b(?P<t>Mr|Mrs|Ms)\.?(?!\w)"), _title),  # no other reading
    (
        re.compile(
            r"\b(?P<name>[A-Z][a-z]+)\s(?P<t>" + "|".join(STREETS) + r")(?P<dot>\.)?(?![\w.])"
            r"(?!\s+[A-Z])"
        ),
        _street,
    ),
    (re.compile(r"\b(?P<name>[A-Z][a-z]+,?)\s(?P<s>Jr|Sr)\b(?P<dot>\.)?"), _suffix),
    (re.compile(r"(?<=[A-Za-z]\s)v\.(?=\s+[A-Z])"), _word("versus")),  # Roe v. Wade
    (re.compile(r"(?<![\w.])(?P<a>" + _ABBREVIATION_PATTERN + r")(?!\w)"), _abbreviation),
    (re.compile(r"(?<![\w.])(?P<a>[A-Z](?:\.[A-Z])+)(?P<dot>\.)?(?!\w)"), _acronym),
    # numbers left over: years, negatives, decimals, cardinals
    (
        re.compile(r"(?<![\d,.])(?P<y>1[1-9]\d\d|20\d\d)(?!\d|[,.]\d)"),
        lambda m: f" {numbers.year(int(m['y']))} ",
    ),
    (re.compile(r"(?<!\w)'(?P<y>\d\d)\b"), _short_year),
    (re.compile(r"(?<=\d)\s*[*×]\s*(?=\d)"), _word("times")),  # 5 * 3, 4×4
    (re.compile(r"(?<![\w.,])-(?=\d|\.\d)"), _word("minus")),
    (re.compile(_NUMBER), lambda m: f" {say_number(m[0])} "),
    # symbols
    (re.compile(r"&"), _word("and")),
    (re.compile(r"(?<=\w)\+\+"), _word("plus plus")),  # C++
    (re.compile(r"(?<=[\w\s])\+(?=[\w\s.,;:!?)]|$)"), _word("plus")),  # 2 + 2, 18+
    (re.compile(r"\s=\s"), _word("equals")),
    # emphasis asterisks and underscores that are text, not markup: no sound
    (
        re.compile(r"(?<![\w*])[*_]+(?=\w)|(?<=[\w.,;:!?])[*_]+(?![\w*])|(?<=\s)\*+(?=\s)"),
        _word(""),
    ),
    (re.compile(r"@"), _word("at")),
    (re.compile(r"%"), _word("percent")),
    (re.compile(r"°"), _word("degrees")),
    (re.compile(r"¶"), _word("")),  # a pilcrow marking a paragraph: nothing to say
    (re.compile(r"(?<=[A-Za-z])/(?=or\b)"), _word("")),  # and/or, either/or
    (re.compile(r"(?<=[A-Za-z])/(?=[A-Za-z])"), _word("or")),
]


def _hugging_hyphens(replace: Callable[[re.Match[str]], str]) -> Callable[[re.Match[str]], str]:
    """A rule's words keep a hyphen that touched the written form: "COVID-19" ->
    "COVID-nineteen", "5-year-old" -> "five-year-old" (not "COVID- nineteen")."""

    def replace_tight(m: re.Match[str]) -> str:
        said = replace(m)
        if m.start() > 0 and m.string[m.start() - 1] == "-":
            said = said.lstrip(" ")
        if m.end() < len(m.string) and m.string[m.end()] == "-":
            said = said.rstrip(" ")
        return said

    return replace_tight


def verbalize(text: str, spelling: Spelling = "american") -> str:
    """Rewrite `text` the way a narrator says it, units in `spelling`; spacing and
    punctuation tidied."""
    token = _spelling.set(spelling)
    try:
        text = _unicode(text)
        for pattern, replace in RULES:
            text = pattern.sub(_hugging_hyphens(replace), text)
    finally:
        _spelling.reset(token)
    text = re.sub(r"\(\s*\)|\[\s*\]", "", text)  # brackets whose content was left out
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,.;:!?)\]])", r"\1", text)
    text = re.sub(r"([(\[])\s+", r"\1", text)
    text = re.sub(r",(?:\s*,)+", ",", text)
    text = re.sub(r"(\.\.\.|[!?]),", r"\1", text)
    text = re.sub(r"^[\s,;:]+", "", text)
    return text.strip()
