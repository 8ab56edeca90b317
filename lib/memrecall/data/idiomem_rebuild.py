"""Rebuild the EF / EPIC / LIdioms part of IdioMem from the authors' raw idiom lists.

IdioMem (``idiomem.jsonl``) merges four sources; three of the raw lists ship with the release
(``DATA_SOURCES`` keys ``ef_idioms``, ``epic_idioms``, ``lidioms``; MAGPIE does not). This module
re-implements the construction rules described in PAPER.md, section 2, from that description:

* clean: lowercase, drop tabs/newlines, strip trailing ``.``, ``?``, ``!`` and spaces, and
  surrounding double quotes;
* keep idioms of **more than 3 words** (whitespace-separated);
* drop an idiom whose **prompt** (every token but the last) is all stopwords (in effect not
  for EF, see :func:`build_idiom_set`);
* LIdioms only: keep fewer than 9 words, drop entries that start with ``"to "`` (bar a short
  whitelist, :data:`LIDIOMS_TO_WHITELIST`) and definition-like junk;
* deduplicate by string; when two sources give the same idiom the later one in the order
  EF, EPIC, LIdioms names it (the authors merged MAGPIE, EF, EPIC, LIdioms in that order and
  kept the last record per string).

Two places differ from the authors' script on purpose, so the rebuilt set will not match the
release exactly (notebook 01 measures by how much):

* **Stopwords**: the authors tokenized with spaCy's ``en_core_web_sm`` and used ``token.is_stop``.
  We do not depend on spaCy: :data:`STOP_WORDS` is a copy of spaCy's English stop-word list
  (``spacy/lang/en/stop_words.py``, spaCy v3, MIT License, (c) 2016-2021 ExplosionAI GmbH,
  (c) 2016 spaCy GmbH, (c) 2015 Matthew Honnibal) and :func:`tokens` is a small approximation of
  spaCy's English tokenizer (punctuation and clitics such as ``'s`` and ``n't`` split off).
* **LIdioms junk**: the Turtle file holds every entry's label, written form *and* definition.
  The authors read every literal and removed definitions that slipped through with a hand-made
  list. We read only the idiom strings (``rdfs:label`` and ``ontolex:writtenRep``), which removes
  definitions by construction, and drop strings containing a URL, a zero-width space, ``;`` or
  ``:``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from .records import read_utf8

__all__ = [
    "LIDIOMS_TO_WHITELIST",
    "SOURCE_ORDER",
    "STOP_WORDS",
    "build_idiom_set",
    "clean_idiom",
    "compare_with_release",
    "release_differences",
    "is_prompt_all_stopwords",
    "parse_ef",
    "parse_epic",
    "parse_lidioms",
    "tokens",
]

# spaCy v3 English stop words (spacy/lang/en/stop_words.py), MIT License, (c) ExplosionAI GmbH.
_SPACY_STOP_WORDS = """
a about above across after afterwards again against all almost alone along
already also although always am among amongst amount an and another any anyhow
anyone anything anyway anywhere are around as at
back be became because become becomes becoming been before beforehand behind
being below beside besides between beyond both bottom but by
call can cannot ca could
did do does doing done down due during
each eight either eleven else elsewhere empty enough even ever every
everyone everything everywhere except
few fifteen fifty first five for former formerly forty four from front full
further
get give go
had has have he hence her here hereafter hereby herein hereupon hers herself
him himself his how however hundred
i if in indeed into is it its itself
keep
last latter latterly least less
just
made make many may me meanwhile might mine more moreover most mostly move much
must my myself
name namely neither never nevertheless next nine no nobody none noone nor not
nothing now nowhere
of off often on once one only onto or other others otherwise our ours ourselves
out over own
part per perhaps please put
quite
rather re really regarding
same say see seem seemed seeming seems serious several she should show side
since six sixty so some somehow someone something sometime sometimes somewhere
still such
take ten than that the their them themselves then thence there thereafter
thereby therefore therein thereupon these they third this those though three
through throughout thru thus to together too top toward towards twelve twenty
two
under until up unless upon us used using
various very very via was we well were what whatever when whence whenever where
whereafter whereas whereby wherein whereupon wherever whether which while
whither who whoever whole whom whose why will with within without would
yet you your yours yourself yourselves
"""
_CONTRACTIONS = ("n't", "'d", "'ll", "'m", "'re", "'s", "'ve")

STOP_WORDS: frozenset[str] = frozenset(
    _SPACY_STOP_WORDS.split()
    + [c.replace("'", apostrophe) for c in _CONTRACTIONS for apostrophe in "'\u2018\u2019"]
)
"""spaCy's English stop words (lowercase), including clitics in all three apostrophe forms."""

