"""WikiText-2 control sentences: detokenize, split into sentences, filter, sample."""

from __future__ import annotations

import os
import random
import re
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from .sources import DataNotFoundError, file_key, read_utf8, resolve_data_file

__all__ = [
    "HUB_TIMEOUT_S",
    "WIKITEXT_HF_CONFIG",
    "WIKITEXT_HF_DATASET",
    "WIKITEXT_HF_REVISION",
    "check_hub_answers",
    "detokenize",
    "load_wiki",
    "split_sentences",
    "wiki_sentences",
]

# The HF hub copy of the same (tokenized) WikiText-2; used only when no file is available.
WIKITEXT_HF_DATASET = "Salesforce/wikitext"
WIKITEXT_HF_CONFIG = "wikitext-2-v1"
# Commit of Salesforce/wikitext (parquet layout, Jan 2024) that many public projects pin;
# not verifiable offline here: check it against the hub's history before relying on it.
WIKITEXT_HF_REVISION = "b08601e04326c79dfdd32d625aee71d232d685c3"

# How long the hub may take to answer before the `datasets` fallback is given up (the client's
# own retries could otherwise wait minutes on a network that accepts but never answers).
HUB_TIMEOUT_S = 5.0

_WIKI_KEYS = {"test": "wikitext2_test", "valid": "wikitext2_valid"}
_HF_SPLITS = {"test": "test", "valid": "validation"}


_NUM_SEP = re.compile(r" @([-,.])@ ")
# "was n't" and "wasn 't" both occur; "Chang 'an" is a name written "Chang'an".
_CONTRACTION = re.compile(r"(?<=\w) (n't|'t|'s|'re|'ve|'ll|'d|'m|'an)(?=\W|$)", re.IGNORECASE)
_PLURAL_POSSESSIVE = re.compile(r"(?<=\ws) ' (?=\w)")
_SPACE_BEFORE = re.compile(r" +([,.;:!?%)\]}])")
_SPACE_AFTER = re.compile(r"([(\[{]) +")
_QUOTED = re.compile(r'" ([^"]*?) "')
_DECADE = re.compile(r"(?:(?<=\s)|^)' (?=\d0s\b|\d\d\b)")  # "' 90s" -> "'90s"
_SQUOTED = re.compile(r"(?:(?<=\s)|^)' ((?:[^'\"]|(?<=\w)'(?=\w))*?) '(?=[\s,.;:!?)\]]|$)")
_LONE_SQUOTE = re.compile(r"(?:^|\s)'(?:\s|$)")
_CURRENCY = re.compile(r"([$£€]) (?=\d)")
_NUM_RANGE = re.compile(r"(?<=\d) ([–—]) (?=\d)")  # "1999 – 2000" -> "1999–2000"


def detokenize(line: str) -> str:
    """Undo WikiText's tokenization of one line (``" @-@ "`` -> ``"-"``, ``" , "`` -> ``", "``...).

    Args:
        line: A tokenized WikiText line (or sentence).

    Returns:
        The text with normal English spacing.

    """
    s = " ".join(line.split())
    s = _NUM_SEP.sub(r"\1", s)
    s = _CONTRACTION.sub(r"\1", s)
    s = _DECADE.sub("'", s)
    s = _PLURAL_POSSESSIVE.sub("' ", s)
    s = _QUOTED.sub(r'"\1"', s)
    s = _SQUOTED.sub(r"'\1'", s)
    s = _SPACE_BEFORE.sub(r"\1", s)
    s = _SPACE_AFTER.sub(r"\1", s)
    s = _CURRENCY.sub(r"\1", s)
    s = _NUM_RANGE.sub(r"\1", s)
    return s


_BOUNDARY = re.compile(r"[.!?][\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr st jr sr lt gen col capt sgt maj rev prof no vs mt ft co inc ltd "
    "jan feb mar apr jun jul aug sep sept oct nov dec fig vol ed approx est".split()
)
_INITIALS = re.compile(r"(?:[A-Za-z]\.)+")  # "F.", "U.S.", "U.S.A."


