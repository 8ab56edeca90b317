"""The pinned data files: where each comes from, how it is checked, where it is looked for.

Every data file is looked up in one fixed order (DESIGN.md, "Data resolution order"):

1. an explicit ``path`` argument (the file itself, or a folder laid out like the data dir);
2. ``$MEMRECALL_DATA_DIR/<relpath>`` (a folder laid out like ``../shared/data``);
3. the download cache ``<repo>/data/<relpath>`` (or ``~/.cache/memrecall/data`` when the
   package is not run from a writable checkout);
4. a download from the pinned public URL, written atomically into the cache.

Every file, wherever it was found, is checked against a pinned sha256 before it is used: of its
bytes, or (``checksum="content"``) of the canonical JSON of its records restricted to the pinned
fields, so that a copy with extra fields or another layout still verifies.
"""

from __future__ import annotations

import hashlib
import os
import stat
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .._io import atomic_write_bytes, repo_root, sha256_file
from .records import DataFormatError, content_sha256, parse_records

__all__ = [
    "DATA_DIR_ENV",
    "DATA_SOURCES",
    "FACTS_FIELDS",
    "ChecksumError",
    "DataNotFoundError",
    "DataSource",
    "default_cache_dir",
    "download",
    "file_key",
    "provenance_table",
    "resolve_data_file",
    "sha256_file",
    "verify_data_file",
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
            :func:`memrecall.data.records.content_sha256`).
        checksum: ``"bytes"`` or ``"content"``.
        fields: For a content checksum, the pinned fields (the first one orders the records).
        description: One line on what the file is.

    """

    relpath: str
    url: str
    sha256: str
    checksum: str = "bytes"
    description: str = ""
    fields: tuple[str, ...] = ()

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
        fields=FACTS_FIELDS,
    ),
}


# --------------------------------------------------------------------------- checksums


def _records_checksum(raw: bytes, fields: Sequence[str], where: str) -> str:
    records = parse_records(raw, fields, where)
    try:
        return content_sha256(records, fields)
    except TypeError as err:  # records whose first field mixes types cannot be ordered
        raise DataFormatError(f"{where}: field '{fields[0]}' cannot order the records: {err}"
                              ) from None


def _actual_checksum(source: DataSource, raw: bytes, where: str) -> str:
    if source.checksum == "content":
        return _records_checksum(raw, source.fields, where)
    return hashlib.sha256(raw).hexdigest()


FileKey = tuple[str, int, int, int, int, str]

# file_key(path, checksum kind) -> actual checksum
_VERIFIED: dict[FileKey, str] = {}


def file_key(path: Path, kind: str) -> FileKey:
    """An in-process cache key for a file's contents: path, mtime, size, inode, ctime, kind.

    The inode and the status-change time are in it because mtime and size alone miss an edit in
    place that keeps the size and restores the mtime (``os.utime``, ``cp -p``, ``rsync -t``, an
    editor's save within the filesystem's mtime granularity): writing a file always moves its
    ctime, which no user call can set back, and replacing it (a rename) changes its inode.
    """
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns, kind)


def verify_data_file(key: str, path: str | Path) -> Path:
    """Check a file against the pinned checksum of ``DATA_SOURCES[key]``.

    The result is cached in-process per :func:`file_key` (path, mtime, size, inode, ctime), so
    repeated loads do not re-hash and an edit in place is hashed again.

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
    cache_key = file_key(path, source.checksum)
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


def default_cache_dir() -> Path:
    """Return the download cache: ``<repo>/data``, else ``~/.cache/memrecall/data``.

    ``<repo>/data`` is used when the package runs from a checkout (a ``pyproject.toml`` beside
    ``data/``) whose ``data/`` folder is writable or can be created.

    Returns:
        The cache folder (it may not exist yet).

    """
    repo = repo_root()
    data = repo / "data"
    if (repo / "pyproject.toml").is_file():
        if data.is_dir() and os.access(data, os.W_OK):
            return data
        if not data.exists() and os.access(repo, os.W_OK):
            return data
    return Path.home() / ".cache" / "memrecall" / "data"


