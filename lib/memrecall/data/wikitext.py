"""The Wikipedia control: WikiText texts, detokenized, split into sentences, sampled.

Two controls:

* ``length-matched`` (the default, the paper's): "Wikipedia prompts of the same length
  distribution as in IdioMem". For each IdioMem word count, that many texts of exactly that many
  words, each a sentence start followed by its first words, the last being a real word (letters,
  not punctuation or a number): the word-count histogram equals IdioMem's, scaled to ``n``.
* ``sentences``: whole clean sentences of 5-25 words (longer than the idioms).

Offline the source is the pinned WikiText-2 files; the hub fallback is WikiText-103 through
``datasets``. The two share their validation and test articles (WikiText-103 differs in its
training set and in having fewer ``<unk>`` tokens), so the test split we sample is the paper's
corpus up to those ``<unk>`` tokens, not a sample of all of WikiText-103.
"""

from __future__ import annotations

import os
import random
import re
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .idiomem import load_idiomem
from .records import read_utf8
from .sources import DataNotFoundError, file_key, resolve_data_file

__all__ = [
    "HUB_TIMEOUT_S",
    "WIKI_CONTROLS",
    "WIKITEXT_HF_CONFIG",
    "WIKITEXT_HF_DATASET",
    "WIKITEXT_HF_REVISION",
    "check_hub_answers",
    "detokenize",
    "length_matched",
    "load_wiki",
    "scaled_counts",
    "sentence_prefix",
    "sentence_starts",
    "split_sentences",
    "wiki_sentences",
]

WIKI_CONTROLS = ("length-matched", "sentences")

# The HF hub copy (tokenized WikiText-103: the same test and validation articles as WikiText-2);
# used only when no file is available.
WIKITEXT_HF_DATASET = "Salesforce/wikitext"
WIKITEXT_HF_CONFIG = "wikitext-103-v1"
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
    cleaned = ((_clean_sentence(sent, min_words, max_words), idx)
               for sent, idx in _sentences_by_line(lines))
    return _first_seen((sent, idx) for sent, idx in cleaned if sent is not None)


def _sentences_by_line(lines: Iterable[str]) -> Iterator[tuple[str, int]]:
    """Each sentence of the non-blank, non-heading lines, detokenized, with its line index."""
    for idx, line in enumerate(lines):
        text = line.strip()
        if text and not (text.startswith("=") and text.endswith("=")):
            for sent in split_sentences(detokenize(text)):
                yield sent, idx


def _first_seen(pairs: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """The pairs whose sentence has not come before, in order."""
    seen: set[str] = set()
    out: list[tuple[str, int]] = []
    for sent, idx in pairs:
        if sent not in seen:
            seen.add(sent)
            out.append((sent, idx))
    return out


# --------------------------------------------------------------------------- the paper's control

# A real word: letters only, with inner apostrophes or hyphens ("don't", "well-known").
_REAL_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


def sentence_starts(lines: Iterable[str]) -> list[tuple[str, int]]:
    """Every distinct sentence of tokenized WikiText lines, detokenized, with its line index.

    Unlike :func:`wiki_sentences` nothing is filtered by length or cleaned: these are the
    starts from which :func:`length_matched` cuts its texts.
    """
    return _first_seen(_sentences_by_line(lines))


def sentence_prefix(sentence: str, n_words: int) -> str | None:
    """The first ``n_words`` words of ``sentence`` if the last of them is a real word.

    Returns:
        The prefix (words joined by single spaces), or None when the sentence is shorter, the
        ``n_words``-th word is not a real word (punctuation, a number, a word with punctuation
        attached) or the prefix holds ``<unk>`` or a lone quote.
    """
    words = sentence.split()
    if len(words) < n_words or not _REAL_WORD.fullmatch(words[n_words - 1]):
        return None
    prefix = " ".join(words[:n_words])
    if "<unk>" in prefix or _LONE_SQUOTE.search(prefix):
        return None
    return prefix


def scaled_counts(lengths: Iterable[int], n: int) -> dict[int, int]:
    """A histogram of ``lengths`` scaled to ``n`` items (largest remainders: it sums to ``n``).

    With ``n == len(lengths)`` it is the histogram itself.
    """
    hist = Counter(int(x) for x in lengths)
    total = sum(hist.values())
    if total == 0:
        raise ValueError("no lengths to match")
    exact = {k: v * n / total for k, v in hist.items()}
    counts = {k: int(x) for k, x in exact.items()}
    short = n - sum(counts.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - counts[k]), k))[:short]:
        counts[k] += 1
    return {k: counts[k] for k in sorted(counts) if counts[k]}


def length_matched(starts: Sequence[tuple[str, int]], counts: Mapping[int, int],
                   seed: int = 0) -> pd.DataFrame:
    """Draw, for each word count, that many texts of exactly that many words.

    Each text is a sentence start followed by its first words (:func:`sentence_prefix`); no
    sentence gives two texts. Sentences are visited in one seeded random order, longest word
    counts first (they have the fewest candidates); the rows come out in a seeded random order.

    Args:
        starts: :func:`sentence_starts` output.
        counts: word count -> how many texts (e.g. :func:`scaled_counts`).
        seed: the seed of both random orders.

    Returns:
        ``text, paragraph, n_words``.

    Raises:
        ValueError: not enough sentences for some word count.
    """
    rng = random.Random(seed)
    order = list(range(len(starts)))
    rng.shuffle(order)
    used: set[int] = set()
    rows: list[tuple[str, int, int]] = []
    for n_words in sorted(counts, reverse=True):
        need = counts[n_words]
        for i in order:
            if need == 0:
                break
            text = None if i in used else sentence_prefix(starts[i][0], n_words)
            if text is not None:
                used.add(i)
                rows.append((text, starts[i][1], n_words))
                need -= 1
        if need:
            raise ValueError(f"only {counts[n_words] - need} sentences give a {n_words}-word "
                             f"text ending in a word, {counts[n_words]} needed")
    rng.shuffle(rows)
    return pd.DataFrame(rows, columns=["text", "paragraph", "n_words"])