def split_sentences(paragraph: str) -> list[str]:
    """Split a detokenized paragraph into sentences.

    A boundary is ``.``, ``!`` or ``?`` (plus closing quotes/brackets), whitespace, then a
    capital or digit; no split after initials (``F.``, ``U.S.``) or common abbreviations
    (``Mr.``, ``St.``).

    Args:
        paragraph: Detokenized text.

    Returns:
        The sentences, stripped.

    """
    out: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(paragraph):
        if paragraph[m.start()] == ".":
            words = paragraph[start : m.start() + 1].split()
            last = words[-1].lstrip("\"'([") if words else ""
            if _INITIALS.fullmatch(last) or last[:-1].lower() in _ABBREVIATIONS:
                continue
        out.append(paragraph[start : m.end()].strip())
        start = m.end()
    tail = paragraph[start:].strip()
    if tail:
        out.append(tail)
    return out


_TRAILING = re.compile(r"[\s.!?,;:\"')\]}]+$")
_WORD_END = re.compile(r"\w(?:.*\w)?")


def _balanced(s: str) -> bool:
    return (
        s.count('"') % 2 == 0
        and s.count("(") == s.count(")")
        and s.count("[") == s.count("]")
        and s.count("{") == s.count("}")
    )


def _clean_sentence(sentence: str, min_words: int, max_words: int) -> str | None:
    if "<unk>" in sentence or _LONE_SQUOTE.search(sentence):
        return None
    s = _TRAILING.sub("", sentence)
    words = s.split()
    if not (min_words <= len(words) <= max_words):
        return None
    if not _WORD_END.fullmatch(words[-1]) or not _balanced(s):
        return None
    return s


def wiki_sentences(lines: Iterable[str], min_words: int = 5, max_words: int = 25) -> list[tuple]:
    """Turn tokenized WikiText lines into clean, unique sentences.

    Drops blank lines and headings, detokenizes, splits into sentences, drops sentences with
    ``<unk>``, strips the final punctuation (and closing quotes/brackets), keeps sentences of
    ``min_words``..``max_words`` whitespace words whose last word starts and ends with a letter
    or digit and whose quotes/brackets are balanced, and drops repeats.

    Args:
        lines: The lines of a split (one paragraph each), e.g. the file's lines or HF rows.
        min_words: Fewest words kept.
        max_words: Most words kept.

    Returns:
        ``(sentence, line_index)`` pairs in order of first appearance.

    """
    seen: set[str] = set()
    out: list[tuple[str, int]] = []
    for idx, line in enumerate(lines):
        text = line.strip()
        if not text or (text.startswith("=") and text.endswith("=")):
            continue
        for sent in split_sentences(detokenize(text)):
            s = _clean_sentence(sent, min_words, max_words)
            if s is not None and s not in seen:
                seen.add(s)
                out.append((s, idx))
    return out


_WIKI_CACHE: dict[Any, tuple[tuple[str, int], ...]] = {}


def _wiki_from_file(split: str, path: str | Path | None) -> tuple[tuple[str, int], ...]:
    key = _WIKI_KEYS[split]
    file = resolve_data_file(key, path)
    ckey = file_key(file, "sentences")
    if ckey not in _WIKI_CACHE:
        lines = read_utf8(file).split("\n")
        _WIKI_CACHE[ckey] = tuple(wiki_sentences(lines))
    return _WIKI_CACHE[ckey]


