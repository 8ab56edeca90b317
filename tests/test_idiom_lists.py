"""Tests of memrecall.data.idiomem_rebuild: parsers and the IdioMem construction rules."""

import pandas as pd
import pytest

from memrecall import data, load_idiomem
from memrecall.data import idiomem_rebuild as il


def test_clean_idiom_lowercases_and_trims():
    assert il.clean_idiom("Better late than never!?. ") == "better late than never"
    assert il.clean_idiom('"Speak of the devil"') == "speak of the devil"
    # tabs and newlines are deleted, not replaced by spaces, as the authors did
    assert il.clean_idiom("Break\tthe ice") == "breakthe ice"


@pytest.mark.parametrize(("text", "expected"), [
    ("don't count your chickens", ["do", "n't", "count", "your", "chickens"]),
    ("at the end of one's rope.", ["at", "the", "end", "of", "one", "'s", "rope", "."]),
    ("out of sight, out of mind", ["out", "of", "sight", ",", "out", "of", "mind"]),
    ("he\u2019s off his rocker", ["he", "\u2019s", "off", "his", "rocker"]),
])
def test_tokens_split_punctuation_and_clitics(text, expected):
    assert il.tokens(text) == expected


@pytest.mark.parametrize(("idiom", "expected"), [
    ("call it a day", True),            # call, it, a: all spaCy stopwords
    ("he's off his rocker", True),      # he, 's, off, his
    ("kill two birds with one stone", False),
    ("out of sight, out of mind", False),  # the comma is not a stopword
])
def test_prompt_all_stopwords(idiom, expected):
    assert il.is_prompt_all_stopwords(idiom) is expected


def test_stop_words_are_spacys_list():
    assert {"the", "of", "keep", "n't", "'s", "\u2019s", "whereupon"} <= il.STOP_WORDS
    assert not {"day", "bush", "cat"} & il.STOP_WORDS
    assert len(il.STOP_WORDS) > 320


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_parse_ef(tmp_path):
    path = _write(tmp_path, "ef.txt", "A dime a dozen\tas part of a sentence\n"
                  "Better late than never\tby itself\n\n")
    frame = il.parse_ef(path)
    assert frame["raw"].tolist() == ["A dime a dozen", "Better late than never"]
    assert frame["source"].tolist() == ["ep_as_part_of_a_sentence", "ep_by_itself"]
    with pytest.raises(ValueError, match="line 1"):
        il.parse_ef(_write(tmp_path, "bad.txt", "no tab here\n"))


TTL = r'''@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
liden:a_short_fuse a ontolex:LexicalEntry ;
	rdfs:label "a short fuse"@en .
liden:a_short_fuse_form a ontolex:form ;
	ontolex:writtenRep "a short fuse"@en .
liden:a_short_fuse_concept a ontolex:LexicalConcept ;
	skos:definition "a quick \"temper\""@en .
liden:x rdfs:label "to bite the dust"@en .
liden:y rdfs:label "to spill the beans"@en .
liden:z rdfs:label "hit the sack / sheets; hay"@en .
liden:w rdfs:label "a bird in the hand is worth two in the bush"@en .
'''


def test_parse_lidioms_reads_every_literal_with_its_field(tmp_path):
    frame = il.parse_lidioms(_write(tmp_path, "l.ttl", TTL))
    assert frame["field"].tolist()[:3] == ["label", "writtenRep", "definition"]
    assert frame["raw"].iloc[2] == 'a quick "temper"'
    assert set(frame["source"]) == {"LIdiom"}


def test_build_idiom_set_rules(tmp_path):
    lidioms = il.parse_lidioms(_write(tmp_path, "l.ttl", TTL))
    ef = pd.DataFrame({"raw": ["Call it a day.", "Bite the dust now", "Go"],
                       "source": ["ep_by_itself"] * 3})
    epic = pd.DataFrame({"raw": ["bite the dust now", "the cat is out", "of it and the"],
                         "source": "EPIC"})
    built = il.build_idiom_set(ef, epic, lidioms)
    got = dict(zip(built["idiom"], built["source"]))
    # EF keeps "call it a day" (the stopword rule never fired on EF), drops the 1-word line;
    # the later source names a shared idiom; EPIC drops an all-stopword prompt.
    assert got["call it a day"] == "ep_by_itself"
    assert got["bite the dust now"] == "EPIC"
    assert "of it and the" not in got and "go" not in got
    # LIdioms: 3 words is too short, "to " only if whitelisted, junk ";" dropped, >= 9 words
    # dropped, definitions never read.
    assert "a short fuse" not in got
    assert got["to bite the dust"] == "LIdiom"
    assert "to spill the beans" not in got
    assert not any(";" in i or "bush" in i or "temper" in i for i in got)
    assert list(built.columns) == ["idiom", "source", "n_words"]
    strict = il.build_idiom_set(ef, None, None, ef_stopword_filter=True)
    assert "call it a day" not in set(strict["idiom"])


def test_compare_with_release_counts():
    rebuilt = pd.DataFrame({"idiom": ["a b c d", "e f g h", "x y z w"],
                            "source": ["EPIC", "EPIC", "LIdiom"]})
    released = pd.DataFrame({"idiom": ["a b c d", "e f g h", "p q r s"],
                             "source": ["EPIC", "MAGPIE", "LIdiom"]})
    table = il.compare_with_release(rebuilt, released, sources=["EPIC", "LIdiom"])
    table = table.set_index("source")
    counts = table.loc["EPIC", ["released", "rebuilt", "both", "rebuilt_elsewhere"]]
    assert counts.tolist() == [1, 2, 1, 1]
    assert table.loc["LIdiom", ["only_released", "only_rebuilt"]].tolist() == [1, 1]
    assert table.loc["total", "recall"] == pytest.approx(0.5)


def test_rebuild_from_the_shared_raw_lists_matches_most_of_the_release(data_dir):
    lists = [il.parse_ef(data.resolve_data_file("ef_idioms", data_dir)),
             il.parse_epic(data.resolve_data_file("epic_idioms", data_dir)),
             il.parse_lidioms(data.resolve_data_file("lidioms", data_dir))]
    table = il.compare_with_release(il.build_idiom_set(*lists), load_idiomem(data_dir))
    table = table.set_index("source")
    assert table.loc["ep_by_itself", "recall"] == 1.0
    assert table.loc["ep_as_part_of_a_sentence", "recall"] == 1.0
    assert table.loc["total", "recall"] > 0.95
