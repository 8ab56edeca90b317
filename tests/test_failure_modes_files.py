"""Files that go wrong: permissions of written files, damaged assembled GGUFs, full disks
while saving, sidecars and manifests that are not plain JSON files."""

import os
import stat

import pytest

from memrecall._io import atomic_write_bytes, atomic_write_dir, atomic_write_text, current_umask


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_writes_follow_the_umask(tmp_path, umask_022):
    assert current_umask() == 0o022
    atomic_write_text(tmp_path / "a.txt", "text")
    atomic_write_bytes(tmp_path / "b.bin", b"raw")
    atomic_write_dir(tmp_path / "folder", lambda temp: (temp / "x").write_text("x"))
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755
    os.umask(0o077)
    atomic_write_text(tmp_path / "private.txt", "text")
    assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600
