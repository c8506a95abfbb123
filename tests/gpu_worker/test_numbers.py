import pytest

from gpu_worker import numbers


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (13, "thirteen"),
        (40, "forty"),
        (99, "ninety-nine"),
        (100, "one hundred"),
        (101, "one hundred one"),
        (1000, "one thousand"),
        (1250, "one thousand two hundred fifty"),
        (1_000_001, "one million one"),
        (-7, "minus seven"),
        (10**12, "one trillion"),
    ],
)
def test_cardinal(n: int, words: str) -> None:
    assert numbers.cardinal(n) == words


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (1, "first"),
        (2, "second"),
        (3, "third"),
        (5, "fifth"),
        (8, "eighth"),
        (9, "ninth"),
        (12, "twelfth"),
        (20, "twentieth"),
        (21, "twenty-first"),
        (100, "one hundredth"),
        (1234, "one thousand two hundred thirty-fourth"),
    ],
)
def test_ordinal(n: int, words: str) -> None:
    assert numbers.ordinal(n) == words


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (1066, "ten sixty-six"),
        (1900, "nineteen hundred"),
        (1905, "nineteen oh five"),
        (1984, "nineteen eighty-four"),
        (2000, "two thousand"),
        (2009, "two thousand nine"),
        (2010, "twenty ten"),
        (2026, "twenty twenty-six"),
    ],
)
def test_year(n: int, words: str) -> None:
    assert numbers.year(n) == words


def test_huge_numbers_are_read_digit_by_digit() -> None:
    assert numbers.cardinal(10**15) == "one " + " ".join(["zero"] * 15)


def test_fractions_and_decimals() -> None:
    assert numbers.fraction(1, 2) == "one half"
    assert numbers.fraction(3, 4) == "three quarters"
    assert numbers.fraction(5, 8) == "five eighths"
    assert numbers.decimal("2.05") == "two point zero five"


@pytest.mark.parametrize(
    ("text", "value"),
    [("I", 1), ("IV", 4), ("IX", 9), ("XIV", 14), ("XXXIX", 39), ("XL", 40), ("MCMXCIX", 1999)],
)
def test_roman(text: str, value: int) -> None:
    assert numbers.roman(text) == value


@pytest.mark.parametrize("text", ["IIII", "VX", "IC", "VV", "LCD", "XIIV", "", "iv"])
def test_malformed_roman_numerals_are_none(text: str) -> None:
    assert numbers.roman(text) is None


def test_mixed_numbers() -> None:
    assert numbers.mixed(2, 1, 2) == "two and a half"
    assert numbers.mixed(1, 1, 3) == "one and a third"
    assert numbers.mixed(3, 3, 4) == "three and three quarters"
