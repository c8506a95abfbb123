"""A pronunciation lexicon's respellings, as the scorer hears them.

A chunk may ask the engine to say "Her-my-oh-nee" for "Hermione" (tasks/text/lexicon.py).
Whisper may hear either the respelling's sounds or the name it knows; both are the word
the text meant. `as_written` turns every heard original back into its respelling, so the
alignment with the chunk's text (which holds the respelling) counts it as a match.

    as_written(["hermione", "smiled"], {"Her-my-oh-nee": "Hermione"})
        -> ["her", "my", "oh", "nee", "smiled"]
"""

from gpu_worker import scoring


def as_written(heard: list[str], respellings: dict[str, str]) -> list[str]:
    """`heard` (scoring.words of a transcript) with each respelled word or phrase, heard as
    its original, replaced by the respelling's words."""
    if not respellings:
        return heard
    swaps = sorted(
        ((scoring.words(original), scoring.words(said)) for said, original in respellings.items()),
        key=lambda swap: len(swap[0]),
        reverse=True,
    )
    out: list[str] = []
    i = 0
    while i < len(heard):
        for original, said in swaps:
            if original and heard[i : i + len(original)] == original:
                out.extend(said)
                i += len(original)
                break
        else:
            out.append(heard[i])
            i += 1
    return out
