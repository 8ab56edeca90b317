"""Loading the datasets: IdioMem, ROME's known facts, and WikiText-2 control sentences.

Every data file is looked up in one fixed order (DESIGN.md, "Data resolution order"):

1. an explicit ``path`` argument (the file itself, or a folder laid out like the data dir);
2. ``$MEMRECALL_DATA_DIR/<relpath>`` (a folder laid out like ``../shared/data``);
3. the download cache ``<repo>/data/<relpath>`` (or ``~/.cache/memrecall/data`` when the
   package is not run from a writable checkout);
4. a download from the pinned public URL, written atomically into the cache.

Every file, wherever it was found, is checked against a pinned sha256 before it is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import tempfile
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "DATA_SOURCES",
    "ChecksumError",
    "DataFormatError",
    "DataNotFoundError",
    "DataSource",
    "FACTS_FIELDS",
    "IDIOMEM_COLUMNS",
    "WIKITEXT_HF_CONFIG",
    "WIKITEXT_HF_DATASET",
    "WIKITEXT_HF_REVISION",
    "default_cache_dir",
    "detokenize",
    "facts_content_sha256",
    "load_facts",
    "load_idiomem",
    "load_wiki",
    "resolve_data_file",
    "sha256_file",
    "split_sentences",
    "validate_texts",
    "verify_data_file",
    "wiki_sentences",
]

DATA_DIR_ENV = "MEMRECALL_DATA_DIR"
DOWNLOAD_TIMEOUT_S = 20.0

_IDIOMEM_COMMIT = "386ee4624a37bfe6d77aa22e47f0f426b133e81b"
_IDIOMEM_RAW = f"https://raw.githubusercontent.com/adihaviv/idiomem/{_IDIOMEM_COMMIT}"
_WIKITEXT_RAW = (
    "https://raw.githubusercontent.com/pytorch/examples/"
    "77f55b912142e11fcfdf5b530231fb9c52f181e8/word_language_model/data/wikitext-2"
)
_FACTS_URL = (
    "https://raw.githubusercontent.com/lab-paper-code/dual_path_attribution/"
    "411720aaa63c1b479ad425d3b950f55d04d72918/data/known_1000.json"
)

# The HF hub copy of the same (tokenized) WikiText-2; used only when no file is available.
WIKITEXT_HF_DATASET = "Salesforce/wikitext"
WIKITEXT_HF_CONFIG = "wikitext-2-v1"
# Commit of Salesforce/wikitext (parquet layout, Jan 2024) that many public projects pin;
# not verifiable offline here: check it against the hub's history before relying on it.
WIKITEXT_HF_REVISION = "b08601e04326c79dfdd32d625aee71d232d685c3"

IDIOMEM_COLUMNS = (
    "idiom",
    "id",
    "source",
    "prompt_comp_ind",
    "similarity_ind",
    "frequent_target_ind",
    "hard_to_guess",
)
_IDIOMEM_BOOLS = IDIOMEM_COLUMNS[3:]

# The original ROME fields of known_1000.json; the content checksum covers exactly these.
FACTS_FIELDS = (
    "known_id",
    "subject",
    "attribute",
    "template",
    "prediction",
    "prompt",
    "relation_id",
)


class DataFormatError(ValueError):
    """A data file or a list of texts does not have the expected format."""


class ChecksumError(ValueError):
    """A data file's checksum differs from the pinned one."""


class DataNotFoundError(FileNotFoundError):
    """A data file could be found in none of the places of the resolution order."""


@dataclass(frozen=True)
class DataSource:
    """One pinned data file.

    Attributes:
        relpath: Path inside the data dir (``$MEMRECALL_DATA_DIR`` or the cache).
        url: Pinned download URL.
        sha256: Expected sha256: of the file's bytes (``checksum == "bytes"``) or of the
            canonical JSON of its records (``checksum == "content"``, see
            :func:`facts_content_sha256`).
        checksum: ``"bytes"`` or ``"content"``.
        description: One line on what the file is.

    """

    relpath: str
    url: str
    sha256: str
    checksum: str = "bytes"
    description: str = ""


