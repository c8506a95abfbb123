"""The speech normaliser: written text in, what a narrator says out."""

import pytest

from gpu_worker.spoken import verbalize

CASES = [
    # cardinals, negatives, decimals, ordinals
    ("There were 14 chairs and 6 people.", "There were fourteen chairs and six people."),
    ("She climbed 117 steps.", "She climbed one hundred seventeen steps."),
    ("It cost 1,250 votes.", "It cost one thousand two hundred fifty votes."),
    ("A crowd of 2,000,000.", "A crowd of two million."),
    ("It fell to -5 overnight.", "It fell to minus five overnight."),
    ("Pi is 3.14.", "Pi is three point one four."),
    ("Add .5 of it.", "Add zero point five of it."),
    ("Agent 007 waited.", "Agent zero zero seven waited."),
    ("the 2nd and 21st floors", "the second and twenty-first floors"),
    ("her 100th birthday", "her one hundredth birthday"),
    # years and decades
    ("In 1984 they met.", "In nineteen eighty-four they met."),
    ("Built in 1905.", "Built in nineteen oh five."),
    ("Back in 2005.", "Back in two thousand five."),
    ("By 2021, it was done.", "By twenty twenty-one, it was done."),
    ("The 1990s were loud.", "The nineteen nineties were loud."),
    ("the '90s", "the nineties"),
    ("a winter in '78", "a winter in seventy-eight"),
    # money
    ("It cost $4.50.", "It cost four dollars and fifty cents."),
    ("Only $1.", "Only one dollar."),
    ("Just $0.99 each.", "Just ninety-nine cents each."),
    ("A fee of £2.50.", "A fee of two pounds fifty."),
    ("€5 at the door.", "five euros at the door."),
    ("A $3.2 million grant.", "A three point two million dollars grant."),
    ("It raised $18,400.", "It raised eighteen thousand four hundred dollars."),
    ("A $5k bonus.", "A five thousand dollars bonus."),
    # percentages, temperatures, units, symbols
    ("A 12% discount.", "A twelve percent discount."),
    ("Up 12.5 % today.", "Up twelve point five percent today."),
    ("It was 20°C outside.", "It was twenty degrees Celsius outside."),
    ("Turn 15° to starboard.", "Turn fifteen degrees to starboard."),
    ("She ran 5km.", "She ran five kilometers."),
    ("It weighs 1 kg.", "It weighs one kilogram."),
    ("a 6 ft fence", "a six feet fence"),
    ("Salt & pepper", "Salt and pepper"),
    ("two + two = four", "two plus two equals four"),
    ("rock/paper", "rock or paper"),
    # times
    ("at 7:30 a.m. sharp", "at seven thirty a.m. sharp"),
    ("at 7:45 a.m., which was early", "at seven forty-five a.m., which was early"),
    ("by 6:30 p.m.", "by six thirty p.m."),
    ("at 9 p.m. they left", "at nine p.m. they left"),
    ("It's 7pm.", "It's seven p.m."),
    ("It was 3:00.", "It was three o'clock."),
    ("At 12:05 exactly.", "At twelve oh five exactly."),
    ("The train left at 19:45.", "The train left at nineteen forty-five."),
    # dates
    ("on March 3rd, 2021", "on March third, twenty twenty-one"),
    ("on March 3, 2021", "on March third, twenty twenty-one"),
    ("by the 1st of June", "by the first of June"),
    ("on 5 May", "on the fifth of May"),
    ("Due 2021-03-04.", "Due March fourth, twenty twenty-one."),
    ("Born 12/25/2020.", "Born December twenty-fifth, twenty twenty."),
    ("Jan. 5 was cold.", "January fifth was cold."),
    ("pages 10-12", "pages ten to twelve"),
    ("from 1990–1995", "from nineteen ninety to nineteen ninety-five"),
    # fractions and numbered things
    ("Add 3/4 of it.", "Add three quarters of it."),
    ("Open 24/7.", "Open twenty-four seven."),
    ("Room No. 7 and #3.", "Room number seven and number three."),
    ("Chapter IV", "Chapter four"),
    # abbreviations
    ("Dr. Smith arrived.", "Doctor Smith arrived."),
    ("Mr. and Mrs. Hale", "Mister and Missus Hale"),
    ("Ms. Lee agreed.", "Miz Lee agreed."),
    ("Capt. Ezra Hale", "Captain Ezra Hale"),
    ("St. Paul and Mt. Everest", "Saint Paul and Mount Everest"),
    ("He lives on Baker St.", "He lives on Baker Street."),
    ("Turn onto Elm Dr. today.", "Turn onto Elm Drive today."),
    ("Apples, pears, etc.", "Apples, pears, et cetera."),
    ("fruit, e.g., apples", "fruit, for example, apples"),
    ("one thing, i.e. this", "one thing, that is this"),
    ("Ali vs. Frazier", "Ali versus Frazier"),
    ("Sammy Davis Jr. sang.", "Sammy Davis Junior sang."),
    # unicode punctuation
    ("“Really?” she asked.", '"Really?" she asked.'),
    ("It’s fine.", "It's fine."),
    ("Wait… what?", "Wait... what?"),
    ("cheap — she thought", "cheap, she thought"),
    ("word—word", "word, word"),
    ("non\u00a0breaking", "non breaking"),
    ("soft\u00adhyphen", "softhyphen"),
    ("An emoji 😀 here.", "An emoji here."),
    # addresses
    (
        "See https://www.example.com/docs/intro?x=1 now.",
        "See example dot com slash docs slash intro now.",
    ),
    ("Visit example.org.", "Visit example dot org."),
    ("Mail jane.doe@example.org.", "Mail jane dot doe at example dot org."),
]