# --------------------------------------------------------------------------- sources

_WIKI_CACHE: dict[Any, tuple[tuple[str, int], ...]] = {}
_POOLS = {"sentences": wiki_sentences, "length-matched": sentence_starts}


def _wiki_from_file(split: str, path: str | Path | None,
                    control: str) -> tuple[tuple[str, int], ...]:
    key = _WIKI_KEYS[split]
    file = resolve_data_file(key, path)
    ckey = file_key(file, control)
    if ckey not in _WIKI_CACHE:
        lines = read_utf8(file).split("\n")
        _WIKI_CACHE[ckey] = tuple(_POOLS[control](lines))
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


def _wiki_from_hf(split: str, control: str) -> tuple[tuple[str, int], ...]:
    ckey = ("hf", WIKITEXT_HF_DATASET, WIKITEXT_HF_CONFIG, WIKITEXT_HF_REVISION, split, control)
    if ckey not in _WIKI_CACHE:
        check_hub_answers()
        import datasets  # heavy, and only needed here

        ds = datasets.load_dataset(
            WIKITEXT_HF_DATASET,
            WIKITEXT_HF_CONFIG,
            split=_HF_SPLITS[split],
            revision=WIKITEXT_HF_REVISION,
        )
        _WIKI_CACHE[ckey] = tuple(_POOLS[control](ds["text"]))
    return _WIKI_CACHE[ckey]


def _pool(split: str, path: str | Path | None, source: str,
          control: str) -> tuple[tuple[str, int], ...]:
    if source == "hf":
        return _wiki_from_hf(split, control)
    if source == "file":
        return _wiki_from_file(split, path, control)
    try:
        return _wiki_from_file(split, path, control)
    except DataNotFoundError as file_err:
        try:
            return _wiki_from_hf(split, control)
        except Exception as hf_err:  # both reasons go in one error
            raise DataNotFoundError(
                f"{file_err}\nThe fallback to the hub copy ({WIKITEXT_HF_DATASET}, "
                f"{WIKITEXT_HF_CONFIG}) failed too: {type(hf_err).__name__}: {hf_err}"
            ) from hf_err


def load_wiki(
    n: int = 1000,
    seed: int = 0,
    split: str = "test",
    path: str | Path | None = None,
    source: str = "auto",
    *,
    control: str = "length-matched",
    lengths: Iterable[int] | None = None,
) -> pd.DataFrame:
    """Sample ``n`` Wikipedia texts (the control group), by default the paper's control.

    Args:
        n: How many texts.
        seed: Sampling seed; the same arguments give the same rows in the same order.
        split: ``"test"`` or ``"valid"``.
        path: Optional explicit split file (``test.txt``/``valid.txt``) or data folder (then
            IdioMem's word counts are read from there too).
        source: ``"file"`` (the resolution order of :func:`resolve_data_file`: the WikiText-2
            files), ``"hf"`` (the ``datasets`` hub copy of WikiText-103 at
            :data:`WIKITEXT_HF_REVISION`) or ``"auto"`` (file, then hf if no file is found). A
            hub that does not answer within :data:`HUB_TIMEOUT_S` seconds is given up
            (:func:`check_hub_answers`).
        control: ``"length-matched"`` (texts whose word counts follow ``lengths``, see the
            module docstring) or ``"sentences"`` (whole clean sentences of 5-25 words).
        lengths: word counts whose histogram the length-matched texts follow; default IdioMem's.

    Returns:
        A new DataFrame with columns ``text`` (no final punctuation; the last word is the
        target), ``paragraph`` (0-based line index of its paragraph in the split) and
        ``n_words``.

    Raises:
        ValueError: Bad ``split``/``source``/``control``/``n``, or too few texts available.
        DataNotFoundError: No file found (and, for ``"auto"``, the hub failed too).

    """
    if split not in _WIKI_KEYS:
        raise ValueError(f"split must be one of {sorted(_WIKI_KEYS)}, got {split!r}")
    if source not in ("auto", "file", "hf"):
        raise ValueError(f"source must be 'auto', 'file' or 'hf', got {source!r}")
    if control not in WIKI_CONTROLS:
        raise ValueError(f"control must be one of {WIKI_CONTROLS}, got {control!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    pool = _pool(split, path, source, control)
    if control == "length-matched":
        if lengths is None:
            folder = path if path is not None and Path(path).is_dir() else None
            lengths = load_idiomem(folder)["idiom"].str.split().str.len()
        return length_matched(sorted(pool), scaled_counts(lengths, n), seed)
    if n > len(pool):
        raise ValueError(
            f"asked for n={n} WikiText {split} sentences but only {len(pool)} pass the filters"
        )
    chosen = random.Random(seed).sample(sorted(pool), n)
    texts = [s for s, _ in chosen]
    return pd.DataFrame({"text": texts, "paragraph": [int(i) for _, i in chosen],
                         "n_words": [len(t.split()) for t in texts]})
