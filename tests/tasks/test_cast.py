"""Cast files: parsed from TOML, refused with the field named."""

import pytest

from gpu_worker.errors import InputError
from tasks.cast import read_cast

CAST = """
[narrator]
voice = "heart"

[speakers.Tom]
voice = "joe"
exaggeration = 0.7
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[narrator\nvoice = 1", "not valid TOML"),
        ("[speakers.Tom]\nvoice = 'joe'\npitch = 3", "speakers.Tom.pitch: Extra inputs"),
        ("[speakers.Tom]\nexaggeration = 5", "speakers.Tom.exaggeration: Input should be less"),
        ("[speakers.Tom]\n[speakers.TOM]", "two speakers differ only in case"),
        ('[speakers."<b>"]', "String should match pattern"),
    ],
)
def test_bad_casts_are_refused_saying_where(text: str, message: str) -> None:
    with pytest.raises(InputError, match=r"cast\.toml: ") as refused:
        read_cast(text, "cast.toml")
    assert message in str(refused.value)
