r"""Is a reaction's `emoji` one emoji? One emoji grapheme cluster, as UTS #51
(Unicode emoji) spells it, checked without a dependency:

- a pictograph (Extended_Pictographic), optionally followed by VS16 (U+FE0F) or a
  skin-tone modifier (U+1F3FB..U+1F3FF, optionally then VS16);
- a keycap: 0-9, # or *, optionally VS16, then U+20E3;
- a flag: two regional indicators (U+1F1E6..U+1F1FF);
- a tag flag: U+1F3F4, tag characters (U+E0020..U+E007E), U+E007F;
- and any of these joined by ZWJ (U+200D): families, professions, the rainbow flag.

So NUL, markup, letters, digits alone, text-presentation selectors and stray
joiners are refused. unicodedata has no emoji property, hence the table below:
the Extended_Pictographic ranges of Unicode 14.0 (emoji-data.txt; the version of
Python 3.11's unicodedata), generated with Perl, whose Unicode is the same:

    perl -e 'my $s; for my $c (0..0x10FFFF) { next if $c >= 0xD800 && $c <= 0xDFFF;
      my $m = chr($c) =~ /\p{Extended_Pictographic}/; $s = $c if $m && !defined $s;
      if (!$m && defined $s) { printf "    (0x%04X, 0x%04X),
", $s, $c - 1; undef $s } }'

The property already covers code points reserved for future emoji, so emoji
added after Unicode 14 pass too. A sequence that is well formed but not in the
RGI list (say, an unusual ZWJ pairing) is accepted: clients draw it as its parts.
"""

from __future__ import annotations

import re

EXTENDED_PICTOGRAPHIC: tuple[tuple[int, int], ...] = (
    (0x00A9, 0x00A9),
    (0x00AE, 0x00AE),
    (0x203C, 0x203C),
    (0x2049, 0x2049),
    (0x2122, 0x2122),
    (0x2139, 0x2139),
    (0x2194, 0x2199),
    (0x21A9, 0x21AA),
    (0x231A, 0x231B),
    (0x2328, 0x2328),
    (0x2388, 0x2388),
    (0x23CF, 0x23CF),
    (0x23E9, 0x23F3),
    (0x23F8, 0x23FA),
    (0x24C2, 0x24C2),
    (0x25AA, 0x25AB),
    (0x25B6, 0x25B6),
    (0x25C0, 0x25C0),
    (0x25FB, 0x25FE),
    (0x2600, 0x2605),
    (0x2607, 0x2612),
    (0x2614, 0x2685),
    (0x2690, 0x2705),
    (0x2708, 0x2712),
    (0x2714, 0x2714),
    (0x2716, 0x2716),
    (0x271D, 0x271D),
    (0x2721, 0x2721),
    (0x2728, 0x2728),
    (0x2733, 0x2734),
    (0x2744, 0x2744),
    (0x2747, 0x2747),
    (0x274C, 0x274C),
    (0x274E, 0x274E),
    (0x2753, 0x2755),
    (0x2757, 0x2757),
    (0x2763, 0x2767),
    (0x2795, 0x2797),
    (0x27A1, 0x27A1),
    (0x27B0, 0x27B0),
    (0x27BF, 0x27BF),
    (0x2934, 0x2935),
    (0x2B05, 0x2B07),
    (0x2B1B, 0x2B1C),
    (0x2B50, 0x2B50),
    (0x2B55, 0x2B55),
    (0x3030, 0x3030),
    (0x303D, 0x303D),
    (0x3297, 0x3297),
    (0x3299, 0x3299),
    (0x1F000, 0x1F0FF),
    (0x1F10D, 0x1F10F),
    (0x1F12F, 0x1F12F),
    (0x1F16C, 0x1F171),
    (0x1F17E, 0x1F17F),
    (0x1F18E, 0x1F18E),
    (0x1F191, 0x1F19A),
    (0x1F1AD, 0x1F1E5),
    (0x1F201, 0x1F20F),
    (0x1F21A, 0x1F21A),
    (0x1F22F, 0x1F22F),
    (0x1F232, 0x1F23A),
    (0x1F23C, 0x1F23F),
    (0x1F249, 0x1F3FA),
    (0x1F400, 0x1F53D),
    (0x1F546, 0x1F64F),
    (0x1F680, 0x1F6FF),
    (0x1F774, 0x1F77F),
    (0x1F7D5, 0x1F7FF),
    (0x1F80C, 0x1F80F),
    (0x1F848, 0x1F84F),
    (0x1F85A, 0x1F85F),
    (0x1F888, 0x1F88F),
    (0x1F8AE, 0x1F8FF),
    (0x1F90C, 0x1F93A),
    (0x1F93C, 0x1F945),
    (0x1F947, 0x1FAFF),
    (0x1FC00, 0x1FFFD),
)


def _char_class(ranges: tuple[tuple[int, int], ...]) -> str:
    return "[" + "".join(f"\\U{low:08X}-\\U{high:08X}" for low, high in ranges) + "]"


_PICTOGRAPH = _char_class(EXTENDED_PICTOGRAPHIC)
_MODIFIER = "[\\U0001F3FB-\\U0001F3FF]"
_ELEMENT = (
    "(?:"
    "[0-9#*]\\uFE0F?\\u20E3"  # keycap
    "|[\\U0001F1E6-\\U0001F1FF]{2}"  # flag: two regional indicators
    "|\\U0001F3F4[\\U000E0020-\\U000E007E]+\\U000E007F"  # tag flag (England, ...)
    f"|{_PICTOGRAPH}(?:\\uFE0F|{_MODIFIER}\\uFE0F?)?"
    ")"
)
_EMOJI = re.compile(f"{_ELEMENT}(?:\\u200D{_ELEMENT})*")


def is_emoji(text: str) -> bool:
    """One emoji (a single grapheme cluster of emoji), nothing before or after."""
    return _EMOJI.fullmatch(text) is not None
