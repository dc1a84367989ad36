"""Tokenizers: exact agreement with the reference goldens, file formats, and BPE training."""
import gzip
import itertools
import json
import random
import shutil

import pytest

from glide.tokenizer import Encoder, SimpleTokenizer, get_encoder, save_vocab, train_bpe
from glide.tokenizer._byte_level import bytes_to_unicode

UNICODE_SAMPLES = [
    "",
    "a red cube on a blue table",
    "Mixed CASE, punctuation!? and   spaces\t\ttabs\nnewlines  ",
    "café crème brûlée, naïve façade; e\u0301 decomposed",
    "東京タワーの夜景 and 한국어 문장 and Ελληνικά and русский",
    "emoji 🐶🎩🌈 👍🏽 👨\u200d👩\u200d👧 zero\u200bwidth soft\xadhyphen",
    "control \x00\x01\x7f chars and <|endoftext|> literal",
    "numbers 3.14159 1,234 and symbols @#$%^&*()_+{}|:\"<>?",
]


@pytest.fixture(scope="session")
def tokenizer_goldens(reference_dir):
    return json.loads((reference_dir / "tokenizer.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def glide_encoder(vocab_dir):
    return get_encoder(cache_dir=vocab_dir)


@pytest.fixture(scope="session")
def clip_tokenizer(vocab_dir):
    return SimpleTokenizer(cache_dir=vocab_dir)


def _mismatches(prompts, compute):
    """Texts of the prompts whose recomputed fields differ from the golden ones, with the fields."""
    failures = []
    for prompt in prompts:
        actual = compute(prompt["text"])
        wrong = [field for field, value in actual.items() if value != prompt[field]]
        if wrong:
            failures.append((prompt["text"], wrong))
    return failures


def test_glide_tokenizer_matches_goldens(glide_encoder, tokenizer_goldens):
    meta = tokenizer_goldens["glide_tokenizer"]
    assert glide_encoder.n_vocab == meta["n_vocab"] == 50257
    assert glide_encoder.end_token == meta["end_token"] == 50256

    def compute(text):
        ids = glide_encoder.encode(text)
        padded, mask = glide_encoder.padded_tokens_and_mask(ids, 128)
        return {
            "glide_ids": ids,
            "glide_num_ids": len(ids),
            "glide_padded_tokens_128": padded,
            "glide_mask_128": mask,
            "glide_decoded": glide_encoder.decode(ids),
        }

    assert len(tokenizer_goldens["prompts"]) == 42
    assert _mismatches(tokenizer_goldens["prompts"], compute) == []


def test_clip_tokenizer_matches_goldens(clip_tokenizer, tokenizer_goldens):
    meta = tokenizer_goldens["clip_tokenizer"]
    assert len(clip_tokenizer.encoder) == meta["vocab_size"] == 49408
    assert clip_tokenizer.start_token == meta["start_token"] == 49406
    assert clip_tokenizer.end_token == meta["end_token"] == 49407

    def compute(text):
        ids = clip_tokenizer.encode(text)
        padded, length = clip_tokenizer.padded_tokens_and_len(ids, 77)
        return {
            "clip_ids": ids,
            "clip_num_ids": len(ids),
            "clip_padded_tokens_77": padded,
            "clip_len_77": length,
            "clip_decoded": clip_tokenizer.decode(ids),
        }

    assert _mismatches(tokenizer_goldens["prompts"], compute) == []


def test_padding_edge_cases(glide_encoder, clip_tokenizer):
    assert glide_encoder.padded_tokens_and_mask([], 3) == ([50256] * 3, [False] * 3)
    assert glide_encoder.padded_tokens_and_mask([1, 2, 3, 4], 3) == ([1, 2, 3], [True] * 3)
    assert clip_tokenizer.padded_tokens_and_len([], 4) == ([49406, 49407, 0, 0], 2)
    # Truncation keeps room for the end token.
    assert clip_tokenizer.padded_tokens_and_len([5, 6, 7, 8], 4) == ([49406, 5, 6, 49407], 4)


def test_encoder_from_plain_and_gzip_files(vocab_dir, tmp_path, glide_encoder):
    for name in ("encoder.json", "vocab.bpe"):
        with gzip.open(vocab_dir / f"{name}.gz", "rb") as src, open(tmp_path / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    plain = Encoder.from_files(tmp_path / "encoder.json", tmp_path / "vocab.bpe")
    assert plain.n_vocab == glide_encoder.n_vocab
    assert plain.bpe_ranks == glide_encoder.bpe_ranks
    for text in UNICODE_SAMPLES:
        assert plain.encode(text) == glide_encoder.encode(text)


def test_clip_tokenizer_explicit_bpe_path(vocab_dir, clip_tokenizer):
    explicit = SimpleTokenizer(bpe_path=vocab_dir / "bpe_simple_vocab_16e6.txt.gz")
    assert explicit.encode(UNICODE_SAMPLES[2]) == clip_tokenizer.encode(UNICODE_SAMPLES[2])


def _captions(count, seed=0):
    """Synthetic captions of a narrow domain, like the ones a small vocabulary is trained for."""
    rng = random.Random(seed)
    colors = ["red", "green", "blue", "yellow", "purple", "orange"]
    shapes = ["cube", "sphere", "cylinder", "cone", "pyramid"]
    places = ["on a table", "in a field", "under a tree", "next to a lamp", "on the floor"]
    combos = list(itertools.product(colors, shapes, places))
    return [
        f"A {c} {s} {p}." if rng.random() < 0.5 else f"a small {c} {s} {p}"
        for c, s, p in rng.choices(combos, k=count)
    ]


@pytest.fixture(scope="module")
def trained_vocab():
    return train_bpe(_captions(300), num_merges=120)


def test_train_bpe_vocabulary_layout(trained_vocab):
    encoder, merges = trained_vocab
    assert 0 < len(merges) <= 120
    # The 256 byte symbols come first, in the official order, so any input stays encodable.
    assert list(encoder)[:256] == list(bytes_to_unicode().values())
    assert list(encoder.values()) == list(range(len(encoder)))
    assert max(encoder, key=encoder.get) == "<|endoftext|>"
    assert all(a + b in encoder for a, b in merges)
    assert train_bpe(_captions(300), num_merges=120) == trained_vocab, "training must be deterministic"


def test_trained_vocab_round_trips_and_compresses(trained_vocab, tmp_path):
    encoder_path, merges_path = save_vocab(*trained_vocab, tmp_path)
    tok = Encoder.from_files(encoder_path, merges_path)
    assert tok.n_vocab == len(trained_vocab[0])
    assert tok.end_token == tok.encoder["<|endoftext|>"]
    for text in UNICODE_SAMPLES + _captions(20, seed=1):
        ids = tok.encode(text)
        assert all(0 <= i < tok.end_token for i in ids)
        # encode() lowercases, as the reference does.
        assert tok.decode(ids) == text.lower()
    caption = _captions(1, seed=2)[0]
    assert len(tok.encode(caption)) < len(caption.encode("utf-8")) / 3


def test_saved_merges_parse_like_the_reference(trained_vocab, tmp_path):
    encoder, merges = trained_vocab
    encoder_path, merges_path = save_vocab(encoder, merges, tmp_path)
    assert json.loads(encoder_path.read_text(encoding="utf-8")) == encoder
    # The reference loader: drop the "#version" header and the empty string after the final newline.
    data = merges_path.read_text(encoding="utf-8")
    assert data.startswith("#version: 0.2\n")
    assert [tuple(line.split()) for line in data.split("\n")[1:-1]] == merges
