"""The pronunciation lexicon (tasks/text/lexicon.py, gpu_worker/respelling.py): what it
changes in the text, how a take is scored with it, and a chapter narrated with it."""

import json
from pathlib import Path

import pytest

from gpu_worker import scoring
from gpu_worker.errors import InputError
from gpu_worker.respelling import as_written
from tasks.text import ChunkingOptions
from tasks.text.lexicon import candidates, lexicon_for, read_lexicon, respell, respellings_in

LEXICON = {"Saoirse Ronan": "Seer-sha Ronan", "Ronan": "Roe-nan", "gif": "jif", "Will": "Wil"}


@pytest.mark.parametrize(
    ("text", "said"),
    [
        # a lower-case key matches any case; a key with a capital only that case
        ("A GIF, a gif, a Gif.", "A jif, a jif, a jif."),
        ("Will said he will.", "Wil said he will."),
        # whole words only: not inside another word, nor a hyphenated or possessive one
        ("gifted gifs", "gifted gifs"),
        ("Ronan's boat", "Ronan's boat"),
        # phrases across any whitespace; the longer key wins, and nothing is respelled twice
        ("Saoirse\n Ronan met Ronan.", "Seer-sha Ronan met Roe-nan."),
    ],
)
def test_respelling_rules(text: str, said: str) -> None:
    assert respell(text, LEXICON) == said


def test_a_respelling_with_backslashes_is_taken_literally() -> None:
    assert respell("Zed.", {"Zed": r"Z\1d"}) == r"Z\1d."


def test_respellings_in_names_what_a_text_holds() -> None:
    said = respell("Saoirse Ronan and Ronan", LEXICON)
    assert respellings_in(said, LEXICON) == {
        "Seer-sha Ronan": "Saoirse Ronan",
        "Roe-nan": "Ronan",
    }


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ('Hermione = "Her-my-oh-nee"\nbad = 3\n', "'bad' must map to a respelling in quotes"),
        ('Hermione = "Her-my-oh-nee\n', "not valid TOML"),
        ('"..." = "dots"\n', "both need a letter or digit"),
        ('[names]\nA = "b"\n', "'names' must map to a respelling in quotes"),
    ],
)
def test_a_bad_lexicon_is_one_line_naming_the_file(toml: str, says: str) -> None:
    with pytest.raises(InputError, match=r"lexicon\.toml: ") as refused:
        read_lexicon(toml, "lexicon.toml")
    assert says in str(refused.value)


def test_the_lexicon_beside_the_chapter_is_used_and_given_entries_override_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "lexicon.toml").write_text('Nguyen = "Win"\nAoife = "Ee-fa"\n')
    chapter = tmp_path / "ch.md"
    chapter.write_text("x")
    assert lexicon_for(str(chapter), {"Aoife": "Eefa"}) == {"Nguyen": "Win", "Aoife": "Eefa"}
    assert lexicon_for(str(tmp_path / "elsewhere" / "ch.md"), None) == {}


def test_a_take_heard_as_the_original_word_is_a_match() -> None:
    """Whisper hears the respelling "Lester" as "Leicester" (measured on the embedded voice):
    that is the word the text meant."""
    respellings = {"Lester": "Leicester", "Shiv-awn": "Siobhan"}
    reference = scoring.words("Siobhan took the train to Lester.".replace("Siobhan", "Shiv-awn"))
    for heard in ("Siobhan took the train to Leicester.", "Shiv awn took the train to Lester."):
        hypothesis = as_written(scoring.words(heard), respellings)
        assert scoring.align(reference, hypothesis).wer == 0.0, heard
    plain = scoring.align(reference, scoring.words("Siobhan took the train to Leicester."))
    assert plain.wer > 0  # without the respellings it is not


def test_names_and_rare_words_are_listed_most_frequent_first() -> None:
    found = candidates(
        [
            "Hermione climbed to the lamp room. The keeper, Okafor, was there.",
            '"Hermione," said Okafor, "the thistledown is blowing." The colour held.',
            "Hermione nodded. I will go, she said.",
        ]
    )
    assert [(c.word, c.count, c.kind) for c in found] == [
        ("Hermione", 3, "name"),
        ("Okafor", 2, "name"),
        ("thistledown", 1, "rare"),
    ]  # "colour" is a word (British spelling), "I" and "The" are not names


@pytest.mark.usefixtures("prefect_server")
def test_a_lexicon_fixes_a_name_keeps_the_subtitles_and_regenerates_only_its_chunks(
    tmp_path: Path, cache: Path
) -> None:
    from flows.chapter import NarrationOptions, narrate_chapter
    from gpu_worker.schema import GenerationParams
    from tests.conftest import local_backend

    source = tmp_path / "pier.md"
    source.write_text(
        "Aoife waved from the pier at dawn.\n\nThe boats went out one by one.\n\n"
        "Later, Aoife watched them come home.\n\nThe harbour was quiet by noon.\n"
    )
    options = NarrationOptions(
        generation=GenerationParams(n_candidates=1, max_retries=0),
        chunking=ChunkingOptions(target_chars=40, max_chars=80),
        formats=[],
        validate_chapter=False,
    )
    backend = local_backend()

    def narrate(lexicon: dict[str, str] | None) -> tuple[list[dict], str, int]:
        before = backend.requests
        result = narrate_chapter(str(source), str(tmp_path / "out"), None, options, None, lexicon)
        chunks = json.loads(Path(result.metadata).read_text())["chunks"]
        return chunks, Path(result.subtitles).read_text(), backend.requests - before

    plain, _, made = narrate(None)
    assert made == 4
    fixed, subtitles, made = narrate({"Aoife": "Eefa"})
    assert made == 2  # exactly the two chunks that hold the name
    named = [i for i, c in enumerate(plain) if "Aoife" in c["display"]]
    assert named == [0, 2]
    for i in named:  # the engine said something else, and it was heard
        assert "Eefa" in fixed[i]["text"] and "Aoife" in fixed[i]["display"]
        assert fixed[i]["transcript"] != plain[i]["transcript"]
    # measured: the embedded voice reads "Aoife" as "I've"; "Eefa" is heard as written
    assert "eefa" in fixed[0]["transcript"].lower() and "eefa" not in plain[0]["transcript"].lower()
    assert subtitles.count("Aoife") == 2 and "Eefa" not in subtitles
    _, _, made = narrate({"Aoife": "Ee-fa"})  # one entry edited
    assert made == 2
    _, _, made = narrate({"Aoife": "Ee-fa"})
    assert made == 0


def test_narrator_words_lists_them_with_their_respellings(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    chapter = tmp_path / "ch.md"
    chapter.write_text("# Rock\n\nHermione met Okafor. Okafor smiled at Hermione.\n")
    (tmp_path / "lexicon.toml").write_text('Hermione = "Her-my-oh-nee"\n')
    done = CliRunner().invoke(app, ["words", str(chapter)])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[1].split() == ["Hermione", "2", "name", "=", '"Her-my-oh-nee"']
    assert lines[2].split() == ["Okafor", "2", "name"]
    bad = CliRunner().invoke(app, ["words", str(chapter), "--lexicon", str(tmp_path / "no.toml")])
    assert bad.exit_code == 1 and "--lexicon" in bad.output and "No such file" in bad.output


def test_a_key_with_a_capital_wins_over_the_same_word_in_lower_case() -> None:
    assert respell("GIF and gif", {"gif": "jif", "GIF": "G I F"}) == "G I F and jif"