def _hub_offline() -> bool:
    return any(os.environ.get(name, "").lower() in {"1", "true", "yes"}
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def check_hub_answers(timeout: float = HUB_TIMEOUT_S) -> None:
    """Fail in ``timeout`` seconds when the Hugging Face hub does not answer an HTTP request.

    Asks the endpoint the hub client uses (``$HF_ENDPOINT``) about the pinned WikiText
    revision; any HTTP answer, even an error status, counts. Skipped in offline mode
    (``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``), where ``datasets`` reads its cache.

    Raises:
        DataNotFoundError: no answer in time (a network that accepts connections but never
            replies), or no connection at all.
    """
    if _hub_offline():
        return
    from huggingface_hub import constants

    endpoint = constants.ENDPOINT.rstrip("/")
    url = f"{endpoint}/api/datasets/{WIKITEXT_HF_DATASET}/revision/{WIKITEXT_HF_REVISION}"
    try:
        urllib.request.urlopen(url, timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered
    except (OSError, ValueError) as err:
        raise DataNotFoundError(
            f"the Hugging Face hub at {endpoint} did not answer within {timeout:g} s "
            f"({type(err).__name__}: {err}); set HF_DATASETS_OFFLINE=1 to use a copy already "
            "in the datasets cache"
        ) from None


def _wiki_from_hf(split: str) -> tuple[tuple[str, int], ...]:
    ckey = ("hf", WIKITEXT_HF_DATASET, WIKITEXT_HF_CONFIG, WIKITEXT_HF_REVISION, split)
    if ckey not in _WIKI_CACHE:
        check_hub_answers()
        import datasets  # heavy, and only needed here

        ds = datasets.load_dataset(
            WIKITEXT_HF_DATASET,
            WIKITEXT_HF_CONFIG,
            split=_HF_SPLITS[split],
            revision=WIKITEXT_HF_REVISION,
        )
        _WIKI_CACHE[ckey] = tuple(wiki_sentences(ds["text"]))
    return _WIKI_CACHE[ckey]


def load_wiki(
    n: int = 1000,
    seed: int = 0,
    split: str = "test",
    path: str | Path | None = None,
    source: str = "auto",
) -> pd.DataFrame:
    """Sample ``n`` real Wikipedia sentences from WikiText-2 (the control texts).

    Args:
        n: How many sentences.
        seed: Sampling seed; the same ``(n, seed, split)`` gives the same rows in the same order.
        split: ``"test"`` or ``"valid"``.
        path: Optional explicit split file (``test.txt``/``valid.txt``) or data folder.
        source: ``"file"`` (the resolution order of :func:`resolve_data_file`), ``"hf"`` (the
            ``datasets`` hub copy at :data:`WIKITEXT_HF_REVISION`) or ``"auto"`` (file, then hf
            if no file can be found). A hub that does not answer within
            :data:`HUB_TIMEOUT_S` seconds is given up (:func:`check_hub_answers`).

    Returns:
        A new DataFrame with columns ``text`` (no final punctuation; the last word is the
        target) and ``paragraph`` (0-based line index of the sentence's paragraph in the split).

    Raises:
        ValueError: Bad ``split``/``source``/``n``, or fewer than ``n`` sentences available.
        DataNotFoundError: No file found (and, for ``"auto"``, the hub failed too).

    """
    if split not in _WIKI_KEYS:
        raise ValueError(f"split must be one of {sorted(_WIKI_KEYS)}, got {split!r}")
    if source not in ("auto", "file", "hf"):
        raise ValueError(f"source must be 'auto', 'file' or 'hf', got {source!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if source == "hf":
        pool = _wiki_from_hf(split)
    elif source == "file":
        pool = _wiki_from_file(split, path)
    else:
        try:
            pool = _wiki_from_file(split, path)
        except DataNotFoundError as file_err:
            try:
                pool = _wiki_from_hf(split)
            except Exception as hf_err:  # both reasons go in one error
                raise DataNotFoundError(
                    f"{file_err}\nThe fallback to the hub copy ({WIKITEXT_HF_DATASET}, "
                    f"{WIKITEXT_HF_CONFIG}) failed too: {type(hf_err).__name__}: {hf_err}"
                ) from hf_err
    if n > len(pool):
        raise ValueError(
            f"asked for n={n} WikiText-2 {split} sentences but only {len(pool)} pass the filters"
        )
    ordered = sorted(pool)
    chosen = random.Random(seed).sample(ordered, n)
    return pd.DataFrame({"text": [s for s, _ in chosen], "paragraph": [int(i) for _, i in chosen]})
