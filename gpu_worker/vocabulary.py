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
# Month abbreviations (May is a whole word, never one of them).
MONTH_ABBREVIATIONS = [m[:3] for m in MONTHS if m != "May"] + ["Sept"]
WEEKDAYS = {
    "Mon": "Monday",
    "Tue": "Tuesday",
    "Tues": "Tuesday",
    "Wed": "Wednesday",
    "Thu": "Thursday",
    "Thur": "Thursday",
    "Thurs": "Thursday",
    "Fri": "Friday",
    "Sat": "Saturday",
    "Sun": "Sunday",
}
# ... of which these are also English words ("the Sun", "they wed", "he sat"): expanded only
# in a date context or before a lower-case word, never at a sentence's end.
WEEKDAY_WORDS = {"Wed", "Sat", "Sun"}

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
    "Cpl": "Corporal",
    "Pvt": "Private",
    "Maj": "Major",
    "Adm": "Admiral",
    "Cmdr": "Commander",
    "Det": "Detective",
    "Supt": "Superintendent",
    "Hon": "Honorable",
    "Rt": "Right",
    "Revd": "Reverend",
    "Pres": "President",
}
# Titles British style writes without a period ("Dr Watson", "St Paul's") and that are not
# words themselves, so they are expanded before a capitalised name with or without one.
UNDOTTED_TITLES = ["Mr", "Mrs", "Ms", "Dr", "St", "Prof", "Capt", "Sgt", "Lt", "Cpl", "Revd"]
# Suffixes after a name ("Martin Luther King Jr.").
SUFFIXES = {"Jr": "Junior", "Sr": "Senior"}
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
    "et al.": "and others",
    "viz.": "namely",
    "ibid.": "ibidem",
    "esp.": "especially",
    "incl.": "including",
    "w/o": "without",
    "c/o": "care of",
    "Ph.D.": "P H D",
    "Prof.": "Professor",
    "Hon.": "Honorable",
    "Capt.": "Captain",
    "Sgt.": "Sergeant",
    "Lt.": "Lieutenant",
    "Cpl.": "Corporal",
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
# ... and at a sentence's start: "E.g." -> "For example".
ABBREVIATIONS |= {
    k[0].upper() + k[1:]: v[0].upper() + v[1:] for k, v in ABBREVIATIONS.items() if k[0].islower()
}
# Abbreviations that never end a sentence (tasks/text/chunking.py splits sentences by it).
# Street words are not here ("He lives on Fifth Ave. It is loud."), nor "etc", "Jr" or
# dotted acronyms ("in the U.S."): those often do end one.
NON_TERMINAL = {
    *TITLES,
    "e.g",
    "i.e",
    "vs",
    "approx",
    "a.k.a",
    "cf",
    "viz",
    "esp",
    "incl",
    "Dept",
    "Univ",
}
NON_TERMINAL |= {w[0].upper() + w[1:] for w in NON_TERMINAL if w[0].islower()}  # "E.g"
# Abbreviations that do not end a sentence when a number follows ("No. 10", "p. 5",
# "Jan. 5"), but may otherwise ("No. I won't.", "It was late in Jan. The snow came.").
BEFORE_NUMBER = {"No", "Nos", "no", "nos", "p", "pp", "ca", "Fig", "Vol", "Ch", "Art", "Sec"}
BEFORE_NUMBER |= set(MONTH_ABBREVIATIONS) | set(WEEKDAYS)
# After a number. One spelling throughout (American: "kilometer", "liter"): the engines say
# both alike and the scorer counts "metre" and "meter" as one word.
# unit names spelt the British way (verbalize(..., spelling="british")); plurals add "s"
BRITISH_UNITS = {
    "meter": "metre",
    "kilometer": "kilometre",
    "centimeter": "centimetre",
    "millimeter": "millimetre",
    "liter": "litre",
    "milliliter": "millilitre",
}

