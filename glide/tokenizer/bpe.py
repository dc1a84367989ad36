"""GPT-2 style byte-level BPE, the text tokenizer of GLIDE's diffusion models.

Encoding matches the reference ``glide_text2im.tokenizer.bpe`` exactly (it lowercases its input,
unlike GPT-2). The module also trains small vocabularies in the same file formats, so a model for
a narrow caption domain can use a much smaller token embedding than the official 50257 rows.
"""
import collections
import functools
import gzip
import json
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import regex as re

from glide.download import resolve_vocab_file
from glide.tokenizer._byte_level import Pair, apply_merges, bytes_to_unicode, merge_pair

PathLike = Union[str, Path]

END_OF_TEXT = "<|endoftext|>"
MERGES_HEADER = "#version: 0.2"

# GPT-2's pre-tokenizer: contractions, letter runs, digit runs and punctuation runs (each with an
# optional leading space), and whitespace. Without re.IGNORECASE, as in the reference: encode()
# lowercases first, so capitalized contractions never reach this pattern.
PRETOKENIZE_PATTERN = re.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)


def _read_text(path: PathLike) -> str:
    """Read a UTF-8 text file that may be gzip-compressed (detected by its magic bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode("utf-8")


def _parse_merges(text: str) -> List[Pair]:
    """Parse a merges file: an optional "#version" header, then one "a b" pair per line."""
    lines = text.split("\n")
    if lines and lines[0].startswith("#version"):
        lines = lines[1:]
    return [tuple(line.split()) for line in lines if line.strip()]


class Encoder:
    """Byte-level BPE tokenizer; the last vocabulary entry is the end-of-text/padding token."""

    def __init__(self, encoder: Dict[str, int], bpe_merges: Sequence[Pair], errors: str = "replace"):
        """
        :param encoder: token string (in the byte-to-unicode alphabet) -> id.
        :param bpe_merges: merge pairs, highest priority first.
        :param errors: how decode() handles byte sequences that are not valid UTF-8.
        """
        self.encoder = encoder
        self.decoder = {v: k for k, v in encoder.items()}
        self.errors = errors
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self.bpe_ranks = {tuple(merge): rank for rank, merge in enumerate(bpe_merges)}
        self.cache: Dict[str, str] = {}

    @classmethod
    def from_files(cls, encoder_json_path: PathLike, bpe_merges_path: PathLike) -> "Encoder":
        """Load an ``encoder.json`` and a ``vocab.bpe`` file (either may be gzip-compressed)."""
        encoder = json.loads(_read_text(encoder_json_path))
        merges = _parse_merges(_read_text(bpe_merges_path))
        return cls(encoder=encoder, bpe_merges=merges)

    @property
    def n_vocab(self) -> int:
        return len(self.encoder)

    @property
    def end_token(self) -> int:
        return self.n_vocab - 1

    def padded_tokens_and_mask(self, tokens: List[int], text_ctx: int) -> Tuple[List[int], List[bool]]:
        """Truncate to ``text_ctx`` tokens and pad with ``end_token``; the mask is True on real tokens."""
        tokens = tokens[:text_ctx]
        padding = text_ctx - len(tokens)
        padded_tokens = tokens + [self.end_token] * padding
        mask = [True] * len(tokens) + [False] * padding
        return padded_tokens, mask

    def bpe(self, token: str) -> str:
        """Split one pre-token (already in the byte alphabet) into space-separated vocabulary entries."""
        if token not in self.cache:
            self.cache[token] = " ".join(apply_merges(tuple(token), self.bpe_ranks))
        return self.cache[token]

    def encode(self, text: str) -> List[int]:
        """Lowercase ``text`` and turn it into token ids (no start or end token is added)."""
        bpe_tokens = []
        for token in PRETOKENIZE_PATTERN.findall(text.lower()):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            bpe_tokens.extend(self.encoder[piece] for piece in self.bpe(token).split(" "))
        return bpe_tokens

    def decode(self, tokens: Iterable[int]) -> str:
        """Turn token ids back into text. The end token decodes to its literal string."""
        text = "".join(self.decoder[token] for token in tokens)
        return bytearray(self.byte_decoder[c] for c in text).decode("utf-8", errors=self.errors)


def get_encoder(cache_dir: Optional[PathLike] = None) -> Encoder:
    """The official GLIDE tokenizer, its files taken from (or downloaded into) the cache directory.

    The files are checked on every call; they are parsed once per process (0.2 s each time on 2 EPYC
    cores, and every GLIDE model built takes a tokenizer), so all callers share one Encoder.
    """
    return _encoder_from_files(resolve_vocab_file("encoder.json.gz", cache_dir=cache_dir),
                               resolve_vocab_file("vocab.bpe.gz", cache_dir=cache_dir))


@functools.lru_cache(maxsize=None)
def _encoder_from_files(encoder_json_path: Path, bpe_merges_path: Path) -> Encoder:
    return Encoder.from_files(encoder_json_path, bpe_merges_path)


def train_bpe(
    texts: Iterable[str], num_merges: int, min_frequency: int = 2
) -> Tuple[Dict[str, int], List[Pair]]:
    """Learn a byte-level BPE vocabulary from ``texts``, in the format ``Encoder`` expects.

    The vocabulary always holds the 256 byte symbols (ids 0-255, in the official order), so any
    string can still be encoded; then one entry per learned merge; then ``<|endoftext|>`` last,
    which makes it ``Encoder.end_token``. Texts are lowercased and pre-tokenized exactly as
    ``Encoder.encode`` does, so merges are learned on the symbols that encoding will see.

    :param texts: training captions.
    :param num_merges: maximum number of merges to learn.
    :param min_frequency: stop once the most frequent pair occurs fewer times than this.
    :return: (encoder dict, merges list).
    """
    byte_encoder = bytes_to_unicode()
    word_counts = collections.Counter(
        "".join(byte_encoder[b] for b in token.encode("utf-8"))
        for text in texts
        for token in PRETOKENIZE_PATTERN.findall(text.lower())
    )
    words = {tuple(word): count for word, count in word_counts.items()}

    encoder = {symbol: i for i, symbol in enumerate(byte_encoder.values())}
    merges: List[Pair] = []
    while len(merges) < num_merges:
        pair_counts: Dict[Pair, int] = collections.Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pair_counts[pair] += count
        if not pair_counts:
            break
        # Ties are broken by the pair itself so that training is deterministic.
        best, best_count = min(pair_counts.items(), key=lambda item: (-item[1], item[0]))
        if best_count < min_frequency:
            break
        merges.append(best)
        # Two different merges can spell the same string ("a"+"bc", "ab"+"c"); it needs one id only.
        encoder.setdefault(best[0] + best[1], len(encoder))
        words = {merge_pair(word, best): count for word, count in words.items()}
    encoder[END_OF_TEXT] = len(encoder)
    return encoder, merges


def save_vocab(encoder: Dict[str, int], merges: Sequence[Pair], directory: PathLike) -> Tuple[Path, Path]:
    """Write ``encoder.json`` and ``vocab.bpe`` into ``directory`` in the official GPT-2 formats.

    :return: the two paths, ready for ``Encoder.from_files``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    encoder_path = directory / "encoder.json"
    merges_path = directory / "vocab.bpe"
    encoder_path.write_text(json.dumps(encoder, ensure_ascii=False), encoding="utf-8")
    # The trailing newline matters: the reference loader drops the last line of the file.
    merges_path.write_text(
        "\n".join([MERGES_HEADER] + [f"{a} {b}" for a, b in merges]) + "\n", encoding="utf-8"
    )
    return encoder_path, merges_path
