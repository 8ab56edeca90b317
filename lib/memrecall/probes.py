"""Turn texts into probes: the prompt, and the target token the model should predict after it.

The authors' convention (DESIGN.md, "Split"): the target is the first sub-token of the last
whitespace-separated word, the prompt is the text before that token. The boundary is found from
the tokenizer's character offsets, so byte-level BPE (the space belongs to the next token),
SentencePiece (``▁`` pieces) and WordPiece (``##`` continuations) are handled alike.

Some tokenizers give the space before a word a token of its own: Qwen2 and SmolLM2 before a
digit (``"catch 22"`` -> ``catch``, ``Ġ``, ``2``, ``2``), Gemma likewise (``▁``), GPT-2 before
some accented letters (a zero-width ``Ġ``). Such a whitespace-only token is not the target (it
says nothing about the word): the target is the first sub-token that carries a character of the
word (``2``), and the whitespace token belongs to the prompt, whose text then ends with the
space (``"catch "``). That string re-tokenizes to exactly the tokens the model read before the
target in the whole text, so the lens predicts at the right position (:func:`split_point`).
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .data import DataFormatError, unicode_problem, validate_texts
from .models import LM

__all__ = [
    "PROBE_COLUMNS",
    "SharedTargetWarning",
    "first_token_after",
    "make_probes",
    "multi_token_fraction",
    "split_point",
    "target_token_counts",
]

PROBE_COLUMNS = ["text", "prompt", "target", "target_token"]
_LAST_WORD = re.compile(r"\S+$")


def first_token_after(offsets: Sequence[tuple[int, int]], special_mask: Sequence[int] | None,
                      char: int) -> int:
    """Index of the first non-special token that ends after character ``char``.

    With ``char`` where the prompt's text ends, this is the first token past the prompt: the
    target's, or a token holding only the space before the word (a lone SentencePiece ``▁``
    or Qwen2 ``Ġ``, or a zero-width ``Ġ``: byte-level BPE with trimmed offsets gives a lone
    ``Ġ`` an empty span), which :func:`split_point` then gives to the prompt.

    Args:
        offsets: the tokenizer's ``(start, end)`` character offsets of one text.
        special_mask: 1 for special tokens (skipped), or None when there are none.
        char: the boundary, a character index into the text.

    Raises:
        IndexError: no token ends after ``char``.
    """
    special = special_mask if special_mask is not None else [0] * len(offsets)
    for index, ((start, end), is_special) in enumerate(zip(offsets, special)):
        if not is_special and (end > char or start == end >= char):
            return index
    raise IndexError(char)


def split_point(offsets: Sequence[tuple[int, int]], special_mask: Sequence[int] | None,
                text: str, word_start: int) -> tuple[int, int]:
    """The target token of a text and where the prompt text before it ends.

    The target is the first non-special token that carries a character of the word starting at
    ``word_start`` (a non-empty span ending after it). Tokens between the prompt's last
    character and the target hold only whitespace (a lone ``Ġ``/``▁``/space, or a zero-width
    ``Ġ`` of trimmed offsets); when there is one (:func:`first_token_after` the prompt's end
    finds it before the target), it belongs to the prompt and the prompt text keeps the space.

    Args:
        offsets: the tokenizer's ``(start, end)`` character offsets of ``text``.
        special_mask: 1 for special tokens (skipped), or None when there are none.
        text: the whole text (prompt, whitespace, then the word).
        word_start: index of the word's first character in ``text``.

    Returns:
        ``(index, prompt_stop)``: the target's token index, and the prompt's text is
        ``text[:prompt_stop]`` (ending with the space when a whitespace-only token precedes
        the target, else without it).

    Raises:
        IndexError: no token carries a character of the word.
    """
    special = special_mask if special_mask is not None else [0] * len(offsets)
    index = next((i for i, ((start, end), is_special) in enumerate(zip(offsets, special))
                  if not is_special and start < end and end > word_start), None)
    if index is None:
        raise IndexError(word_start)
    prompt_end = len(text[:word_start].rstrip())
    whitespace_token = first_token_after(offsets, special_mask, prompt_end) < index
    return index, word_start if whitespace_token else prompt_end


class SharedTargetWarning(UserWarning):
    """Targets whose first token is ``[UNK]``, bare whitespace or a lone byte: texts share it."""


def _warn_shared_targets(probes: pd.DataFrame, lm: LM) -> None:
    """Warn when targets start with ``[UNK]``, blank or a lone byte (emoji, CJK...).

    Unrelated words then share one target token (a lone byte: of a multi-byte character).
    """
    tokenizer = lm.tokenizer
    unk = tokenizer.unk_token_id
    bad = Counter()
    for token in probes["target_token"]:
        token = int(token)
        text = tokenizer.decode([token])
        if (unk is not None and token == unk and tokenizer.unk_token not in ("", None)
                and tokenizer.unk_token != tokenizer.bos_token) \
                or not text.strip() or "\ufffd" in text:
            bad[token] += 1
    if bad:
        shared = ", ".join(f"{tokenizer.convert_ids_to_tokens(token)!r} ({count} texts)"
                           for token, count in bad.most_common())
        warnings.warn(
            f"{lm.name}: {sum(bad.values())} of {len(probes)} texts have a target whose first "
            f"token is unknown, bare whitespace or a lone byte of a character, so unrelated "
            "texts share one target token: "
            f"{shared}. Their target rank measures that token, not the word.",
            SharedTargetWarning, stacklevel=3)


def _split(texts: list[str], boundaries: list[int], lm: LM) -> pd.DataFrame:
    if not texts:
        return pd.DataFrame({"text": pd.Series(dtype=object), "prompt": pd.Series(dtype=object),
                             "target": pd.Series(dtype=object),
                             "target_token": pd.Series(dtype=np.int64)})
    encodings = lm.tokenizer(texts, return_offsets_mapping=True, add_special_tokens=True,
                             return_special_tokens_mask=True)
    rows = []
    for row, (text, boundary) in enumerate(zip(texts, boundaries)):
        ids, offsets = encodings["input_ids"][row], encodings["offset_mapping"][row]
        try:
            index, prompt_stop = split_point(offsets, encodings["special_tokens_mask"][row],
                                             text, boundary)
        except IndexError:
            raise DataFormatError(
                f"row {row}: no token of {text!r} starts the target at character {boundary}"
            ) from None
        rows.append({
            "text": text,
            "prompt": text[:prompt_stop],
            "target": text[boundary:],
            "target_token": int(ids[index]),
        })
    probes = pd.DataFrame(rows, columns=PROBE_COLUMNS)
    _warn_shared_targets(probes, lm)
    return probes


def _collapse(text: str) -> str:
    """``text`` in Unicode NFC, stripped, every run of whitespace inside it made one space."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def make_probes(texts: Iterable[str] | pd.DataFrame, lm: LM) -> pd.DataFrame:
    """Split texts into prompt and target for ``lm``'s tokenizer.

    Texts are normalised first: to Unicode NFC (composed characters, so ``"café"`` typed as
    ``e`` plus a combining accent and as one ``é`` give the same tokens, hence the same probe),
    then stripped, every run of whitespace inside them (double spaces, tabs, newlines) made one
    space; ``text`` holds the normalised text (and a frame's prompts and targets likewise).
    The target token is the first sub-token that carries a character of the target; a token
    holding only the space before it (Qwen2 before a digit: ``"catch 22"`` -> ``catch``, ``Ġ``,
    ``2``, ``2``) belongs to the prompt, whose text then ends with that space (``"catch "``),
    so the model reads exactly the tokens that precede the target in the whole text
    (:func:`split_point`). Otherwise the prompt has no trailing space.

    Args:
        texts: plain texts (idioms, sentences): the target is the last word. Or a DataFrame with
            ``prompt`` and ``target`` columns (facts): taken as given (up to the whitespace
            rules above), the target token is the first sub-token of ``target`` after
            ``prompt + " "``.
        lm: the model whose tokenizer defines the sub-tokens.

    Returns:
        One row per input, same order: ``text, prompt, target, target_token`` (plus any other
        columns of an input DataFrame). The index is the input's (a Series' or a DataFrame's),
        so a column of the result can be assigned back to a filtered input frame; a plain list
        gets ``0..n-1``. No texts give an empty frame with these columns.

    Raises:
        DataFormatError: an empty or one-word text, a missing (None/NaN) or non-text value, a
            text holding a lone surrogate (not valid Unicode), or an empty prompt/target (names
            the row).

    Warns:
        SharedTargetWarning: targets whose first token is ``[UNK]``, bare whitespace or a lone
            byte (emoji, CJK with a small vocabulary...): says how many texts share such a
            token.
    """
    if isinstance(texts, pd.DataFrame) and {"prompt", "target"} <= set(texts.columns):
        frame = texts
        for column in ("prompt", "target"):
            for row, (label, value) in enumerate(frame[column].items()):
                if not isinstance(value, str):
                    raise DataFormatError(
                        f"row {row} (index {label!r}): {column} is {value!r}, expected a text"
                        + (" (a missing value)" if value is None or pd.isna(value) else ""))
                problem = unicode_problem(value)
                if problem:
                    raise DataFormatError(f"row {row} (index {label!r}): {column} {value!r} "
                                          f"{problem}")
        prompts = [_collapse(p) for p in frame["prompt"]]
        targets = [_collapse(t) for t in frame["target"]]
        for row, (prompt, target) in enumerate(zip(prompts, targets)):
            if not prompt or not target:
                raise DataFormatError(f"row {row}: empty {'prompt' if not prompt else 'target'}")
        full = [f"{p} {t}" for p, t in zip(prompts, targets)]
        probes = _split(full, [len(p) + 1 for p in prompts], lm)
        probes.index = frame.index
        extra = frame.drop(columns=[c for c in frame.columns if c in PROBE_COLUMNS])
        return pd.concat([probes, extra], axis=1)
    if isinstance(texts, pd.DataFrame):
        raise DataFormatError(
            "a DataFrame passed to make_probes needs `prompt` and `target` columns; "
            "for plain texts pass a list or Series (e.g. frame['text'])"
        )
    if isinstance(texts, str):
        raise TypeError("make_probes takes a list of texts, not a single string")
    index = texts.index if isinstance(texts, pd.Series) else None
    cleaned = [_collapse(text) for text in validate_texts(list(texts))]
    boundaries = [_LAST_WORD.search(text).start() for text in cleaned]
    probes = _split(cleaned, boundaries, lm)
    if index is not None:
        probes.index = index
    return probes


