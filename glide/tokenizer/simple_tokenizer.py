"""CLIP's byte-level BPE tokenizer, used by GLIDE's noised CLIP text encoder for guidance.

Matches the reference ``glide_text2im.tokenizer.simple_tokenizer`` (itself a copy of
openai/CLIP's) exactly. Text is cleaned with ``ftfy.fix_text``, so ids can depend on the ftfy
version; the goldens were made with ftfy 6.3.1.
"""
import gzip
import html
from pathlib import Path
from typing import Iterable, List, Optional, Tuple, Union

import regex as re

from glide.download import resolve_vocab_file
from glide.tokenizer._byte_level import apply_merges, bytes_to_unicode

PathLike = Union[str, Path]

START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"

# CLIP's vocabulary is 49408 entries: 256 byte symbols, their 256 end-of-word variants, the first
# 48894 merges of the file (which holds many more) and the two special tokens.
NUM_MERGES = 49152 - 256 - 2

# Special tokens, contractions, letter runs, single digits and punctuation runs. Unlike the
# GLIDE tokenizer, whitespace is dropped and word ends are marked with "</w>" instead.
PRETOKENIZE_PATTERN = re.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    re.IGNORECASE,
)


def basic_clean(text: str) -> str:
    """Repair mojibake and other unicode damage, and undo up to two levels of HTML escaping."""
    # Imported here, not at the top: only this tokenizer needs ftfy (and ftfy needs wcwidth), so
    # `import glide.tokenizer` and everything that uses the GLIDE BPE alone work without them.
    import ftfy

    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return text.strip()


def whitespace_clean(text: str) -> str:
    """Collapse every run of whitespace into a single space."""
    return re.sub(r"\s+", " ", text).strip()


class SimpleTokenizer:
    """CLIP tokenizer: lowercased, cleaned text to ids in a 49408-entry vocabulary."""

    def __init__(self, bpe_path: Optional[PathLike] = None, cache_dir: Optional[PathLike] = None):
        """
        :param bpe_path: a ``bpe_simple_vocab_16e6.txt.gz`` file; by default the official one is
            taken from (or downloaded into) the cache directory.
        :param cache_dir: the cache directory; see ``glide.download.default_cache_dir``.
        """
        if bpe_path is None:
            bpe_path = resolve_vocab_file("bpe_simple_vocab_16e6.txt.gz", cache_dir=cache_dir)
        with gzip.open(bpe_path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        # The first line is a "#version" header.
        merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]

        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        vocab = list(self.byte_encoder.values())
        vocab = vocab + [v + "</w>" for v in vocab]
        vocab.extend("".join(merge) for merge in merges)
        vocab.extend([START_OF_TEXT, END_OF_TEXT])
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.decoder = {v: k for k, v in self.encoder.items()}
        self.bpe_ranks = {merge: rank for rank, merge in enumerate(merges)}
        # The special tokens are matched whole by the pattern and must not get "</w>".
        self.cache = {START_OF_TEXT: START_OF_TEXT, END_OF_TEXT: END_OF_TEXT}

    @property
    def start_token(self) -> int:
        return self.encoder[START_OF_TEXT]

    @property
    def end_token(self) -> int:
        return self.encoder[END_OF_TEXT]

    def padded_tokens_and_len(self, tokens: List[int], text_ctx: int) -> Tuple[List[int], int]:
        """Wrap in start/end tokens (truncating so they fit in ``text_ctx``) and pad with 0.

        :return: (padded tokens, number of tokens before the padding, start and end included).
        """
        tokens = [self.start_token] + tokens[: text_ctx - 2] + [self.end_token]
        text_len = len(tokens)
        padded_tokens = tokens + [0] * (text_ctx - text_len)
        return padded_tokens, text_len

    def bpe(self, token: str) -> str:
        """Split one pre-token (in the byte alphabet) into space-separated vocabulary entries."""
        if token not in self.cache:
            # The last symbol carries the end-of-word marker, so merges can tell word ends apart.
            word = tuple(token[:-1]) + (token[-1] + "</w>",)
            self.cache[token] = " ".join(apply_merges(word, self.bpe_ranks))
        return self.cache[token]

    def encode(self, text: str) -> List[int]:
        """Clean, lowercase and tokenize ``text`` (no start or end token is added)."""
        bpe_tokens = []
        text = whitespace_clean(basic_clean(text)).lower()
        for token in PRETOKENIZE_PATTERN.findall(text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            bpe_tokens.extend(self.encoder[piece] for piece in self.bpe(token).split(" "))
        return bpe_tokens

    def decode(self, tokens: Iterable[int]) -> str:
        """Turn ids back into text; word ends become spaces, so words of a run are separated."""
        text = "".join(self.decoder[token] for token in tokens)
        return (
            bytearray(self.byte_decoder[c] for c in text)
            .decode("utf-8", errors="replace")
            .replace("</w>", " ")
        )
