"""The word tables spoken text is made from (months, titles, units, abbreviations, ...).

Tables only; the rules that use them are in spoken.py.
"""

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
MONTH_BY_PREFIX = {m[:3].lower(): m for m in MONTHS} | {"sept": "September"}
MONTH_PATTERN = (
    r"(?P<month>January|February|March|April|May|June|July|August|September|October|November"
    r"|December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\.?"
)

# Titles are expanded before a capitalised name; several double as street words after one.
TITLES = {
    "Dr": "Doctor",
    "Mr": "Mister",
    "Mrs": "Missus",
    "Ms": "Miz",
    "Prof": "Professor",
    "St": "Saint",
    "Mt": "Mount",
    "Capt": "Captain",
    "Col": "Colonel",
    "Gen": "General",
    "Lt": "Lieutenant",
    "Sgt": "Sergeant",
    "Rev": "Reverend",
    "Fr": "Father",
    "Gov": "Governor",
    "Sen": "Senator",
    "Rep": "Representative",
    "Insp": "Inspector",
}
STREETS = {
    "St": "Street",
    "Ave": "Avenue",
    "Rd": "Road",
    "Blvd": "Boulevard",
    "Dr": "Drive",
    "Ln": "Lane",
}
# Always expanded (the trailing period belongs to the abbreviation).
ABBREVIATIONS = {
    "e.g.": "for example",
    "i.e.": "that is",
    "etc.": "et cetera",
    "vs.": "versus",
    "vs": "versus",
    "approx.": "approximately",
    "a.k.a.": "also known as",
    "cf.": "compare",
    "Jr.": "Junior",
    "Sr.": "Senior",
    "Inc.": "Incorporated",
    "Ltd.": "Limited",
    "Co.": "Company",
    "Corp.": "Corporation",
    "Fig.": "Figure",
    "Vol.": "Volume",
    "Ch.": "Chapter",
    "Dept.": "Department",
    "Univ.": "University",
    "Ave.": "Avenue",
}
# Abbreviations that never end a sentence (tasks/text/chunking.py splits sentences by it).
NON_TERMINAL = {
    *TITLES,
    "e.g",
    "i.e",
    "vs",
    "approx",
    "a.k.a",
    "cf",
    "No",
    "Nos",
    "ca",
    "Fig",
    "Vol",
    "Ch",
    "pp",
    "p",
    "Dept",
    "Univ",
    "Ave",
    *(m[:3] for m in MONTHS),
    "Sept",
}
UNITS = {
    "km": "kilometer",
    "kg": "kilogram",
    "cm": "centimeter",
    "mm": "millimeter",
    "mg": "milligram",
    "ml": "milliliter",
    "mph": "mile per hour",
    "km/h": "kilometer per hour",
    "ft": "foot",
    "lb": "pound",
    "lbs": "pound",
    "oz": "ounce",
    "mi": "mile",
    "hr": "hour",
    "hrs": "hour",
    "min": "minute",
    "mins": "minute",
    "sec": "second",
    "secs": "second",
    "GB": "gigabyte",
    "MB": "megabyte",
    "TB": "terabyte",
    "kW": "kilowatt",
    "kWh": "kilowatt hour",
}
IRREGULAR_PLURALS = {
    "foot": "feet",
    "mile per hour": "miles per hour",
    "kilometer per hour": "kilometers per hour",
}
CURRENCIES = {  # symbol: (unit, units, subunit, subunits)
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "", ""),
}
SCALE_WORDS = {"k": "thousand", "m": "million", "bn": "billion", "b": "billion"}
ROMAN = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
CHARACTERS = {
    "‘": "'",
    "’": "'",
    "‚": "'",
    "‛": "'",
    "′": "'",
    "“": '"',
    "”": '"',
    "„": '"',
    "‟": '"',
    "″": '"',
    "«": '"',
    "»": '"',
    "…": "...",
    "−": "-",
    "‐": "-",
    "‑": "-",
    "\u00a0": " ",
    "\u2009": " ",
    "\u202f": " ",
    "\u00ad": "",
    "\u200b": "",
    "\u200c": "",
    "\u200d": "",
    "\ufeff": "",
    "•": " ",
    "·": " ",
    "×": " times ",
    "÷": " divided by ",
    "±": " plus or minus ",
    "→": " to ",
    "⁄": "/",
}
