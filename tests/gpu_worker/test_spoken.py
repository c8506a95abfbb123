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
    ("A fee of £2.50.", "A fee of two pounds and fifty pence."),
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
