"""Byte-level BPE primitives shared by the GLIDE (GPT-2) and CLIP tokenizers.

Both tokenizers map every UTF-8 byte to a printable unicode character, so merges can be stored as
text and any input string can be tokenized without an "unknown" token.
"""
from functools import lru_cache
from typing import Dict, Set, Tuple

Pair = Tuple[str, str]


@lru_cache()
def bytes_to_unicode() -> Dict[int, str]:
    """Map each of the 256 byte values to a printable unicode character.

    Printable latin-1 bytes map to themselves; the others (control characters, space, ...) are
    shifted to code points from 256 upwards. The order of this dict defines the ids of the 256
    base symbols in both official vocabularies, so it must not change.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    byte_values = printable[:]
    code_points = printable[:]
    shift = 0
    for b in range(256):
        if b not in printable:
            byte_values.append(b)
            code_points.append(256 + shift)
            shift += 1
    return dict(zip(byte_values, (chr(c) for c in code_points)))


def get_pairs(word: Tuple[str, ...]) -> Set[Pair]:
    """The set of adjacent symbol pairs in ``word``."""
    return set(zip(word, word[1:]))


def merge_pair(word: Tuple[str, ...], pair: Pair) -> Tuple[str, ...]:
    """Replace every non-overlapping occurrence of ``pair`` in ``word``, scanning left to right."""
    first, second = pair
    merged = []
    i = 0
    while i < len(word):
        if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
            merged.append(first + second)
            i += 2
        else:
            merged.append(word[i])
            i += 1
    return tuple(merged)


def apply_merges(word: Tuple[str, ...], bpe_ranks: Dict[Pair, int]) -> Tuple[str, ...]:
    """Repeatedly merge the adjacent pair with the lowest rank until no ranked pair remains.

    This is the merge loop of the reference tokenizers: picking the lowest-ranked pair present
    (rather than replaying all merges in order) gives identical results and is much faster.
    """
    pairs = get_pairs(word)
    while pairs:
        bigram = min(pairs, key=lambda pair: bpe_ranks.get(pair, float("inf")))
        if bigram not in bpe_ranks:
            break
        word = merge_pair(word, bigram)
        if len(word) == 1:
            break
        pairs = get_pairs(word)
    return word