@pytest.mark.parametrize(("written", "spoken"), CASES, ids=[c[0][:40] for c in CASES])
def test_verbalize(written: str, spoken: str) -> None:
    assert verbalize(written) == spoken


def test_verbalize_is_idempotent_on_its_own_output() -> None:
    for written, _ in CASES:
        once = verbalize(written)
        assert verbalize(once) == once, written


# What a careful narrator says for each class of written form ("Text read as written"), with
# the look-alikes that must stay as they are.
NARRATION = [
    # dotted acronyms are read as letters, the final period kept when it ends the sentence
    ("He joined the U.N. in 1990.", "He joined the U N in nineteen ninety."),
    ("They flew to Washington, D.C. on Monday.", "They flew to Washington, D C on Monday."),
    ("Made in the U.S.A.", "Made in the U S A."),
    ("The U.S. Army marched.", "The U S Army marched."),
    ("Ph.D. students", "P H D students"),
    ("Read the FAQ at NASA.", "Read the FAQ at NASA."),  # undotted: left to the engine
    ("J. K. Rowling wrote it.", "J. K. Rowling wrote it."),  # spaced initials stay
    # No. / Nos. before a number
    ("No. 10 Downing Street", "number ten Downing Street"),
    ("Nos. 3 and 4 were late.", "numbers three and four were late."),
    ("Read no. 5 again.", "Read number five again."),
    ("He lives at No 7.", "He lives at number seven."),
    ("No. I won't.", "No. I won't."),
    ("No, not today.", "No, not today."),
    ("There were no 5 o'clock trains.", "There were no five o'clock trains."),
    # St. is Saint before a name, Street after one
    ("St. Paul's Cathedral", "Saint Paul's Cathedral"),
    ("St Paul's is big.", "Saint Paul's is big."),
    ("Mount St. Helens erupted.", "Mount Saint Helens erupted."),
    ("He lives on Baker St.", "He lives on Baker Street."),
    ("She lives at 12 Main St.", "She lives at twelve Main Street."),
    ("Baker St and Elm Rd.", "Baker Street and Elm Road."),
    # titles and suffixes
    ("Gen. Lee met Lt. Col. Smith.", "General Lee met Lieutenant Colonel Smith."),
    ("Sgt. Jones and Cpl. Brown", "Sergeant Jones and Corporal Brown"),
    ("Capt. Hook, Prof. Green, Rev. Black", "Captain Hook, Professor Green, Reverend Black"),
    ("The Rt. Hon. member spoke.", "The Right Honorable member spoke."),
    ("Dr Watson and Mr Holmes", "Doctor Watson and Mister Holmes"),
    ("Martin Luther King Jr. spoke.", "Martin Luther King Junior spoke."),
    ("John Smith Sr said so.", "John Smith Senior said so."),
    ("Sammy Davis, Jr. sang.", "Sammy Davis, Junior sang."),
    ("the Gen Z crowd", "the Gen Z crowd"),  # undotted "Gen" is a word
    # Latin and other abbreviations read out
    ("Smith et al. found it.", "Smith and others found it."),
    ("Roe v. Wade", "Roe versus Wade"),
    ("cf. the last chapter", "compare the last chapter"),
    ("Approx. 20 people, viz. the crew.", "Approximately twenty people, namely the crew."),
    ("E.g. this one.", "For example this one."),
    ("tea w/o sugar", "tea without sugar"),
    ("See ibid. p. 4 and pp. 10-12.", "See ibidem page four and pages ten to twelve."),
    ("Built c. 1500.", "Built circa fifteen hundred."),
    # weekdays and months: "Sat", "Sun", "Wed", "May" as words stay words
    ("It was Mon. morning.", "It was Monday morning."),
    ("See you Tues.", "See you Tuesday."),
    ("On Sat. 14 July we met.", "On Saturday the fourteenth of July we met."),
    ("Wed Mar 3 2021", "Wednesday March third twenty twenty-one"),
    ("We met Sat. night.", "We met Saturday night."),
    ("He sat. The Sun rose.", "He sat. The Sun rose."),
    ("They wed in May.", "They wed in May."),
    ("Sept. 1939 was dark.", "September nineteen thirty-nine was dark."),
    ("He came in Jan. and left in Feb.", "He came in January and left in February."),
    ("It was Dec. 24.", "It was December twenty-fourth."),
    ("You may 5 times", "You may five times"),
    # roman numerals: reigns, numbered parts; never the pronoun, never words like MIX
    ("Louis XIV ruled.", "Louis the fourteenth ruled."),
    ("Elizabeth II was crowned.", "Elizabeth the second was crowned."),
    ("Henry VIII's wives", "Henry the eighth's wives"),
    ("Pope John Paul II", "Pope John Paul the second"),
    ("Charles I of England", "Charles the first of England"),
    ("Under Charles I, the war began.", "Under Charles the first, the war began."),
    ("Part III, Book II, Act V", "Part three, Book two, Act five"),
    ("World War II and World War I", "World War two and World War one"),
    ("Type II diabetes, Stage IV", "Type two diabetes, Stage four"),
    ("Charles I was beheaded.", "Charles I was beheaded."),  # conservative: a verb follows
    ("Tell Charles I said so.", "Tell Charles I said so."),
    ("Not I.", "Not I."),
    ("Then I left, and I was glad.", "Then I left, and I was glad."),
    ("Malcolm X spoke.", "Malcolm X spoke."),
    ("Mix the DC current with the LCD and MIX.", "Mix the DC current with the LCD and MIX."),
    ("Send your CV to Class C.", "Send your CV to Class C."),
    # units after numbers, singular and plural; "in" only as "in." or "12in"
    ("It is 5 m long and 1 m wide.", "It is five meters long and one meter wide."),
    (
        "A 10 km run, 2.5 cm, 3 mm.",
        "A ten kilometers run, two point five centimeters, three millimeters.",
    ),
    ("2 kg, 500 g, 20 mg", "two kilograms, five hundred grams, twenty milligrams"),
    ("1 lb, 3 lbs, 4 oz", "one pound, three pounds, four ounces"),
    (
        "60 mph, 100 km/h, 80 kph",
        "sixty miles per hour, one hundred kilometers per hour, eighty kilometers per hour",
    ),
    ("Pour 250 ml, 2 l, 1 L.", "Pour two hundred fifty milliliters, two liters, one liter."),
    (
        "5 MB, 2 GB, 1 TB, 512 KB",
        "five megabytes, two gigabytes, one terabyte, five hundred twelve kilobytes",
    ),
    ("At 50 Hz, 3 kHz, 60 W, 2 kW", "At fifty hertz, three kilohertz, sixty watts, two kilowatts"),
    (
        "It was 20 °C, then 68°F.",
        "It was twenty degrees Celsius, then sixty-eight degrees Fahrenheit.",
    ),
    ("A board 12 in. wide, a 15in screen.", "A board twelve inches wide, a fifteen inches screen."),
    ("He was 6'2\" tall.", "He was six foot two tall."),
    ("He won 5 in a row.", "He won five in a row."),
    ("1 in 10 people", "one in ten people"),
    ("5 men and 3 games", "five men and three games"),
    # fractions, but not dates and not and/or
    ("Add 1/2 cup and 3/4 of it.", "Add one half cup and three quarters of it."),
    ("It took 2 1/2 hours.", "It took two and a half hours."),
    ("½ a spoon, 2½ cups, ¾ full", "one half a spoon, two and a half cups, three quarters full"),
    ("1/3 and 5/8 of it", "one third and five eighths of it"),
    ("On 3/4/2020 we met.", "On March fourth, twenty twenty we met."),
    ("the 9/11 report", "the nine eleven report"),
    ("Tea and/or coffee, either/or.", "Tea and or coffee, either or."),
    # ranges, not phone numbers, not names with numbers, not scores
    ("See pages 10-12.", "See pages ten to twelve."),
    ("The war of 1914–18.", "The war of nineteen fourteen to eighteen."),
    ("10-12 people came", "ten to twelve people came"),
    ("from 1990-1995", "from nineteen ninety to nineteen ninety-five"),
    ("Call 555-1234.", "Call five five five, one two three four."),
    ("Call (555) 123-4567.", "Call five five five, one two three, four five six seven."),
    ("Between 100-1000 people came.", "Between one hundred and one thousand people came."),
    ("It sold 250-1200 copies.", "It sold two hundred fifty to twelve hundred copies."),
    ("Ring us on 555-1234.", "Ring us on five five five, one two three four."),
    (
        "It cost $1,200-1,500.",
        "It cost one thousand two hundred dollars to one thousand five hundred dollars.",
    ),
    ("Rooms are £5-£10.", "Rooms are five pounds to ten pounds."),
    ("It raised $5-6 million.", "It raised five million dollars to six million dollars."),
    ("Fees of £20-30k a year.", "Fees of twenty thousand pounds to thirty thousand pounds a year."),
    ("A number of 250-1000 soldiers.", "A number of two hundred fifty to one thousand soldiers."),
    ("A ring of 100-200 stones.", "A ring of one hundred to two hundred stones."),
    # asterisks and underscores written as text have no sound; between numbers, "times"
    ("Write *every* ship in it.", "Write every ship in it."),
    ("It was _very_ cold.", "It was very cold."),
    ("See the note*.", "See the note."),
    ("5 * 3 = 15", "five times three equals fifteen"),
    ("a 4×4 truck", "a four times four truck"),
    ("the snake_case name", "the snake_case name"),
    ("During COVID-19 we stayed home.", "During COVID-nineteen we stayed home."),
    ("a 5-year-old boy", "a five-year-old boy"),
    ("They won 3-2.", "They won three-two."),
    ("a 2-0 win", "a two-nothing win"),
    ("The final score was 3-1.", "The final score was three-one."),
    # decades and apostrophe years
    ("the 1960s", "the nineteen sixties"),
    ("the '60s and the 90's", "the sixties and the nineties"),
    ("the summer of '68", "the summer of sixty-eight"),
    ("the 2000s and the 1800s", "the two thousands and the eighteen hundreds"),
    # symbols: said where they mean something, dropped where they only decorate
    ("London → Paris", "London to Paris"),
    ("← Back • Next", "Back Next"),
    ("Acme™ and Foo®", "Acme and Foo"),
    ("© 2020 Acme", "copyright twenty twenty Acme"),
    ("See § 5 and §§ 3-5.", "See section five and sections three to five."),
    ("¶ 2 says so.", "paragraph two says so."),
    ("He died† in 1850.‡", "He died in eighteen fifty."),
    ("Salt & pepper, 50% off", "Salt and pepper, fifty percent off"),
    ("my #1 fan", "my number one fan"),
    ("C++ and 18+", "C plus plus and eighteen plus"),
    ("a 5 m² room", "a five meters squared room"),
    # British dates and money; American dates unchanged
    ("14 July 1789", "the fourteenth of July seventeen eighty-nine"),
    ("On 1st March 2020 it began.", "On the first of March twenty twenty it began."),
    ("by the 14th July", "by the fourteenth of July"),
    ("It ended on 5 May.", "It ended on the fifth of May."),
    ("July 14, 1789", "July fourteenth, seventeen eighty-nine"),
    ("It cost £5.", "It cost five pounds."),
    ("Only £1.", "Only one pound."),
    ("It cost £3.50.", "It cost three pounds fifty."),
    ("It cost 50p, or 1p.", "It cost fifty pence, or one penny."),
    ("a £2.5m deal", "a two point five million pounds deal"),
    ("a £2 million deal", "a two million pounds deal"),
    (
        "It cost €3.50 or 5€ or 99¢.",
        "It cost three euros fifty or five euros or ninety-nine cents.",
    ),
]


@pytest.mark.parametrize(("written", "spoken"), NARRATION, ids=[c[0][:40] for c in NARRATION])
def test_narration(written: str, spoken: str) -> None:
    assert verbalize(written) == spoken


def test_narration_is_idempotent_on_its_own_output() -> None:
    for written, _ in NARRATION:
        once = verbalize(written)
        assert verbalize(once) == once, written


def test_a_screen_resolution_is_not_money() -> None:
    assert "pence" not in verbalize("a 1080p screen and a 720p one")


@pytest.mark.parametrize(
    ("written", "british"),
    [
        ("They walked 20 km.", "They walked twenty kilometres."),
        (
            "Add 250 ml of milk and 1 l of water.",
            "Add two hundred fifty millilitres of milk and one litre of water.",
        ),
        (
            "A wall 3 m high, 40 cm thick, 5 mm gaps.",
            "A wall three metres high, forty centimetres thick, five millimetres gaps.",
        ),
        ("The gas meter read 5 m.", "The gas meter read five metres."),  # only the unit it wrote
    ],
)
def test_units_in_british_spelling(written: str, british: str) -> None:
    assert verbalize(written, "british") == british
    assert "metre" not in verbalize(written) and "litre" not in verbalize(written)