UNITS = {
    "m": "meter",
    "km": "kilometer",
    "kg": "kilogram",
    "cm": "centimeter",
    "mm": "millimeter",
    "mg": "milligram",
    "ml": "milliliter",
    "mL": "milliliter",
    "l": "liter",
    "L": "liter",
    "g": "gram",
    "mph": "mile per hour",
    "km/h": "kilometer per hour",
    "kph": "kilometer per hour",
    "m/s": "meter per second",
    "ft": "foot",
    "yd": "yard",
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
    "ms": "millisecond",
    "KB": "kilobyte",
    "kB": "kilobyte",
    "GB": "gigabyte",
    "MB": "megabyte",
    "TB": "terabyte",
    "Hz": "hertz",
    "kHz": "kilohertz",
    "MHz": "megahertz",
    "GHz": "gigahertz",
    "W": "watt",
    "kW": "kilowatt",
    "kWh": "kilowatt hour",
    "V": "volt",
}
# Units that are also words ("5 in a row"): only with their period ("12 in."), or joined to
# the number ("12in").
DOTTED_UNITS = {"in": "inch"}
IRREGULAR_PLURALS = {
    "foot": "feet",
    "inch": "inches",
    "hertz": "hertz",
    "kilohertz": "kilohertz",
    "megahertz": "megahertz",
    "gigahertz": "gigahertz",
    "mile per hour": "miles per hour",
    "kilometer per hour": "kilometers per hour",
    "meter per second": "meters per second",
}
CURRENCIES = {  # symbol: (unit, units, subunit, subunits)
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "", ""),
}
# Currencies whose subunit goes unsaid after a whole amount: "£3.50" is "three pounds fifty"
# (as a Briton says it), "$3.50" is "three dollars and fifty cents".
SHORT_SUBUNIT = {"£", "€"}
SCALE_WORDS = {"k": "thousand", "m": "million", "bn": "billion", "b": "billion"}
# Words a roman numeral after them numbers as a part ("Part III": "Part three"), not a reign.
NUMBERED_PARTS = [
    "Chapter",
    "Part",
    "Book",
    "Volume",
    "Act",
    "Scene",
    "Section",
    "Appendix",
    "Episode",
    "Phase",
    "Stage",
    "Round",
    "Article",
    "Title",
    "Type",
    "Class",
    "Level",
    "Grade",
    "Mark",
    "War",
    "Canto",
    "Psalm",
    "Series",
    "Figure",
    "Table",
    "Plate",
    "Exhibit",
    "Lesson",
    "Unit",
    "Movement",
    "Form",
    "Year",
    "Division",
    "Corps",
]
# Capitalised words that are not names: a roman numeral after them is no reign ("Not I.").
NOT_NAMES = {
    *"The A An And But Or Nor Not So Yes No Oh Ah Than Then Only Even Now If As At In On Of"
    " By To For From With Me Am Was Were Is Are Be Been Did Do Does Can Could Will Would"
    " Shall Should May Might Must Have Has Had Here There What When Where Who Whom Why How"
    " Said Says Say Thus Hence Also Too Well Perhaps Maybe Today Tonight Yesterday Tomorrow"
    " Unless Until While Because Though Although Whether Neither Either Both".split()
}
# Where a pair of numbers is a score, not a range ("won 3-2", "a 2-0 win").
SCORE_BEFORE = {
    *"won lost beat beaten defeated drew drawn led leading trailed trailing score scored"
    " scoring final".split()
}
SCORE_AFTER = {*"win victory defeat loss lead draw scoreline thrashing".split()}
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
    "‣": " ",
    "⁃": " ",
    "∙": " ",
    "◦": " ",
    "™": "",
    "℠": "",
    "®": "",
    "©": " copyright ",
    "†": "",
    "‡": "",
    "²": " squared ",
    "³": " cubed ",
    "≈": " approximately ",
    "≠": " is not ",
    "≤": " at most ",
    "≥": " at least ",
    "×": " times ",
    "÷": " divided by ",
    "±": " plus or minus ",
    "⁄": "/",
}
# "n/d" is read as a fraction only with these denominators ("3/4": "three quarters"); any
# other pair is two numbers ("24/7", "9/11", "50/50").
FRACTION_DENOMINATORS = {2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 16, 32, 64, 100}
