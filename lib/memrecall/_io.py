"""Shared helpers: atomic writes, checksums, locks, slug, repo root, hub ids, code fingerprint.

The fingerprint of the package's own source is part of every results-cache key.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from safetensors import SafetensorError

__all__ = [
    "WRITE_ERRORS",
    "CacheWarning",
    "LockedError",
    "TEMP_NAME",
    "UnreadableFileError",
    "atomic_write",
    "atomic_write_all",
    "atomic_write_bytes",
    "atomic_write_dir",
    "atomic_write_text",
    "code_fingerprint",
    "current_umask",
    "error_text",
    "exclusive_lock",
    "is_hub_id",
    "read_json_file",
    "repo_root",
    "sha256_file",
    "slug",
]

PACKAGE_DIR = Path(__file__).resolve().parent

TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")
"""The name of an :func:`atomic_write` temp file (``.<name>.<8 random characters>.tmp``): one
left behind by a killed process is removed by the next ``make reproduce``."""


def _temp_for(path: Path) -> Path:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    return Path(temp)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` all or nothing: ``write(temp)`` in the same folder, then a rename.

    An interrupted write leaves the old file (or none), never a truncated one; the temp file
    is flushed to disk before the rename and removed if ``write`` raises. The file gets the
    permissions of any new file (``0o666`` less the umask), not ``mkstemp``'s private ``0o600``.
    """
    atomic_write_all({path: write})