LIDIOMS_TO_WHITELIST: frozenset[str] = frozenset({
    "to be green with envy", "to rub salt in the wound", "to be at the end of one's rope",
    "to place the cherry on top", "to bite the dust", "to have your cake and eat it, too",
    "to paint the town red", "to not be made of money",
})
"""LIdioms entries kept although they start with "to " (the authors' whitelist, per the paper)."""

SOURCE_ORDER = ("ep_by_itself", "ep_as_part_of_a_sentence", "EPIC", "LIdiom")
"""Source labels as IdioMem spells them (EF's two usage types, then EPIC, then LIdioms)."""

_TRAILING = ".?! "
_JUNK_SUBSTRINGS = ("http", "\u200b", ";", ":")
_CLITIC = re.compile(r"^(.+?)(n't|n\u2019t|['\u2019](?:s|d|ll|m|re|ve))$", re.IGNORECASE)
_EDGE_PUNCT = re.compile(r"^([\"'(\[{\u2018\u201c]*)(.*?)([\"'.,;:!?)\]}\u2019\u201d]*)$")


def clean_idiom(text: str) -> str:
    """Normalise a raw idiom: lowercase, no tabs/newlines, no trailing ``.?!``/space, no quotes.

    Args:
        text: one raw entry.

    Returns:
        The cleaned idiom (possibly empty).

    """
    idiom = text.lower()
    while idiom and idiom.endswith(tuple(_TRAILING)):
        idiom = idiom[:-1]
    idiom = idiom.replace("\n", "").replace("\t", "")
    return idiom.strip('"')


def tokens(text: str) -> list[str]:
    """Split like spaCy's English tokenizer, approximately: words, punctuation, clitics.

    ``"don't count your chickens"`` -> ``["do", "n't", "count", "your", "chickens"]``;
    ``"one's rope."`` -> ``["one", "'s", "rope", "."]``.
    """
    out: list[str] = []
    for chunk in text.split():
        lead, core, trail = _EDGE_PUNCT.match(chunk).groups()
        out += list(lead)
        clitic = _CLITIC.match(core)
        if clitic and clitic.group(1).isalpha():
            out += [clitic.group(1), clitic.group(2)]
        elif core:
            out.append(core)
        out += list(trail)
    return out


def is_prompt_all_stopwords(idiom: str) -> bool:
    """True when every token but the last is a stopword (the prompt carries no content).

    Punctuation tokens count as non-stopwords, as in spaCy.
    """
    toks = tokens(idiom)
    if len(toks) < 2:
        raise ValueError(f"{idiom!r}: an idiom needs at least two tokens")
    return all(t.lower() in STOP_WORDS for t in toks[:-1])


# --------------------------------------------------------------------------- parsers


