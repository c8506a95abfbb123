"""Numbers as English words: cardinals, ordinals, years, decimals, fractions.

Pure functions, American style ("one hundred twenty", no "and"). Used by the speech
normaliser (spoken.py) and therefore by both the text preparation and the scorer.
"""

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = (
    (10**12, "trillion"),
    (10**9, "billion"),
    (10**6, "million"),
    (10**3, "thousand"),
)
# Every word a cardinal can contain.
NUMBER_WORDS = frozenset([*_ONES, *_TENS[2:], "hundred", *(name for _, name in _SCALES)])
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
_DIGIT_WORDS = dict(enumerate(_ONES[:10]))

# Above this, numbers are read digit by digit (serial numbers, not quantities).
MAX_CARDINAL = 10**15 - 1


def cardinal(n: int) -> str:
    """12 -> "twelve", 1250 -> "one thousand two hundred fifty", -3 -> "minus three"."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n > MAX_CARDINAL:
        return digits(str(n))
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {cardinal(rest)}" if rest else "")
    for value, name in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            return f"{cardinal(head)} {name}" + (f" {cardinal(rest)}" if rest else "")
    raise AssertionError(n)  # unreachable: every n >= 1000 meets a scale


def ordinal(n: int) -> str:
    """1 -> "first", 22 -> "twenty-second", 100 -> "one hundredth"."""
    words = cardinal(n)
    cut = max(words.rfind(" "), words.rfind("-")) + 1
    head, last = words[:cut], words[cut:]
    if last in _ORDINAL_WORDS:
        last = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + last


def year(n: int) -> str:
    """1984 -> "nineteen eighty-four", 1905 -> "nineteen oh five", 2005 -> "two thousand five"."""
    if not 1000 <= n <= 9999 or 2000 <= n <= 2009 or n % 1000 == 0:
        return cardinal(n)
    century, rest = divmod(n, 100)
    if rest == 0:
        return f"{cardinal(century)} hundred"
    if rest < 10:
        return f"{cardinal(century)} oh {cardinal(rest)}"
    return f"{cardinal(century)} {cardinal(rest)}"


def plural(words: str) -> str:
    """The plural of a spoken number: "nineteen ninety" -> "nineteen nineties"."""
    if words.endswith("y"):
        return words[:-1] + "ies"
    if words.endswith("x"):
        return words + "es"
    return words + "s"


def digits(text: str) -> str:
    """ "4071" -> "four zero seven one": each digit on its own."""
    return " ".join(_DIGIT_WORDS[int(c)] for c in text if c.isdigit())


def decimal(text: str) -> str:
    """ "3.14" -> "three point one four", ".5" -> "zero point five"."""
    whole, _, frac = text.partition(".")
    head = cardinal(int(whole.replace(",", ""))) if whole else "zero"
    return f"{head} point {digits(frac)}" if frac else head


def fraction(numerator: int, denominator: int) -> str:
    """1/2 -> "one half", 3/4 -> "three quarters", 5/8 -> "five eighths"."""
    if denominator == 2:
        unit = "half" if numerator == 1 else "halves"
    elif denominator == 4:
        unit = "quarter" if numerator == 1 else "quarters"
    else:
        unit = ordinal(denominator) + ("" if numerator == 1 else "s")
    return f"{cardinal(numerator)} {unit}"


def mixed(whole: int, numerator: int, denominator: int) -> str:
    """2 1/2 -> "two and a half", 3 3/4 -> "three and three quarters"."""
    part = fraction(numerator, denominator)
    if numerator == 1:
        part = "a " + part.removeprefix("one ")
    return f"{cardinal(whole)} and {part}"


_ROMAN_DIGITS = (
    (1000, "M"),
    (900, "CM"),
    (500, "D"),
    (400, "CD"),
    (100, "C"),
    (90, "XC"),
    (50, "L"),
    (40, "XL"),
    (10, "X"),
    (9, "IX"),
    (5, "V"),
    (4, "IV"),
    (1, "I"),
)


def roman(text: str) -> int | None:
    """ "XIV" -> 14; None unless `text` is a roman numeral written the standard way ("IIII",
    "VX", "IC" and "LCD" are not). Whether a valid one is a number at all ("MIX", "DC") is
    for the caller to judge from the words around it."""
    n, rest = 0, text
    for value, letters in _ROMAN_DIGITS:
        while rest.startswith(letters):
            n, rest = n + value, rest[len(letters) :]
    if rest or not n or _to_roman(n) != text:
        return None
    return n


def _to_roman(n: int) -> str:
    out = ""
    for value, letters in _ROMAN_DIGITS:
        count, n = divmod(n, value)
        out += letters * count
    return out