def atomic_write_all(writes: dict[str | Path, Callable[[Path], None]]) -> None:
    """Write several files all or nothing: each to a temp file first, then every rename.

    If any ``write`` raises, no file is replaced (every old file is kept) and the temp files are
    removed; the renames come only after every write succeeded, one right after the other (a
    kill in that instant, microseconds wide, is the only way to get a mixed set).
    """
    temps: dict[Path, Path] = {}
    try:
        for path, write in writes.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            temps[path] = temp = _temp_for(path)
            write(temp)
            with open(temp, "rb+") as fh:
                os.fsync(fh.fileno())
                os.fchmod(fh.fileno(), 0o666 & ~current_umask())
        for path, temp in temps.items():
            os.replace(temp, path)
    except BaseException:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process's umask, read without changing it for other threads when the system allows.

    Linux shows it in ``/proc/self/status``; elsewhere it is read by setting it and setting it
    back at once (a lock keeps two of our threads from racing on it).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write` of a UTF-8 text."""
    atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | Path, raw: bytes) -> None:
    """:func:`atomic_write` of raw bytes."""
    atomic_write(path, lambda temp: temp.write_bytes(raw))


def atomic_write_dir(path: str | Path, write: Callable[[Path], None]) -> None:
    """Create the folder ``path`` all or nothing: ``write(temp folder)``, then a rename.

    The folder gets the permissions of any new folder (``0o777`` less the umask).

    Raises:
        OSError: the folder could not be written, or ``path`` appeared meanwhile (another
            process got there first); the temp folder is removed either way.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        temp.chmod(0o777 & ~current_umask())  # as a new folder, not mkdtemp's private 0o700
        write(temp)
        temp.rename(path)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def sha256_file(path: str | Path) -> str:
    """The lowercase hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


WRITE_ERRORS: tuple[type[Exception], ...] = (OSError, SafetensorError)
"""What a failed save of a cache entry raises: the system's errors (read-only folder, full disk)
and safetensors' own (it reports a full disk as ``SafetensorError``, not an ``OSError``)."""


def error_text(error: BaseException) -> str:
    """An error for a one-line message: its ``strerror`` when it has one, else its text."""
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


class UnreadableFileError(ValueError):
    """A file that is not what it should be: not a regular file, too large, or not JSON."""


JSON_MAX_BYTES = 16 << 20
"""The largest sidecar or manifest :func:`read_json_file` reads (16 MiB)."""


def read_json_file(path: str | Path, max_bytes: int = JSON_MAX_BYTES):
    """Parse a small JSON file (a sidecar, a manifest), refusing anything else quickly.

    Only a regular file (a symlink to one is fine) of at most ``max_bytes`` is read: a FIFO is
    not waited on, a symlink to ``/dev/zero`` is not read without end, and JSON nested too deep
    for the parser is refused instead of raising ``RecursionError``.

    Raises:
        FileNotFoundError: there is no such file.
        UnreadableFileError: not a regular file, larger than ``max_bytes``, not UTF-8 JSON, or
            nested too deep (a ``ValueError``).
        OSError: it cannot be opened or read (permissions...).
    """
    path = Path(path)
    handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(handle, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFileError(f"{path} is not a regular file")
        if info.st_size > max_bytes:
            raise UnreadableFileError(f"{path} is {info.st_size} bytes, over {max_bytes}")
        raw = fh.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise UnreadableFileError(f"{path} is over {max_bytes} bytes")
    try:
        return json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise UnreadableFileError(f"{path}: JSON nested too deep") from None
    except ValueError as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise UnreadableFileError(f"{path}: not JSON ({error})") from error


class CacheWarning(UserWarning):
    """A cache entry was not used (recomputed) or could not be written (kept in memory)."""


LOCK_POLL_S = 0.05
"""How often a waiting :func:`exclusive_lock` tries again (seconds)."""


class LockedError(RuntimeError):
    """Another process holds the lock (the message names the lock file and its holder)."""


@contextmanager
def exclusive_lock(path: str | Path, what: str, wait_s: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the ``with`` block.

    The operating system releases the lock when the holder exits, however it ends (even
    killed), so a lock is never left behind. The holder's pid is written into the file. The
    lock is per open file, so a second holder in the same process (another thread) waits too.

    Args:
        path: the lock file.
        what: what the lock protects, for the message (``"results/smoke"``).
        wait_s: how long to wait for another holder to let go (seconds; 0: not at all).

    Raises:
        LockedError: another holder still has it after ``wait_s`` (says which pid, and what
            to do).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    with open(path, "a+") as fh:
        while not _try_lock(fh):
            if time.monotonic() >= deadline:
                fh.seek(0)
                holder = fh.read().strip() or "unknown"
                raise LockedError(
                    f"{what}: locked by another run (pid {holder}, lock file {path}); wait for "
                    "it to finish, or stop it, then run again")
            time.sleep(LOCK_POLL_S)
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)


def _try_lock(fh) -> bool:
    """Take the exclusive lock of the open file ``fh`` if free; whether it was taken."""
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            raise
        return False
    return True


def slug(text: str, max_len: int | None = 60) -> str:
    """A file-name-safe form of ``text``: runs of other characters become ``-``.

    ``"openai-community/gpt2"`` -> ``"openai-community-gpt2"``; at most ``max_len`` characters.
    """
    out = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-")
    return out if max_len is None else out[:max_len]


def repo_root() -> Path:
    """The checkout this package runs from: ``data/`` and ``notebooks/`` are there in a clone."""
    return PACKAGE_DIR.parents[1]


def is_hub_id(name: str) -> bool:
    """Whether ``name`` is shaped like a Hugging Face hub id (``owner/name``, not a path)."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and " " not in name


def code_fingerprint(package_dir: str | Path | None = None) -> str:
    """A hash of the package's source: every ``**/*.py`` under ``lib/memrecall``, by path.

    16 hex characters. It is part of every results-cache key, so an edit to the lens or the
    sweep recomputes results instead of reusing stale ones (the version string never moves).

    Args:
        package_dir: the package folder to hash; default this package (computed once per
            process: the code a process runs is the code it imported).
    """
    if package_dir is None:
        return _fingerprint_of(PACKAGE_DIR)
    return _fingerprint_of.__wrapped__(Path(package_dir).resolve())


@functools.lru_cache(maxsize=1)
def _fingerprint_of(folder: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(folder.rglob("*.py"), key=lambda p: p.relative_to(folder).as_posix()):
        if "__pycache__" in file.parts:
            continue
        digest.update(file.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