def parse_ef(path: str | Path) -> pd.DataFrame:
    """Read the EF list: one ``idiom<TAB>usage`` a line.

    Returns:
        Columns ``raw`` (the idiom as written) and ``source`` (``"ep_by_itself"`` or
        ``"ep_as_part_of_a_sentence"``: ``"ep_"`` plus the usage with ``_`` for spaces).

    Raises:
        ValueError: a non-blank line without exactly one tab (names the line).

    """
    rows = []
    for lineno, line in enumerate(read_utf8(path).splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise ValueError(f"{path}: line {lineno}: expected 'idiom<TAB>usage', got {line!r}")
        rows.append({"raw": parts[0], "source": "ep_" + parts[1].strip().replace(" ", "_")})
    return pd.DataFrame(rows, columns=["raw", "source"])


def parse_epic(path: str | Path) -> pd.DataFrame:
    """Read the EPIE-style list ("EPIC"): one idiom a line. Columns ``raw``, ``source``."""
    lines = read_utf8(path).splitlines()
    raws = [line for line in lines if line.strip()]
    return pd.DataFrame({"raw": raws, "source": "EPIC"}, columns=["raw", "source"])


_TTL_LITERAL = re.compile(
    r"(rdfs:label|ontolex:writtenRep|skos:definition)\s+\"((?:[^\"\\]|\\.)*)\"(?:@[\w-]+)?"
)
_TTL_ESCAPES = re.compile(r"\\(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)")


def _ttl_unescape(text: str) -> str:
    simple = {"t": "\t", "n": "\n", "r": "\r", '"': '"', "'": "'", "\\": "\\"}

    def one(m: re.Match) -> str:
        code = m.group(1)
        if code[0] in "uU" and len(code) > 1:
            return chr(int(code[1:], 16))
        return simple.get(code, code)

    return _TTL_ESCAPES.sub(one, text)


def parse_lidioms(path: str | Path) -> pd.DataFrame:
    """Read the LIdioms Turtle file with a regex (no RDF library): every quoted literal.

    Handles the file's layout: single-line ``"..."@en`` literals after ``rdfs:label``,
    ``ontolex:writtenRep`` and ``skos:definition``.

    Returns:
        Columns ``raw`` (the literal, unescaped), ``field`` (``"label"``, ``"writtenRep"`` or
        ``"definition"``) and ``source`` (``"LIdiom"``), in file order.

    """
    text = read_utf8(path)
    names = {"rdfs:label": "label", "ontolex:writtenRep": "writtenRep",
             "skos:definition": "definition"}
    rows = [{"raw": _ttl_unescape(m.group(2)), "field": names[m.group(1)], "source": "LIdiom"}
            for m in _TTL_LITERAL.finditer(text)]
    return pd.DataFrame(rows, columns=["raw", "field", "source"])


# --------------------------------------------------------------------------- construction


def _n_words(idiom: str) -> int:
    return len(idiom.split())


def _lidioms_junk(idiom: str) -> bool:
    if any(s in idiom for s in _JUNK_SUBSTRINGS):
        return True
    return idiom.startswith("to ") and idiom not in LIDIOMS_TO_WHITELIST


def build_idiom_set(ef: pd.DataFrame | None = None, epic: pd.DataFrame | None = None,
                    lidioms: pd.DataFrame | None = None, min_words: int = 3,
                    lidioms_max_words: int = 9, ef_stopword_filter: bool = False) -> pd.DataFrame:
    """Apply the construction rules to the parsed lists and merge them.

    Args:
        ef: :func:`parse_ef` output (or None to leave EF out).
        epic: :func:`parse_epic` output.
        lidioms: :func:`parse_lidioms` output; only ``label``/``writtenRep`` rows are used.
        min_words: keep idioms with more than this many words.
        lidioms_max_words: LIdioms entries must have fewer than this many words.
        ef_stopword_filter: apply the all-stopword-prompt rule to EF too. Off by default, as
            in effect in the authors' script: it tested the raw EF line (idiom, tab, usage),
            whose whitespace token is never a stopword, so the rule never fired for EF
            (``"call it a day"`` is in IdioMem).

    Returns:
        One row per unique idiom: ``idiom, source, n_words`` (source = the last of the sources
        in EF, EPIC, LIdioms order that contains it), sorted by first appearance.

    """
    kept: dict[str, str] = {}
    for frame, is_lidioms, stop_rule in ((ef, False, ef_stopword_filter), (epic, False, True),
                                         (lidioms, True, True)):
        if frame is None:
            continue
        if is_lidioms and "field" in frame:
            frame = frame[frame["field"] != "definition"]
        for raw, source in zip(frame["raw"], frame["source"]):
            idiom = clean_idiom(raw)
            n = _n_words(idiom)
            if n <= min_words or (stop_rule and is_prompt_all_stopwords(idiom)):
                continue
            if is_lidioms and (n >= lidioms_max_words or _lidioms_junk(idiom)):
                continue
            kept[idiom] = source  # dict keeps first position, last source: the authors' merge
    rows = [{"idiom": k, "source": s, "n_words": _n_words(k)} for k, s in kept.items()]
    return pd.DataFrame(rows, columns=["idiom", "source", "n_words"])


def compare_with_release(rebuilt: pd.DataFrame, released: pd.DataFrame,
                         sources: Iterable[str] = SOURCE_ORDER) -> pd.DataFrame:
    """Per source, how the rebuilt idioms overlap with the released ones.

    Args:
        rebuilt: :func:`build_idiom_set` output.
        released: IdioMem (``idiom``, ``source``), e.g. :func:`memrecall.load_idiomem`.
        sources: the source labels to compare (default: the three rebuilt sources).

    Returns:
        One row per source plus ``"total"``: ``released`` (released idioms with that source),
        ``rebuilt``, ``both`` (same string, same source), ``rebuilt_elsewhere`` (rebuilt under
        this source, released under another, e.g. MAGPIE), ``only_released``,
        ``only_rebuilt`` (in no released source at all), ``recall`` (``both / released``).

    """
    released_source = dict(zip(released["idiom"], released["source"]))
    rows = []
    for source in list(sources):
        rel = set(released.loc[released["source"] == source, "idiom"])
        reb = set(rebuilt.loc[rebuilt["source"] == source, "idiom"])
        rows.append({
            "source": source, "released": len(rel), "rebuilt": len(reb),
            "both": len(rel & reb),
            "rebuilt_elsewhere": sum(1 for i in reb - rel if i in released_source),
            "only_released": len(rel - reb),
            "only_rebuilt": sum(1 for i in reb if i not in released_source),
        })
    table = pd.DataFrame(rows)
    total = table.drop(columns="source").sum().to_dict()
    table = pd.concat([table, pd.DataFrame([{"source": "total", **total}])], ignore_index=True)
    table["recall"] = table["both"] / table["released"].where(table["released"] > 0)
    return table


def release_differences(rebuilt: pd.DataFrame, released: pd.DataFrame,
                        raw_lidioms: pd.DataFrame,
                        sources: Iterable[str] = SOURCE_ORDER) -> pd.DataFrame:
    """Every idiom on which the rebuilt and the released sets disagree (string or source).

    Args:
        rebuilt: :func:`build_idiom_set` output.
        released: IdioMem (``idiom``, ``source``), e.g. :func:`memrecall.load_idiomem`.
        raw_lidioms: :func:`parse_lidioms` output (``raw``, ``field``), to say where a string
            occurs in the LIdioms file.
        sources: the rebuilt sources; released idioms of other sources (MAGPIE) are left out.

    Returns:
        One row per disagreement, released-only rows first, each part sorted by idiom:
        ``idiom``, ``in`` (``"released only"`` or ``"rebuilt only"``), ``released as`` and
        ``rebuilt as`` (the source, ``""`` or ``"—"`` when absent), ``in LIdioms file as``
        (the LIdioms fields holding the string, joined by ``/``, or ``"—"``).

    """
    lidioms_fields = (raw_lidioms.assign(idiom=raw_lidioms["raw"].map(clean_idiom))
                      .groupby("idiom")["field"].agg(lambda s: "/".join(sorted(set(s)))))
    rebuilt_keys = set(zip(rebuilt["idiom"], rebuilt["source"], strict=True))
    released_keys = set(zip(released["idiom"], released["source"], strict=True))
    released_source = dict(zip(released["idiom"], released["source"], strict=True))
    kept = set(sources)
    differences = pd.DataFrame(
        [{"idiom": i, "in": "released only", "released as": s, "rebuilt as": ""}
         for i, s in sorted(released_keys - rebuilt_keys) if s in kept]
        + [{"idiom": i, "in": "rebuilt only", "released as": released_source.get(i, "—"),
            "rebuilt as": s} for i, s in sorted(rebuilt_keys - released_keys)],
        columns=["idiom", "in", "released as", "rebuilt as"],
    )
    differences["in LIdioms file as"] = differences["idiom"].map(lidioms_fields).fillna("—")
    return differences