DATA_SOURCES: dict[str, DataSource] = {
    "idiomem": DataSource(
        "idiomem/idiomem.jsonl",
        f"{_IDIOMEM_RAW}/idiomem.jsonl",
        "4f7cb66587418558af7918fbcb5c7cee8979d5a9b9f814c485126f37a58f56f2",
        description="IdioMem: 852 English idioms with the four filter flags",
    ),
    "ef_idioms": DataSource(
        "idiomem/ef_idioms.txt",
        f"{_IDIOMEM_RAW}/data/ef_idioms.txt",
        "32b1c45e4d214a03851d8140f6c6446dd23e8acab98424d67e54b290bbbed420",
        description="raw EF idiom list (tab-separated idiom and usage)",
    ),
    "epic_idioms": DataSource(
        "idiomem/EPIC_unique_Idioms.txt",
        f"{_IDIOMEM_RAW}/data/EPIC_unique_Idioms.txt",
        "97c7ec9a0f40b84f23f75b09cee324b9bfad16d8b2c176d0a95636d27b1ae41b",
        description="raw EPIE-style idiom list, one idiom a line",
    ),
    "lidioms": DataSource(
        "idiomem/LIdioms_english.ttl",
        f"{_IDIOMEM_RAW}/data/LIdioms_english.ttl",
        "515b7bc2697f2f8c5f6b48242111e220d10c4b14fd66d630de0a6eb9e19a616b",
        description="raw LIdioms English idioms (Turtle/RDF)",
    ),
    "wikitext2_test": DataSource(
        "wikitext-2/test.txt",
        f"{_WIKITEXT_RAW}/test.txt",
        "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
        description="WikiText-2 (tokenized, v1) test split, one paragraph a line",
    ),
    "wikitext2_valid": DataSource(
        "wikitext-2/valid.txt",
        f"{_WIKITEXT_RAW}/valid.txt",
        "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
        description="WikiText-2 (tokenized, v1) validation split, one paragraph a line",
    ),
    "facts": DataSource(
        "facts/known_1000.json",
        _FACTS_URL,
        # Content checksum: the upstream file has extra fields, the shared copy only
        # FACTS_FIELDS, so their bytes differ but their canonical content does not.
        "0ff3536fc767a71b18079a9a4426a4ae97d46f16e3536c25ace27604f53cdc7b",
        checksum="content",
        description="ROME known_1000.json: 1,209 factual prompts with their attribute",
    ),
}

_WIKI_KEYS = {"test": "wikitext2_test", "valid": "wikitext2_valid"}
_HF_SPLITS = {"test": "test", "valid": "validation"}


# --------------------------------------------------------------------------- checksums