def download(url: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> bytes:
    """The bytes at ``url`` (no checks: :func:`resolve_data_file` verifies them)."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def _env_candidates(value: str, relpath: str) -> list[Path]:
    base = Path(value).expanduser()
    if base.is_absolute():
        return [base / relpath]
    # A relative $MEMRECALL_DATA_DIR: from the current folder, then from the project root.
    out = [(repo_root() / base / relpath).resolve()]
    try:
        out.insert(0, (Path.cwd() / base / relpath).resolve())
    except OSError:  # the current folder was deleted
        pass
    return list(dict.fromkeys(out))


_SPECIAL_FILES = ((stat.S_ISFIFO, "a FIFO, a named pipe"), (stat.S_ISSOCK, "a socket"),
                  (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _why_missing(path: Path) -> str:
    """Why ``path`` is not a readable file: missing, a folder, a FIFO, a socket, a device."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "does not exist" + (" (a broken symbolic link)" if path.is_symlink() else "")
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    for test, what in _SPECIAL_FILES:
        if test(mode):
            return f"is not a regular file ({what})"
    return "is not a regular file"


def resolve_data_file(key: str, path: str | Path | None = None, *, verify: bool = True) -> Path:
    """Find a data file, downloading it into the cache if needed.

    Order: (1) ``path`` (the file, or a folder laid out like the data dir: when given, it must
    hold the file, there is no fallback), (2)
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
        DataNotFoundError: ``path`` was given but holds no such file (says why: missing, a
            directory...), or all four places failed (the message lists each one).

    """
    source = _source(key)
    tried: list[str] = []

    def found(p: Path) -> Path:
        p = p.resolve()
        return verify_data_file(key, p) if verify else p

    # (1) explicit path: what was asked for, or an error (never silently another file)
    if path is None:
        tried.append("1. explicit path argument: none given")
    else:
        p = Path(path).expanduser()
        cand = p / source.relpath if p.is_dir() else p
        if cand.is_file():
            return found(cand)
        if p.is_dir() and not (cand.exists() or cand.is_symlink()):
            why = f"{p}, is a directory, not a file, and holds no {source.relpath}"
        else:  # the file itself, or the folder's entry: a FIFO, a folder, a broken link...
            why = f"{cand}, {_why_missing(cand)}"
        raise DataNotFoundError(
            f"data file '{source.relpath}' ({key}): the path given, {why}. Pass the file itself "
            f"or a folder laid out like the data dir, or leave path out to use "
            f"${DATA_DIR_ENV}, the download cache or a download."
        )

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
            f"2. ${DATA_DIR_ENV}={env}: " + ", ".join(f"{c} {_why_missing(c)}" for c in cands)
        )

    # (3) download cache
    cache = default_cache_dir()
    cached = cache / source.relpath
    if cached.is_file():
        return found(cached)
    tried.append(f"3. download cache: {cached} {_why_missing(cached)}")

    # (4) download
    try:
        raw = download(source.url)
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
            atomic_write_bytes(cached, raw)
        except OSError as err:
            tried.append(f"4. download from {source.url}: ok, but writing {cached} failed: {err}")
        else:
            _VERIFIED[file_key(cached, source.checksum)] = actual
            return cached.resolve()

    raise DataNotFoundError(
        f"data file '{source.relpath}' ({key}: {source.description}) was not found. Tried:\n  "
        + "\n  ".join(tried)
        + f"\nTo fix: set {DATA_DIR_ENV} to a folder laid out like ../shared/data (for example "
        f"`export {DATA_DIR_ENV}=/path/to/shared/data`), pass path=..., or run once with network "
        f"access so the file is downloaded into {cache}."
    )


def provenance_table() -> pd.DataFrame:
    """Every pinned data file, found (or downloaded) and checked against its sha256.

    Returns:
        One row per :data:`DATA_SOURCES` entry: ``key``, ``file`` (relative path), ``what``,
        ``checksum of``, ``sha256`` (its first 16 hex digits and an ellipsis) and ``verified``
        (``True``; a file that fails its checksum raises :class:`ChecksumError`).

    """
    return pd.DataFrame([
        {"key": key, "file": source.relpath, "what": source.description,
         "checksum of": source.checksum, "sha256": source.sha256[:16] + "…",
         "verified": verify_data_file(key, resolve_data_file(key)).is_file()}
        for key, source in DATA_SOURCES.items()
    ])