def target_token_counts(probes: pd.DataFrame, tokenizer: Any) -> np.ndarray:
    """How many sub-tokens each probe's target spans, in context (what greedy decoding must emit).

    Counts the tokens of ``prompt + " " + target`` from the target token to the end: the first
    token that carries a character of the target (:func:`split_point`, as in
    :func:`make_probes`; a whitespace-only token before it is the prompt's).

    Args:
        probes: :func:`make_probes` output (``prompt``, ``target``; uses ``text`` if present).
        tokenizer: a fast Hugging Face tokenizer.

    Returns:
        ``(n,)`` int counts, at least 1.
    """
    prompts = probes["prompt"].astype(str).tolist()
    if "text" in probes:
        texts = probes["text"].astype(str).tolist()
    else:
        texts = [f"{p.rstrip()} {t}"
                 for p, t in zip(prompts, probes["target"].astype(str), strict=True)]
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    counts = []
    for text, prompt, offsets in zip(texts, prompts, encoded["offset_mapping"], strict=True):
        prompt_end = len(prompt.rstrip())
        word_start = len(text) - len(text[prompt_end:].lstrip())
        try:
            counts.append(max(1, len(offsets) - split_point(offsets, None, text, word_start)[0]))
        except IndexError:
            counts.append(1)
    return np.asarray(counts, dtype=np.int64)


def _last_word_span(text: str) -> tuple[int, int]:
    stripped = text.rstrip()
    start = max(stripped.rfind(" "), stripped.rfind("\t"), stripped.rfind("\n")) + 1
    return start, len(stripped)


def multi_token_fraction(targets: Iterable[str], tokenizer: Any) -> float:
    """Fraction of texts whose last word is split into more than one sub-token.

    The last word is tokenized in context (the whole text, the tokenizer's offsets), so
    a leading space or a SentencePiece ``▁`` is counted as it really occurs.

    Args:
        targets: texts whose last whitespace-separated word is the target (or bare words).
        tokenizer: a fast Hugging Face tokenizer (offsets needed).

    Returns:
        A fraction in ``[0, 1]``.
    """
    texts = [str(t) for t in targets]
    if not texts:
        raise ValueError("no targets")
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    multi = 0
    for text, offsets in zip(texts, encoded["offset_mapping"], strict=True):
        start, end = _last_word_span(text)
        inside = [(s, e) for s, e in offsets if e > s and e > start and s < end]
        multi += len(inside) > 1
    return multi / len(texts)