def sha256_file(path: str | Path) -> str:
    """Return the hex sha256 of a file's bytes.

    Args:
        path: The file.

    Returns:
        The lowercase hex digest.

    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_fact_records(records: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(records, list):
        raise DataFormatError(f"{where}: expected a JSON list of records, got {type(records)}")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise DataFormatError(f"{where}: record {i}: expected an object, got {rec!r:.60}")
        for field in FACTS_FIELDS:
            if field not in rec:
                raise DataFormatError(f"{where}: record {i}: missing field '{field}'")
        if not isinstance(rec["known_id"], int) or isinstance(rec["known_id"], bool):
            raise DataFormatError(
                f"{where}: record {i}: field 'known_id' is {rec['known_id']!r}, expected an int"
            )
        for field in FACTS_FIELDS[1:]:
            if not isinstance(rec[field], str):
                raise DataFormatError(
                    f"{where}: record {i}: field '{field}' is {rec[field]!r:.60}, expected a string"
                )
    return records


def _parse_facts_bytes(raw: bytes, where: str) -> list[dict[str, Any]]:
    try:
        records = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataFormatError(f"{where}: not valid UTF-8 JSON: {err}") from None
    return _check_fact_records(records, where)


def facts_content_sha256(records: list[dict[str, Any]]) -> str:
    """Return the content checksum of known_1000.json records.

    The sha256 of ``json.dumps`` of the records sorted by ``known_id`` and restricted to
    :data:`FACTS_FIELDS` (``sort_keys=True, ensure_ascii=False, separators=(",", ":")``).
    Extra fields and the file's layout do not change it.

    Args:
        records: The parsed records (each must have all of :data:`FACTS_FIELDS`).

    Returns:
        The lowercase hex digest.

    """
    canon = [
        {k: rec[k] for k in FACTS_FIELDS} for rec in sorted(records, key=lambda r: r["known_id"])
    ]
    text = json.dumps(canon, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _actual_checksum(source: DataSource, raw: bytes, where: str) -> str:
    if source.checksum == "content":
        return facts_content_sha256(_parse_facts_bytes(raw, where))
    return hashlib.sha256(raw).hexdigest()


# (resolved path, mtime_ns, size, checksum kind) -> actual checksum
_VERIFIED: dict[tuple[str, int, int, str], str] = {}


def _file_key(path: Path, kind: str) -> tuple[str, int, int, str]:
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size, kind)


def verify_data_file(key: str, path: str | Path) -> Path:
    """Check a file against the pinned checksum of ``DATA_SOURCES[key]``.

    The result is cached in-process per (path, mtime, size), so repeated loads do not re-hash.

    Args:
        key: A key of :data:`DATA_SOURCES`.
        path: The file to check.

    Returns:
        The path, unchanged, as a :class:`~pathlib.Path`.

    Raises:
        ChecksumError: The file's checksum differs from the pinned one.

    """
    source = _source(key)
    path = Path(path)
    cache_key = _file_key(path, source.checksum)
    actual = _VERIFIED.get(cache_key)
    if actual is None:
        if source.checksum == "content":
            actual = _actual_checksum(source, path.read_bytes(), str(path))
        else:
            actual = sha256_file(path)
        _VERIFIED[cache_key] = actual
    if actual != source.sha256:
        what = "content sha256" if source.checksum == "content" else "sha256"
        raise ChecksumError(
            f"{path}: {what} mismatch for data file '{source.relpath}' ({key}).\n"
            f"  expected {source.sha256}\n  actual   {actual}\n"
            f"The file is corrupt or a different version. Delete it (or fix the folder it came "
            f"from) so that a good copy is used or re-downloaded from {source.url}"
        )
    return path


# --------------------------------------------------------------------------- resolution


def _source(key: str) -> DataSource:
    try:
        return DATA_SOURCES[key]
    except KeyError:
        raise KeyError(f"unknown data file {key!r}; known: {sorted(DATA_SOURCES)}") from None


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def default_cache_dir() -> Path:
    """Return the download cache: ``<repo>/data``, else ``~/.cache/memrecall/data``.

    ``<repo>/data`` is used when the package runs from a checkout (a ``pyproject.toml`` beside
    ``data/``) whose ``data/`` folder is writable or can be created.

    Returns:
        The cache folder (it may not exist yet).

    """
    repo = _repo_root()
    data = repo / "data"
    if (repo / "pyproject.toml").is_file():
        if data.is_dir() and os.access(data, os.W_OK):
            return data
        if not data.exists() and os.access(repo, os.W_OK):
            return data
    return Path.home() / ".cache" / "memrecall" / "data"


def _download(url: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def _write_atomic(target: Path, raw: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _env_candidates(value: str, relpath: str) -> list[Path]:
    base = Path(value).expanduser()
    if base.is_absolute():
        return [base / relpath]
    # A relative $MEMRECALL_DATA_DIR: from the current folder, then from the project root.
    out = [(_repo_root() / base / relpath).resolve()]
    try:
        out.insert(0, (Path.cwd() / base / relpath).resolve())
    except OSError:  # the current folder was deleted
        pass
    return list(dict.fromkeys(out))


def resolve_data_file(key: str, path: str | Path | None = None, *, verify: bool = True) -> Path:
    """Find a data file, downloading it into the cache if needed.

    Order: (1) ``path`` (the file, or a folder laid out like the data dir), (2)
    ``$MEMRECALL_DATA_DIR/<relpath>``, (3) the cache (:func:`default_cache_dir`), (4) the
    pinned URL, verified and then written atomically into the cache.

    Args:
        key: A key of :data:`DATA_SOURCES`, e.g. ``"idiomem"`` or ``"wikitext2_test"``.
        path: Optional explicit file or data folder.
        verify: Check a file found in (1)-(3) against the pinned checksum. A download is
            always checked. Loaders pass False and call :func:`verify_data_file` after
            parsing, so that a malformed file gets a format error with a line number.

    Returns:
        The absolute path of the file.

    Raises:
        ChecksumError: The file found (or downloaded) has the wrong checksum.
        DataNotFoundError: All four places failed; the message lists each one.

    """
    source = _source(key)
    tried: list[str] = []

    def found(p: Path) -> Path:
        p = p.resolve()
        return verify_data_file(key, p) if verify else p

    # (1) explicit path
    if path is None:
        tried.append("1. explicit path argument: none given")
    else:
        p = Path(path).expanduser()
        cand = p / source.relpath if p.is_dir() else p
        if cand.is_file():
            return found(cand)
        tried.append(f"1. explicit path argument: {cand} does not exist")

    # (2) $MEMRECALL_DATA_DIR
    env = os.environ.get(DATA_DIR_ENV)
    if not env:
        tried.append(f"2. ${DATA_DIR_ENV}: not set")
    else:
        cands = _env_candidates(env, source.relpath)
        for cand in cands:
            if cand.is_file():
                return found(cand)
        tried.append(
            f"2. ${DATA_DIR_ENV}={env}: " + ", ".join(f"{c} does not exist" for c in cands)
        )

    # (3) download cache
    cache = default_cache_dir()
    cached = cache / source.relpath
    if cached.is_file():
        return found(cached)
    tried.append(f"3. download cache: {cached} does not exist")

    # (4) download
    try:
        raw = _download(source.url)
    except Exception as err:  # reported in the one error below
        tried.append(f"4. download from {source.url}: failed: {type(err).__name__}: {err}")
    else:
        actual = _actual_checksum(source, raw, source.url)
        if actual != source.sha256:
            raise ChecksumError(
                f"download of '{source.relpath}' from {source.url} has the wrong checksum "
                f"(nothing was written).\n  expected {source.sha256}\n  actual   {actual}\n"
                f"The upstream file changed or the download was corrupted; try again, or get "
                f"the file from a copy of the shared data folder and set ${DATA_DIR_ENV}."
            )
        try:
            _write_atomic(cached, raw)
        except OSError as err:
            tried.append(f"4. download from {source.url}: ok, but writing {cached} failed: {err}")
        else:
            _VERIFIED[_file_key(cached, source.checksum)] = actual
            return cached.resolve()

    raise DataNotFoundError(
        f"data file '{source.relpath}' ({key}: {source.description}) was not found. Tried:\n  "
        + "\n  ".join(tried)
        + f"\nTo fix: set {DATA_DIR_ENV} to a folder laid out like ../shared/data (for example "
        f"`export {DATA_DIR_ENV}=/path/to/shared/data`), pass path=..., or run once with network "
        f"access so the file is downloaded into {cache}."
    )


# --------------------------------------------------------------------------- loaders


_IDIOMEM_CACHE: dict[tuple[str, int, int, str], tuple[tuple[Any, ...], ...]] = {}


def _parse_idiomem(path: Path) -> tuple[tuple[Any, ...], ...]:
    rows: list[tuple[Any, ...]] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}: line {lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(f"{where}: bad JSON: {err}") from None
            if not isinstance(rec, dict):
                raise DataFormatError(f"{where}: expected a JSON object, got {rec!r:.60}")
            for field in IDIOMEM_COLUMNS:
                if field not in rec:
                    raise DataFormatError(f"{where}: missing field '{field}'")
            for field in IDIOMEM_COLUMNS[:3]:
                if not isinstance(rec[field], str) or not rec[field].strip():
                    raise DataFormatError(
                        f"{where}: field '{field}' is {rec[field]!r:.60}, expected a non-empty "
                        "string"
                    )
            for field in _IDIOMEM_BOOLS:
                if not isinstance(rec[field], bool):
                    raise DataFormatError(
                        f"{where}: field '{field}' is {rec[field]!r:.60}, expected true or false"
                    )
            rows.append(tuple(rec[c] for c in IDIOMEM_COLUMNS))
    return tuple(rows)


def load_idiomem(path: str | Path | None = None) -> pd.DataFrame:
    """Load IdioMem (852 idioms and their four filter flags), in file order.

    Args:
        path: Optional explicit ``idiomem.jsonl`` or data folder (see
            :func:`resolve_data_file`).

    Returns:
        A new DataFrame with columns :data:`IDIOMEM_COLUMNS` (the four flags as bool).

    Raises:
        DataFormatError: A line is not valid JSON or lacks a field (names file and line).
        ChecksumError: The file differs from the pinned IdioMem file.
        DataNotFoundError: The file was found nowhere.

    """
    file = resolve_data_file("idiomem", path, verify=False)
    ckey = _file_key(file, "rows")
    rows = _IDIOMEM_CACHE.get(ckey)
    if rows is None:
        rows = _parse_idiomem(file)
        verify_data_file("idiomem", file)
        _IDIOMEM_CACHE[ckey] = rows
    else:
        verify_data_file("idiomem", file)
    df = pd.DataFrame(list(rows), columns=list(IDIOMEM_COLUMNS))
    return df.astype({c: bool for c in _IDIOMEM_BOOLS})


def load_facts(path: str | Path | None = None) -> pd.DataFrame:
    """Load ROME's known facts (``known_1000.json``, 1,209 records), in file order.

    Args:
        path: Optional explicit ``known_1000.json`` or data folder.

    Returns:
        A new DataFrame with columns ``known_id, subject, relation_id, prompt, target, text``
        where ``target`` is the record's ``attribute`` and ``text = prompt + " " + target``.

    Raises:
        DataFormatError: Bad JSON or a record lacking a field (names file and record index).
        ChecksumError: The content differs from the pinned ROME records.
        DataNotFoundError: The file was found nowhere.

    """
    file = resolve_data_file("facts", path, verify=False)
    records = _parse_facts_bytes(file.read_bytes(), str(file))
    verify_data_file("facts", file)
    df = pd.DataFrame(
        {
            "known_id": [r["known_id"] for r in records],
            "subject": [r["subject"] for r in records],
            "relation_id": [r["relation_id"] for r in records],
            "prompt": [r["prompt"].rstrip() for r in records],
            "target": [r["attribute"].strip() for r in records],
        }
    )
    df["text"] = df["prompt"] + " " + df["target"]
    return df


# --------------------------------------------------------------------------- WikiText


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
    ckey = _file_key(file, "sentences")
    if ckey not in _WIKI_CACHE:
        lines = file.read_text(encoding="utf-8").split("\n")
        _WIKI_CACHE[ckey] = tuple(wiki_sentences(lines))
    return _WIKI_CACHE[ckey]


def _wiki_from_hf(split: str) -> tuple[tuple[str, int], ...]:
    ckey = ("hf", WIKITEXT_HF_DATASET, WIKITEXT_HF_CONFIG, WIKITEXT_HF_REVISION, split)
    if ckey not in _WIKI_CACHE:
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
            if no file can be found).

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


# --------------------------------------------------------------------------- validation


def validate_texts(texts: Iterable[str]) -> list[str]:
    """Check texts for probing: each needs a prompt and a final target word.

    Args:
        texts: The texts (any iterable, e.g. a list or a pandas Series).

    Returns:
        The texts as a list, unchanged.

    Raises:
        DataFormatError: A text is not a string, is empty/whitespace-only or has one word;
            the message names its row (0-based position).

    """
    out = list(texts)
    hint = "a probe needs a prompt and a target word"
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise DataFormatError(f"row {i}: expected a string, got {type(text).__name__}")
        n_words = len(text.split())
        if n_words == 0:
            raise DataFormatError(f"row {i}: text {text!r} is empty or whitespace-only; {hint}")
        if n_words == 1:
            raise DataFormatError(f"row {i}: text {text!r} has one word; {hint}")
    return out
