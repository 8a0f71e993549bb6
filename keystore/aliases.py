"""What an alias looks like to a person: its confusable skeleton. Pure Python, no Django.

`ѕap_cloudintegrationcertificate` with a Cyrillic `ѕ` reads exactly like the reserved SAP alias,
and `ｓａｐ＿key` in full-width letters too. The skeleton folds compatibility forms (NFKC), case,
and every non-ASCII character that Unicode's confusables table lists as a look-alike of an
ASCII character (through confusable_homoglyphs, which ships that table), so that a reserved
prefix can be recognised however it is spelt.
"""

from __future__ import annotations

import functools
import unicodedata

from confusable_homoglyphs import confusables


@functools.lru_cache(maxsize=4096)
def _ascii_look_alike(char: str) -> str:
    found = confusables.is_confusable(char, greedy=True, preferred_aliases=[])
    for item in found or ():
        for homoglyph in item["homoglyphs"]:
            look_alike: str = homoglyph["c"]  # confusable_homoglyphs has no type information
            if look_alike.isascii():
                return look_alike
    return char


def skeleton(alias: str) -> str:
    """The alias as it reads: NFKC, case-folded, look-alikes replaced by their ASCII letters."""
    folded = unicodedata.normalize("NFKC", alias).casefold()
    return "".join(char if char.isascii() else _ascii_look_alike(char) for char in folded).lower()


def looks_like(alias: str, prefixes: tuple[str, ...]) -> bool:
    """Whether the alias reads as starting with one of `prefixes` (lower-case ASCII)."""
    return skeleton(alias).startswith(prefixes)
