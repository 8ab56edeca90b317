"""Tests for memrecall.data: loaders, WikiText processing, resolution order, checksums."""

import dataclasses
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from memrecall import data
from memrecall._io import repo_root
from memrecall.data import (
    DATA_SOURCES,
    ChecksumError,
    DataFormatError,
    DataNotFoundError,
    detokenize,
    load_facts,
    load_idiomem,
    load_wiki,
    resolve_data_file,
    sha256_file,
    sources,
    split_sentences,
    validate_texts,
)
from memrecall.data.idiomem import parse_idiomem

UNREACHABLE = "http://127.0.0.1:9/nothing-here"


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No $MEMRECALL_DATA_DIR, an empty tmp cache, and unreachable download URLs."""
    monkeypatch.delenv("MEMRECALL_DATA_DIR", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setattr(sources, "default_cache_dir", lambda: cache)
    for key, src in list(DATA_SOURCES.items()):
        monkeypatch.setitem(DATA_SOURCES, key, dataclasses.replace(src, url=UNREACHABLE))
    return cache


def _copy(data_dir: Path, dest_root: Path, key: str) -> Path:
    rel = DATA_SOURCES[key].relpath
    dest = dest_root / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(data_dir / rel, dest)
    return dest


# --------------------------------------------------------------------------- IdioMem


def test_idiomem_rows_columns_dtypes(data_dir):
    df = load_idiomem(data_dir)
    assert len(df) == 852
    assert list(df.columns) == [
        "idiom",
        "id",
        "source",
        "prompt_comp_ind",
        "similarity_ind",
        "frequent_target_ind",
        "hard_to_guess",
    ]
    for col in ["prompt_comp_ind", "similarity_ind", "frequent_target_ind", "hard_to_guess"]:
        assert df[col].dtype == bool, col
    # file order
    assert df["idiom"].iloc[0] == "for crying out loud"
    assert df["idiom"].iloc[1] == "turn a blind eye"
    assert df["idiom"].is_unique
    # `id` is NOT unique: MAGPIE gives variants of one idiom the same id (a data fact)
    dup = df[df["id"].duplicated(keep=False)]
    assert sorted(dup["idiom"]) == [
        "dead as a dodo",
        "dead as a doornail",
        "sick as a dog",
        "sick as a parrot",
    ]


def test_idiomem_flag_counts(data_dir):
    df = load_idiomem(data_dir)
    assert int(df["prompt_comp_ind"].sum()) == 112
    assert int(df["similarity_ind"].sum()) == 30
    assert int(df["frequent_target_ind"].sum()) == 631
    assert int(df["hard_to_guess"].sum()) == 717
    expected = ~df["prompt_comp_ind"] & ~df["similarity_ind"]
    assert (df["hard_to_guess"] == expected).all()


def test_idiomem_returns_independent_copies(data_dir):
    first = load_idiomem(data_dir)
    first.loc[0, "idiom"] = "changed"
    first["id"] = "x"
    again = load_idiomem(data_dir)
    assert again["idiom"].iloc[0] == "for crying out loud"
    assert again["id"].iloc[0] == "1a817c02cff2bb96da5e"


def test_idiomem_bad_json_line_names_file_and_line(data_dir, tmp_path):
    lines = (data_dir / "idiomem/idiomem.jsonl").read_text(encoding="utf-8").splitlines()
    lines[4] = '{"idiom": "broken'
    bad = tmp_path / "idiomem.jsonl"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as exc:
        load_idiomem(bad)
    msg = str(exc.value)
    assert str(bad) in msg
    assert "line 5" in msg
    assert "bad JSON" in msg


def test_idiomem_missing_field_names_file_line_and_field(data_dir, tmp_path):
    lines = (data_dir / "idiomem/idiomem.jsonl").read_text(encoding="utf-8").splitlines()
    rec = json.loads(lines[2])
    del rec["source"]
    lines[2] = json.dumps(rec)
    bad = tmp_path / "idiomem.jsonl"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"line 3: missing field 'source'") as exc:
        load_idiomem(bad)
    assert str(bad) in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_idiomem_non_bool_flag_is_a_format_error(data_dir, tmp_path):
    lines = (data_dir / "idiomem/idiomem.jsonl").read_text(encoding="utf-8").splitlines()
    rec = json.loads(lines[0])
    rec["similarity_ind"] = "no"
    lines[0] = json.dumps(rec)
    bad = tmp_path / "idiomem.jsonl"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"line 1: field 'similarity_ind'"):
        load_idiomem(bad)


def test_idiomem_parser_skips_blank_lines(data_dir, tmp_path):
    lines = (data_dir / "idiomem/idiomem.jsonl").read_text(encoding="utf-8").splitlines()
    padded = tmp_path / "idiomem.jsonl"
    padded.write_text("\n\n".join(lines) + "\n   \n", encoding="utf-8")
    rows = parse_idiomem(padded)
    assert len(rows) == 852
    assert rows[0][0] == "for crying out loud"


# --------------------------------------------------------------------------- facts


def test_facts(data_dir):
    df = load_facts(data_dir)
    assert len(df) == 1209
    assert list(df.columns) == ["known_id", "subject", "relation_id", "prompt", "target", "text"]
    assert (df["text"] == df["prompt"] + " " + df["target"]).all()
    assert df["text"].iloc[0] == "Vinson Massif is located in the continent of Antarctica"
    assert df["known_id"].is_unique
    validate_texts(df["text"])


def test_facts_content_checksum_ignores_extra_fields_but_not_values(data_dir, tmp_path):
    records = json.loads((data_dir / "facts/known_1000.json").read_text(encoding="utf-8"))
    upstream_like = [dict(r, extra_field=i) for i, r in enumerate(records)]
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(upstream_like[::-1]), encoding="utf-8")
    assert sha256_file(ok) != DATA_SOURCES["facts"].sha256
    assert len(load_facts(ok)) == 1209

    upstream_like[10]["attribute"] = "Mars"
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(upstream_like), encoding="utf-8")
    with pytest.raises(ChecksumError, match=re.escape(str(changed))):
        load_facts(changed)


def test_facts_missing_field_names_file_and_record(data_dir, tmp_path):
    records = json.loads((data_dir / "facts/known_1000.json").read_text(encoding="utf-8"))
    del records[7]["prompt"]
    bad = tmp_path / "known_1000.json"
    bad.write_text(json.dumps(records), encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"record 7: missing field 'prompt'") as exc:
        load_facts(bad)
    assert str(bad) in str(exc.value)


def test_facts_bad_json_names_file(tmp_path):
    bad = tmp_path / "known_1000.json"
    bad.write_text('[{"known_id": 0,', encoding="utf-8")
    with pytest.raises(DataFormatError, match=re.escape(str(bad))):
        load_facts(bad)


# --------------------------------------------------------------------------- WikiText


@pytest.mark.parametrize(
    ("tokenized", "expected"),
    [
        ("a guest @-@ starring role", "a guest-starring role"),
        ("2 @,@ 000 people , 1 @.@ 5 km", "2,000 people, 1.5 km"),
        ("He left . Then", "He left. Then"),
        ("the band 's album", "the band's album"),
        ("it was n't", "it wasn't"),
        ("he did n't and she wasn 't", "he didn't and she wasn't"),
        ("the players ' union", "the players' union"),
        ("a role ( 2004 ) ; later : more", "a role (2004); later: more"),
        ('he played " Craig " in it', 'he played "Craig" in it'),
        ("the ' box-battery ' design", "the 'box-battery' design"),
        ("the 1980s and ' 90s", "the 1980s and '90s"),
        ("cost $ 5 , or 10 %", "cost $5, or 10%"),
        ("won 77 – 59", "won 77–59"),
        ("  extra   spaces  ", "extra spaces"),
        ("Really ? Yes !", "Really? Yes!"),
    ],
)
def test_detokenize(tokenized, expected):
    assert detokenize(tokenized) == expected


def test_split_sentences_keeps_abbreviations_together():
    text = (
        "Mr. Smith went to the U.S. Army base. He met John F. Kennedy there! "
        "Was it St. Louis? It was."
    )
    assert split_sentences(text) == [
        "Mr. Smith went to the U.S. Army base.",
        "He met John F. Kennedy there!",
        "Was it St. Louis?",
        "It was.",
    ]


def test_wiki_sentences_filters():
    lines = [
        " ",
        " = Heading = ",
        " = = Sub heading = = ",
        " The cat sat on the mat . The <unk> sat on a rug too . Short one . "
        "This is a perfectly fine sentence about a dog . The cat sat on the mat . ",
        " The cat sat on the mat . ",
    ]
    out = data.wiki_sentences(lines)
    assert out == [
        ("The cat sat on the mat", 3),
        ("This is a perfectly fine sentence about a dog", 3),
    ]


@pytest.mark.parametrize("split", ["test", "valid"])
def test_load_wiki_texts_are_clean(data_dir, split):
    df = load_wiki(n=1000, seed=0, split=split, path=data_dir, control="sentences")
    assert len(df) == 1000
    assert list(df.columns) == ["text", "paragraph", "n_words"]
    assert df["text"].is_unique
    for text in df["text"]:
        words = text.split()
        assert 5 <= len(words) <= 25, text
        assert "<unk>" not in text
        assert " @" not in text and "@ " not in text
        assert " , " not in text and " . " not in text and " 's" not in text
        assert re.fullmatch(r"\w(.*\w)?", words[-1]), text
        assert any(c.isalnum() for c in words[-1])
    validate_texts(df["text"])


def test_load_wiki_deterministic_per_seed(data_dir):
    a = load_wiki(n=200, seed=0, path=data_dir)
    b = load_wiki(n=200, seed=0, path=data_dir)
    c = load_wiki(n=200, seed=1, path=data_dir)
    assert a.equals(b)
    assert a["text"].tolist() != c["text"].tolist()
    assert set(a["text"]) != set(c["text"])


def test_load_wiki_paragraph_points_at_source_line(data_dir):
    lines = (data_dir / "wikitext-2/test.txt").read_text(encoding="utf-8").split("\n")
    df = load_wiki(n=20, seed=3, path=data_dir)
    for text, par in zip(df["text"], df["paragraph"], strict=True):
        first_word = text.split()[0].strip("\"'(")
        assert first_word in lines[par], (text, lines[par][:80])


def test_load_wiki_too_many_requested(data_dir):
    with pytest.raises(ValueError, match=r"only \d+ pass the filters"):
        load_wiki(n=10**6, path=data_dir, control="sentences")
    with pytest.raises(ValueError, match=r"only \d+ sentences give a \d+-word text"):
        load_wiki(n=10**6, path=data_dir)


def test_load_wiki_rejects_bad_arguments(data_dir):
    with pytest.raises(ValueError, match="split"):
        load_wiki(split="train", path=data_dir)
    with pytest.raises(ValueError, match="source"):
        load_wiki(source="web", path=data_dir)


def test_load_wiki_does_not_depend_on_cwd(data_dir, monkeypatch, tmp_path, isolated):
    expected = load_wiki(n=50, seed=7, path=data_dir)
    repo = repo_root()
    # A relative $MEMRECALL_DATA_DIR, written relative to the project root, run from elsewhere.
    monkeypatch.setenv("MEMRECALL_DATA_DIR", os.path.relpath(data_dir, repo))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_wiki(n=50, seed=7).equals(expected)
    assert load_idiomem().equals(load_idiomem(data_dir))


# --------------------------------------------------------------------------- resolution


def test_pinned_checksums_match_shared_files(data_dir):
    for key, src in DATA_SOURCES.items():
        file = data_dir / src.relpath
        assert file.is_file(), key
        assert resolve_data_file(key, data_dir) == file.resolve()
        if src.checksum == "bytes":
            assert sha256_file(file) == src.sha256, key


def test_explicit_path_beats_env_var(data_dir, tmp_path, monkeypatch, isolated):
    env_copy = _copy(data_dir, tmp_path / "envdir", "idiomem")
    explicit_copy = _copy(data_dir, tmp_path / "explicit", "idiomem")
    monkeypatch.setenv("MEMRECALL_DATA_DIR", str(tmp_path / "envdir"))
    assert resolve_data_file("idiomem", explicit_copy) == explicit_copy.resolve()
    # a folder laid out like the data dir works too
    assert resolve_data_file("idiomem", tmp_path / "explicit") == explicit_copy.resolve()
    assert resolve_data_file("idiomem") == env_copy.resolve()


def test_env_var_beats_cache_and_cache_is_used_last(data_dir, tmp_path, monkeypatch, isolated):
    cached = _copy(data_dir, isolated, "idiomem")
    env_copy = _copy(data_dir, tmp_path / "envdir", "idiomem")
    monkeypatch.setenv("MEMRECALL_DATA_DIR", str(tmp_path / "envdir"))
    assert resolve_data_file("idiomem") == env_copy.resolve()
    monkeypatch.delenv("MEMRECALL_DATA_DIR")
    assert resolve_data_file("idiomem") == cached.resolve()
    # a missing env file falls through to the next place; a missing explicit path does not
    monkeypatch.setenv("MEMRECALL_DATA_DIR", str(tmp_path / "empty"))
    assert resolve_data_file("idiomem") == cached.resolve()
    with pytest.raises(DataNotFoundError, match="nope.jsonl, does not exist"):
        resolve_data_file("idiomem", tmp_path / "nope.jsonl")


def test_raw_idiom_lists_resolve(data_dir):
    for key in ["ef_idioms", "epic_idioms", "lidioms"]:
        path = resolve_data_file(key, data_dir)
        assert path.name == Path(DATA_SOURCES[key].relpath).name
        assert DATA_SOURCES[key].url.startswith(
            "https://raw.githubusercontent.com/adihaviv/idiomem/"
            "386ee4624a37bfe6d77aa22e47f0f426b133e81b/data/"
        )


def test_unknown_key():
    with pytest.raises(KeyError, match="unknown data file"):
        resolve_data_file("nope")


def test_checksum_mismatch_names_file_and_hashes(data_dir, tmp_path, isolated):
    bad = _copy(data_dir, tmp_path / "d", "idiomem")
    raw = bytearray(bad.read_bytes())
    pos = raw.index(b"crying")
    raw[pos] = ord("C")  # still valid JSON with all fields: only the checksum can catch it
    bad.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError) as exc:
        resolve_data_file("idiomem", bad)
    msg = str(exc.value)
    assert str(bad.resolve()) in msg
    assert DATA_SOURCES["idiomem"].sha256 in msg
    assert sha256_file(bad) in msg
    assert "Delete" in msg
    with pytest.raises(ChecksumError):
        load_idiomem(bad)
    # a corrupt file in the cache is not silently used either
    cached = _copy(tmp_path / "d", isolated, "idiomem")
    with pytest.raises(ChecksumError, match=re.escape(str(cached.resolve()))):
        resolve_data_file("idiomem")


def test_verification_is_cached(data_dir, tmp_path, monkeypatch):
    copy = _copy(data_dir, tmp_path, "ef_idioms")
    calls = []
    real = sources.sha256_file

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(sources, "sha256_file", counting)
    resolve_data_file("ef_idioms", copy)
    resolve_data_file("ef_idioms", copy)
    assert len(calls) == 1
    copy.write_bytes(copy.read_bytes() + b"x\n")  # size changes -> re-hashed, and wrong
    with pytest.raises(ChecksumError):
        resolve_data_file("ef_idioms", copy)
    assert len(calls) == 2


def test_nothing_found_and_download_fails(tmp_path, monkeypatch, isolated):
    monkeypatch.setenv("MEMRECALL_DATA_DIR", str(tmp_path / "emptydir"))
    with pytest.raises(DataNotFoundError) as exc:
        resolve_data_file("idiomem")
    err = exc.value
    assert isinstance(err, FileNotFoundError)
    msg = str(err)
    assert "1. explicit path argument: none given" in msg
    assert "2. $MEMRECALL_DATA_DIR" in msg and str(tmp_path / "emptydir") in msg
    assert "3. download cache" in msg and str(isolated / "idiomem/idiomem.jsonl") in msg
    assert f"4. download from {UNREACHABLE}" in msg and "failed" in msg
    assert "set MEMRECALL_DATA_DIR" in msg
    assert not (isolated / "idiomem/idiomem.jsonl").exists()


def test_nothing_found_without_path_or_env(isolated):
    with pytest.raises(DataNotFoundError, match=r"none given[\s\S]*not set[\s\S]*download from"):
        load_idiomem()


def test_download_lands_atomically_in_cache(data_dir, monkeypatch, isolated):
    src = DATA_SOURCES["idiomem"]
    url = (data_dir / src.relpath).resolve().as_uri()
    monkeypatch.setitem(DATA_SOURCES, "idiomem", dataclasses.replace(src, url=url))
    path = resolve_data_file("idiomem")
    assert path == (isolated / src.relpath).resolve()
    assert path.read_bytes() == (data_dir / src.relpath).read_bytes()
    assert sorted(p.name for p in path.parent.iterdir()) == ["idiomem.jsonl"]  # no temp left

    def no_network(url, timeout=0):
        raise AssertionError("should not download again")

    monkeypatch.setattr(sources, "download", no_network)
    assert resolve_data_file("idiomem") == path
    assert len(load_idiomem()) == 852


def test_download_with_wrong_checksum_writes_nothing(data_dir, tmp_path, monkeypatch, isolated):
    upstream = tmp_path / "upstream.jsonl"
    upstream.write_bytes((data_dir / "idiomem/idiomem.jsonl").read_bytes() + b"\n")
    src = DATA_SOURCES["idiomem"]
    monkeypatch.setitem(DATA_SOURCES, "idiomem", dataclasses.replace(src, url=upstream.as_uri()))
    with pytest.raises(ChecksumError, match="nothing was written"):
        resolve_data_file("idiomem")
    assert not (isolated / src.relpath).exists()


def test_facts_download_verifies_content_not_bytes(data_dir, tmp_path, monkeypatch, isolated):
    records = json.loads((data_dir / "facts/known_1000.json").read_text(encoding="utf-8"))
    upstream = tmp_path / "upstream_known_1000.json"
    upstream.write_text(json.dumps([dict(r, rank=1) for r in records]), encoding="utf-8")
    src = DATA_SOURCES["facts"]
    monkeypatch.setitem(DATA_SOURCES, "facts", dataclasses.replace(src, url=upstream.as_uri()))
    df = load_facts()
    assert len(df) == 1209
    assert (isolated / src.relpath).read_bytes() == upstream.read_bytes()


# --------------------------------------------------------------------------- validate_texts


def test_validate_texts_accepts_and_returns_list():
    assert validate_texts(("a b", "one two three")) == ["a b", "one two three"]


@pytest.mark.parametrize(
    ("texts", "pattern"),
    [
        (["a b", "c d", "e f", "foo"], r"row 3: text 'foo' has one word; a probe needs"),
        (["a b", "   "], r"row 1: .*empty or whitespace-only"),
        (["", "a b"], r"row 0: .*empty"),
        (["a b", None], r"row 1: expected a string"),
    ],
)
def test_validate_texts_errors_name_the_row(texts, pattern):
    with pytest.raises(DataFormatError, match=pattern):
        validate_texts(texts)


# --------------------------------------------------------------------------- special files, edits

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_is_reported_as_a_fifo_not_a_directory(tmp_path):
    fifo = tmp_path / "known_1000.json"
    os.mkfifo(fifo)
    with pytest.raises(DataNotFoundError, match=r"is not a regular file \(a FIFO"):
        load_facts(fifo)
    folder = tmp_path / "data"  # a data folder whose facts file is a FIFO
    (folder / DATA_SOURCES["facts"].relpath).parent.mkdir(parents=True)
    os.mkfifo(folder / DATA_SOURCES["facts"].relpath)
    with pytest.raises(DataNotFoundError) as error:
        load_facts(folder)
    assert "not a regular file (a FIFO" in str(error.value)
    assert "is a directory" not in str(error.value)


def _rewrite_in_place_keeping_size_and_mtime(path: Path, old: bytes, new: bytes) -> None:
    """An edit no (mtime, size) key can see: same length, written in place, mtime set back."""
    assert len(old) == len(new)
    before = path.stat()
    content = path.read_bytes()
    assert old in content
    with open(path, "r+b") as handle:  # in place: the same inode
        handle.write(content.replace(old, new, 1))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_an_in_place_edit_with_the_same_size_and_mtime_is_noticed(data_dir, tmp_path):
    copy = _copy(data_dir, tmp_path, "idiomem")
    first = load_idiomem(copy)
    idiom = first.idiom[0]
    edited = idiom[:-1] + ("x" if idiom[-1] != "x" else "y")
    _rewrite_in_place_keeping_size_and_mtime(copy, json.dumps(idiom).encode(),
                                             json.dumps(edited).encode())
    # parsed again (the edited row), and checked again: not the pinned file any more
    with pytest.raises(ChecksumError):
        load_idiomem(copy)
    assert parse_idiomem(copy)[0][0] == edited
    # the checksum cache of resolve_data_file notices it too
    other = _copy(data_dir, tmp_path / "other", "ef_idioms")
    resolve_data_file("ef_idioms", other)
    text = other.read_bytes()
    line = text.splitlines()[0]
    _rewrite_in_place_keeping_size_and_mtime(other, line, line[:-1] + (b"x" if line[-1:] != b"x"
                                                                       else b"y"))
    with pytest.raises(ChecksumError):
        resolve_data_file("ef_idioms", other)
