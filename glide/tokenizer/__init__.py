"""Text tokenizers: GLIDE's byte-level BPE (for the diffusion models) and CLIP's (for guidance)."""
from glide.tokenizer.bpe import Encoder, get_encoder, save_vocab, train_bpe
from glide.tokenizer.simple_tokenizer import SimpleTokenizer

__all__ = ["Encoder", "SimpleTokenizer", "get_encoder", "save_vocab", "train_bpe"]
