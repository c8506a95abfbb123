"""How closely a transcript matches the text it should say: a pure 0-100 score.

Both sides go through the same normalisation (spoken.verbalize, then case, punctuation,
hyphens, apostrophes and British spellings), so "$4.50" and "four dollars and fifty cents"
are the same words, and so are "colour" and "color".
They are then aligned word by word (Levenshtein over words, where two words written as one
— "note book" / "notebook" — also match), and the score is 100 * (1 - word error rate).
"""

import re
from dataclasses import dataclass

from whisper_normalizer.english import EnglishSpellingNormalizer

from gpu_worker.numbers import NUMBER_WORDS
from gpu_worker.spoken import verbalize

# British and American spellings of one word compare equal (Whisper writes American, a
# British text does not): whisper-normalizer's maintained British -> American word list,
# applied to both sides. Loaded once, at import.
AMERICAN_SPELLING: dict[str, str] = EnglishSpellingNormalizer().mapping
# Letters read one by one ("U N", "U.N.", "UN"): written as one word on both sides.
_LETTERS = re.compile(r"\b[A-Z](?:(?:\.|\s+)[A-Z]\b)+\.?")


def words(text: str) -> list[str]:
    """The comparable words of `text`: spoken forms, lower case, no punctuation."""
    text = verbalize(text)
    text = _LETTERS.sub(lambda m: re.sub(r"[.\s]", "", m[0]), text)
    text = re.sub(r"\b([ap])\.m\.", r"\1m", text.lower())
    text = text.replace("'", "").replace("-", " ")
    tokens = [AMERICAN_SPELLING.get(t, t) for t in re.sub(r"[^\w\s]|_", " ", text).split()]
    return [
        t
        for i, t in enumerate(tokens)  # "one hundred and five" == "one hundred five"
        if not (
            t == "and"
            and 0 < i < len(tokens) - 1
            and tokens[i - 1] in NUMBER_WORDS
            and tokens[i + 1] in NUMBER_WORDS
        )
    ]


# One step of an alignment: its kind, and the reference and hypothesis words it covers
# (start, end), end exclusive. M match, S substitution, D deletion (a reference word not
# heard), I insertion (a word heard that is not in the reference).
Step = tuple[str, tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class Alignment:
    """Word-level edit counts between a reference and a hypothesis, and the steps."""

    reference_words: int
    matches: int
    substitutions: int
    deletions: int
    insertions: int
    steps: tuple[Step, ...] = ()

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """Word error rate: errors per reference word (may exceed 1 with many insertions)."""
        if self.reference_words == 0:
            return 0.0 if self.insertions == 0 else 1.0
        return self.errors / self.reference_words

    @property
    def score(self) -> float:
        """0-100: 100 is a perfect reading, 0 is nothing right."""
        return round(100.0 * max(0.0, 1.0 - self.wer), 1)

    def deleted_at_start(self) -> int:
        """Reference words missing before the first word heard (a clipped start)."""
        return _run(self.steps, "D")

    def deleted_at_end(self) -> int:
        """Reference words missing after the last word heard (a truncated end)."""
        return _run(self.steps[::-1], "D")

    def repeated_words(self, reference: list[str], hypothesis: list[str]) -> int:
        """The longest run of inserted words that repeats words of the reference (a phrase
        read twice, a loop in generation)."""
        longest, run = 0, 0
        text = " " + " ".join(reference) + " "
        for kind, _, (h0, h1) in self.steps:
            if kind != "I":
                run = 0
                continue
            run += h1 - h0
            inserted = hypothesis[max(0, h1 - run) : h1]
            if f" {' '.join(inserted)} " in text:
                longest = max(longest, len(inserted))
            else:
                run = 0
        return longest


def _run(steps: tuple[Step, ...] | list[Step], kind: str) -> int:
    count = 0
    for step, (r0, r1), _ in steps:
        if step != kind:
            break
        count += r1 - r0
    return count


def align(reference: list[str], hypothesis: list[str]) -> Alignment:
    """Minimum-edit alignment of two word lists; compounds split differently count as matches."""
    n, m = len(reference), len(hypothesis)
    # cost[i][j]: edits to turn reference[:i] into hypothesis[:j]; op[i][j]: the last step.
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    op = [[""] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        cost[i][0], op[i][0] = i, "D"
    for j in range(1, m + 1):
        cost[0][j], op[0][j] = j, "I"
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            same = reference[i - 1] == hypothesis[j - 1]
            best, step = cost[i - 1][j - 1] + (0 if same else 1), "M" if same else "S"
            if cost[i - 1][j] + 1 < best:
                best, step = cost[i - 1][j] + 1, "D"
            if cost[i][j - 1] + 1 < best:
                best, step = cost[i][j - 1] + 1, "I"
            if (
                i > 1
                and reference[i - 2] + reference[i - 1] == hypothesis[j - 1]
                and cost[i - 2][j - 1] < best
            ):
                best, step = cost[i - 2][j - 1], "R"  # two reference words heard as one
            if (
                j > 1
                and hypothesis[j - 2] + hypothesis[j - 1] == reference[i - 1]
                and cost[i - 1][j - 2] < best
            ):
                best, step = cost[i - 1][j - 2], "H"  # one reference word heard as two
            cost[i][j], op[i][j] = best, step
    counts = {"M": 0, "S": 0, "D": 0, "I": 0}
    steps: list[Step] = []
    i, j = n, m
    while i or j:
        step = op[i][j]
        kind = "M" if step in "RH" else step
        counts[kind] += 1
        di = {"M": 1, "S": 1, "D": 1, "I": 0, "R": 2, "H": 1}[step]
        dj = {"M": 1, "S": 1, "D": 0, "I": 1, "R": 1, "H": 2}[step]
        steps.append((kind, (i - di, i), (j - dj, j)))
        i, j = i - di, j - dj
    return Alignment(n, counts["M"], counts["S"], counts["D"], counts["I"], tuple(reversed(steps)))


def compare(text: str, transcript: str) -> Alignment:
    """Align what should have been said with what was heard."""
    return align(words(text), words(transcript))


def score(text: str, transcript: str) -> float:
    """0-100 agreement between `text` and `transcript` after normalising both."""
    return compare(text, transcript).score
