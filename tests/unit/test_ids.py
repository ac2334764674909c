"""Server-generated ids: shape, alphabet and randomness of ``nanoid``."""

from __future__ import annotations

import re
from collections import Counter

from libs.common.ids import _ALPHABET, NANOID_SIZE, is_valid_resource_id, nanoid


def test_nanoid_shape_and_alphabet() -> None:
    ids = [nanoid() for _ in range(2000)]
    assert all(len(i) == NANOID_SIZE for i in ids)
    assert all(re.fullmatch(r"[0-9A-Za-z_-]+", i) for i in ids)
    assert all(is_valid_resource_id(i) for i in ids)
    assert len(nanoid(8)) == 8 and len(nanoid(40)) == 40
    assert len(set(ids)) == len(ids)


def test_nanoid_uses_every_character_about_equally() -> None:
    # 64 characters, 21 per id, 3,000 ids: 63,000 draws, ~984 per character. A byte-to-character
    # mapping that favoured some characters (e.g. modulo of a non-multiple) would show here.
    counts = Counter("".join(nanoid() for _ in range(3000)))
    assert set(counts) == set(_ALPHABET)
    expected = 3000 * NANOID_SIZE / len(_ALPHABET)
    assert all(0.8 * expected < n < 1.2 * expected for n in counts.values()), counts
